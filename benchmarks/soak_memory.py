"""Memory soak: the memory of a long run's whole process tree must stay flat.

Runs ``python -m asyncrl.run --workers W --max-seconds S`` (no target, so it trains the
whole time) and samples the proportional set size (PSS) of the trainer and every worker
with ``asyncrl.metrics.process_memory`` every ``--every`` seconds: the pages the workers
share (torch's libraries, mapped by every process) count once, where summed RSS would count
them once per process. Reports PSS after a warm-up (start) and at the end, and their ratio;
the run passes if the end is within ``--tolerance`` of the start. Linux (PSS).

    python benchmarks/soak_memory.py --minutes 10 --workers 2

Writes ``benchmarks/results/soak_memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asyncrl.metrics import process_memory  # noqa: E402

from common import REPO, child_env, parse_args, write_results  # noqa: E402


def tree_pss_mib(root: psutil.Process) -> tuple[float, float, int]:
    """PSS and USS of ``root`` and its descendants in MiB, and how many processes that is."""
    procs = [root, *root.children(recursive=True)]
    memory = process_memory(procs)
    return memory["pss_mb"], memory["uss_mb"], len(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--algo", default="a3c")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the start sample")
    parser.add_argument("--tolerance", type=float, default=0.10)
    args = parse_args(parser, minutes=0.2, every=2.0, warmup=3.0, tolerance=10.0)

    seconds = args.minutes * 60
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "asyncrl.run", "--algo", args.algo, "--workers", str(args.workers),
             "--total-steps", str(10**12), "--target-return", "inf", "--max-seconds", str(seconds),
             "--log-interval", "5", "--run-dir", str(Path(tmp) / "soak"), "--progress", "none"],
            env=child_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        root = psutil.Process(proc.pid)
        start = time.monotonic()
        while proc.poll() is None:
            elapsed = time.monotonic() - start
            try:
                pss, uss, count = tree_pss_mib(root)
            except psutil.NoSuchProcess:
                break
            if count == args.workers + 1:  # a complete tree (not starting or stopping)
                samples.append({"t_s": round(elapsed, 1), "pss_mib": round(pss, 1), "uss_mib": round(uss, 1),
                                "processes": count})
                print(f"{elapsed:7.1f} s  PSS {pss:8.1f} MiB  USS {uss:8.1f} MiB  ({count} processes)", flush=True)
            time.sleep(args.every)
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"run failed ({proc.returncode}): {err[-2000:]}")

    after_warmup = [s for s in samples if s["t_s"] >= args.warmup]
    first, last = after_warmup[0], after_warmup[-1]
    ratio = last["pss_mib"] / first["pss_mib"]
    uss_ratio = last["uss_mib"] / first["uss_mib"]
    peak = max(s["pss_mib"] for s in after_warmup)
    # A leak grows the memory the run holds alone (USS). PSS also moves when other processes
    # on the machine start or stop mapping the same libraries (torch's), which changes
    # this run's share of those pages.
    ok = abs(uss_ratio - 1) <= args.tolerance and abs(ratio - 1) <= args.tolerance
    md = (f"{args.algo}, {args.workers} workers, {args.minutes:g} minutes of training "
          f"({out.strip().splitlines()[-1].split(';')[0]}).\n\n"
          f"| | at {first['t_s']:.0f} s | at {last['t_s']:.0f} s | end / start | peak |\n"
          f"|---|---|---|---|---|\n"
          f"| PSS | {first['pss_mib']:.1f} MiB | {last['pss_mib']:.1f} MiB | {ratio:.3f} | {peak:.1f} MiB |\n"
          f"| USS | {first['uss_mib']:.1f} MiB | {last['uss_mib']:.1f} MiB | {uss_ratio:.3f} | "
          f"{max(s['uss_mib'] for s in after_warmup):.1f} MiB |\n\n"
          f"{'Flat' if ok else 'NOT flat'}: both within ±{args.tolerance:.0%} is the bar. PSS (shared pages "
          f"divided among the processes that map them) and USS (pages of this run alone) summed over the "
          f"trainer and its {args.workers} workers, sampled every {args.every:g} s.\n")
    write_results("soak_memory", {"args": vars(args), "samples": samples, "pss_ratio": ratio, "uss_ratio": uss_ratio,
                                  "flat": ok}, md)
    print(md)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
