"""The README's main job, timed as a new user runs it: ``dgbench run --suite quick`` then
``dgbench report``, each a fresh process, into a fresh directory (issue 32's target: at
most 180 s on 2 cores, run plus report).

    .venv/bin/python -m benchmarks.main_job [--suite quick] [--json out.json] [--keep DIR]

Prints the ``run --dry-run`` prediction first (made in the same fresh directory, as a user
would see it), then the measured wall times of ``run`` and ``report``, the cell time by
problem and kind (from the results database), and the report's size on disk.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DGBENCH = [sys.executable, "-m", "dgbench.harness.cli"]


def timed(args: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, done.stdout.strip()


def cell_time(db: Path) -> list[tuple[str, str, int, float]]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT problem, kind, COUNT(*), SUM(finished - started) FROM cells "
                           "WHERE status != 'skipped' GROUP BY problem, kind ORDER BY 4 DESC").fetchall()
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--json", help="also write the measurements here")
    parser.add_argument("--keep", help="run into this directory (must not exist) and keep it, for profiling the report")
    args = parser.parse_args()
    if args.keep and Path(args.keep).exists():
        raise SystemExit(f"--keep {args.keep}: already exists (the main job starts from a fresh directory)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / args.suite
        _, predicted = timed([*DGBENCH, "run", "--suite", args.suite, "--out", str(out), "--dry-run"])
        print(predicted)
        run_s, run_line = timed([*DGBENCH, "run", "--suite", args.suite, "--out", str(out), "--quiet"])
        report_s, report_line = timed([*DGBENCH, "report", str(out)])
        size = sum(p.stat().st_size for p in (out / "report").rglob("*") if p.is_file())
        rows = cell_time(out / "results.db")
    print(run_line)
    print(report_line)
    print(f"run {run_s:.1f} s + report {report_s:.1f} s = {run_s + report_s:.1f} s; report {size / 1e6:.2f} MB")
    for problem, kind, n, seconds in rows:
        print(f"  {problem:28s} {kind:9s} {n:5d} cells {seconds:8.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "suite": args.suite, "predicted": predicted, "run_seconds": run_s, "report_seconds": report_s,
            "report_bytes": size, "cells": [list(r) for r in rows]}, indent=2))


if __name__ == "__main__":
    main()
