"""Helpers for tests that run ``python -m asyncrl...`` as a user does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
"""A child process's environment: this checkout and ``tests/`` (``toy_envs``) importable."""


def cli(*args, timeout=120, module="asyncrl.run"):
    """Run ``python -m module args`` from the repository root; the ``CompletedProcess``."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=CHILD_ENV, cwd=REPO)


def assert_one_line_error(result, *fragments):
    """``result`` exited with code 2 and one line of stderr holding every fragment, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
