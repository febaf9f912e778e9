"""What a learning-rate grid costs: a tuned run against a one-rate run (issue 29's target:
4 learning rates at most 2.4 x one rate's wall time with one worker).

    DGBENCH_DATA_DIR=../shared/data .venv/bin/python -m benchmarks.grid_cost [--steps N] [--json out.json]

Three `dgbench run`s of one estimator on one problem configuration (default
``vae-bernoulli-linear``, REINFORCE, 2 seeds, one worker, one thread), each into a fresh
directory, timed end to end (cells, deferred evaluations, store):

- ``one rate``: the suite's lr, untuned (every split evaluated, as an untuned suite does);
- ``grid, per seed``: ``[grid] lr`` of 4 rates, seed batching off (each cell alone);
- ``grid, stacked``: the same grid with ``--seed-batching on`` (rates and seeds as the
  members of one model).

The grid runs evaluate the validation split along training and the test split at the
selected rate only (:mod:`dgbench.harness.deferred`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from dgbench.harness.run import run

SUITE = """
name = "grid-cost"
seeds = {seeds}
[budget]
samples = 1
[training]
steps = {steps}
lr = 0.001
log_every = 100
eval_every = {steps}
variance_every = 1000000000
variance_replicas = 2
{grid}
[[problems]]
id = "{problem}"
[estimators]
include = ["{estimator}"]
"""
RATES = (0.0003, 0.001, 0.003, 0.01)


def timed(text: str, seed_batching: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "suite.toml"
        path.write_text(text)
        start = time.perf_counter()
        run(str(path), Path(tmp) / "out", workers=1, threads=1, seed_batching=seed_batching)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="vae-bernoulli-linear")
    parser.add_argument("--estimator", default="reinforce")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    common = {"seeds": args.seeds, "steps": args.steps, "problem": args.problem, "estimator": args.estimator}
    grid = "[grid]\nlr = [" + ", ".join(map(str, RATES)) + "]"
    rows = {
        "one rate": timed(SUITE.format(grid="", **common), "off"),
        "grid, per seed": timed(SUITE.format(grid=grid, **common), "off"),
        "grid, stacked": timed(SUITE.format(grid=grid, **common), "on"),
    }
    base = rows["one rate"]
    print(f"{args.problem}, {args.estimator}, {args.seeds} seeds, {args.steps} steps, {len(RATES)} rates, 1 worker:")
    print("| run | wall s | x one rate |\n|---|---:|---:|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.1f} | {seconds / base:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rates": RATES, "seconds": rows}, indent=2))


if __name__ == "__main__":
    main()
