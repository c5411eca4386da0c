"""Redraw a run's learning curve: ``python scripts/plot_run.py RUN_DIR [--out PNG]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from asyncrl.metrics import plot_learning_curve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default: RUN_DIR/learning_curve.png)")
    args = parser.parse_args(argv)
    metrics = args.run_dir / "metrics.csv"
    if not metrics.is_file():
        print(f"plot_run: error: no metrics.csv in {args.run_dir}", file=sys.stderr)
        return 2
    config = json.loads((args.run_dir / "config.json").read_text())["run"]
    out = args.out or args.run_dir / "learning_curve.png"
    try:
        plot_learning_curve(metrics, out, config.get("target_return"),
                            title=f"{config['algo']} on {config['env']}, {config['workers']} workers",
                            return_window=config.get("return_window", 100))
    except ValueError as exc:
        print(f"plot_run: error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
