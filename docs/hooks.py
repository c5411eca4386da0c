"""MkDocs hooks: pages generated from the package, so that they cannot drift from it.

- ``<!-- asyncrl:algorithms -->``: the algorithm table, from ``asyncrl.registry``;
- ``<!-- asyncrl:cli -->``: ``python -m asyncrl.run --help`` for every algorithm, from the
  same parser the command line uses (``asyncrl.config.cli.build_parser``);
- ``<!-- asyncrl:presets -->``: every algorithm's presets with their provenance;
- ``<!-- asyncrl:results -->``: every file of ``benchmarks/results/``, which the site
  publishes under ``results/``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
HELP_COLUMNS = "100"
"""The terminal width ``--help`` is rendered at on the site."""

_KINDS = {"discrete": "Discrete", "box": "Box", "multi": "MultiDiscrete, MultiBinary",
          "vector": "vectors", "image": "images"}


def algorithm_table() -> str:
    """The registered algorithms as a Markdown table (name, family, what it is, spaces, backends)."""
    from asyncrl import registry

    rows = ["| `--algo` | family | what it is | actions | observations | backends |", "|---|---|---|---|---|---|"]
    for spec in registry.specs():
        actions = ", ".join(_KINDS[k] for k in registry.ACTION_KINDS if k in spec.actions)
        observations = ", ".join(_KINDS[k] for k in registry.OBSERVATION_KINDS if k in spec.observations)
        backends = ", ".join(b for b in registry.BACKENDS if b in spec.backends)
        rows.append(f"| `{spec.name}` | {spec.family} | {spec.summary} | {actions} | {observations} | {backends} |")
    return "\n".join(rows) + "\n"


def cli_help(algo: str) -> str:
    """``python -m asyncrl.run --algo ALGO --help`` as a terminal ``HELP_COLUMNS`` wide shows it."""
    from asyncrl.config import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        return build_parser(algo).format_help()
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


def cli_reference() -> str:
    from asyncrl import registry

    parts = []
    for spec in registry.specs():
        parts.append(f"## `--algo {spec.name}`\n\n{spec.summary}.\n\n```text\n{cli_help(spec.name)}```\n")
    return "\n".join(parts)


def presets_table() -> str:
    """Every algorithm's presets: environment, values as flags, provenance."""
    from asyncrl import registry
    from asyncrl.config.cli import preset_flags

    rows = ["| `--algo` | environment | flags | why |", "|---|---|---|---|"]
    for spec in registry.specs():
        for p in spec.presets:
            rows.append(f"| `{spec.name}` | `{p.env}` | `{preset_flags(dict(p.values))}` | {p.source} |")
    return "\n".join(rows) + "\n"


def results_index() -> str:
    rows = ["| file | what it measured |", "|---|---|"]
    for path in sorted(RESULTS.glob("*.md")):
        first = next((line.strip("# ").strip() for line in path.read_text().splitlines() if line.strip()), "")
        rows.append(f"| [{path.name}](results/{path.name}) | {first[:120]} |")
    return "\n".join(rows) + "\n"


def on_files(files, config):
    from mkdocs.structure.files import File

    for path in sorted(RESULTS.rglob("*")):
        if path.suffix in (".md", ".png") and path.is_file():
            files.append(File.generated(config, f"results/{path.relative_to(RESULTS).as_posix()}",
                                        abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    for marker, make in (("<!-- asyncrl:algorithms -->", algorithm_table), ("<!-- asyncrl:cli -->", cli_reference),
                         ("<!-- asyncrl:results -->", results_index), ("<!-- asyncrl:presets -->", presets_table)):
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
