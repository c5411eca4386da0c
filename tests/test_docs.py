"""The documentation's generated parts equal what they describe."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from asyncrl import registry

from helpers import CHILD_ENV, REPO


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_the_help_of_the_command_line():
    hooks = _hooks()
    env = {**CHILD_ENV, "COLUMNS": hooks.HELP_COLUMNS}
    for algo in ("a3c", "ppo", "dqn"):
        shown = subprocess.run([sys.executable, "-m", "asyncrl.run", "--algo", algo, "--help"], capture_output=True,
                               text=True, env=env, cwd=REPO, timeout=120)
        assert shown.returncode == 0, shown.stderr
        assert hooks.cli_help(algo) == shown.stdout
    reference = hooks.cli_reference()
    assert all(f"## `--algo {name}`" in reference for name in registry.names())


def test_readme_algorithm_table_is_the_registry():
    hooks = _hooks()
    readme = (REPO / "README.md").read_text()
    assert hooks.algorithm_table() in readme, "README's algorithm table differs from the registry: regenerate it"
    assert len(readme.splitlines()) <= 250


def test_presets_page_lists_every_preset_with_its_source():
    table = _hooks().presets_table()
    count = sum(len(spec.presets) for spec in registry.specs())
    assert table.count("\n") == count + 2
    assert "`ALE/*`" in table and "torso_health.md" in table
