"""Wall time of a suite on a local Dask cluster of 1 and of N worker processes.

    .venv/bin/python -m benchmarks.dask_scaling                       # quick suite, 1 vs 2 workers
    .venv/bin/python -m benchmarks.dask_scaling --suite smoke --workers 1,2 --json scaling.json

Each run is ``dgbench run --backend dask --workers N --threads 1`` into a fresh temporary
directory (LocalCluster start-up included, as a user sees it), one after the other. It
prints the wall time of each and the speed-up over the first. Every configuration runs
one thread per cell, so that the speed-up measures scheduling, not intra-op threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def wall_time_of_run(suite: str, workers: int, extra: list[str]) -> float:
    dgbench = str(Path(sys.executable).parent / "dgbench")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        proc = subprocess.run([dgbench, "run", "--suite", suite, "--backend", "dask", "--workers", str(workers),
                               "--threads", "1", "--out", tmp, "--quiet", *extra], capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1: some cells failed, still a complete run
        raise SystemExit(f"dgbench run failed ({proc.returncode}): {proc.stderr.strip()}")
    print(f"{workers} worker(s): {seconds:.1f} s  ({proc.stdout.strip()})", file=sys.stderr, flush=True)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--problems", help="restrict the suite to these problems")
    parser.add_argument("--json", help="also write the timings to this file")
    args = parser.parse_args(argv)
    extra = ["--problems", args.problems] if args.problems else []
    counts = [int(w) for w in args.workers.split(",")]
    seconds = {n: wall_time_of_run(args.suite, n, extra) for n in counts}
    base = seconds[counts[0]]
    print(f"suite {args.suite}, {os.cpu_count()} cores")
    print("| workers | wall s | speed-up |\n|---|---|---|")
    for n in counts:
        print(f"| {n} | {seconds[n]:.1f} | {base / seconds[n]:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"suite": args.suite, "cores": os.cpu_count(),
                                               "seconds": seconds}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
