"""The dry-run's cost model against the cell times a results directory stored.

    .venv/bin/python -m benchmarks.cost_model --suite standard --out DIR \\
        [--problems a,b] [--estimators x,y] [--workers 2] [--rows 20]

Plans the suite's cells (restricted like ``dgbench run --problems/--estimators``) as a
fresh ``dgbench run`` would, with nothing measured, and compares each unit's predicted
seconds (:func:`dgbench.harness.costs.estimate`) with what ``DIR``'s database recorded for
it: the total, the Spearman correlation over units (what ordering the longest first
needs), the median |log2(predicted / measured)|, and the (problem, kind, estimator) rows
with the most measured time. Run the suite into ``DIR`` first, with the same restriction.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from dgbench.harness.planning import make_plan
from dgbench.harness.seed_batching import CellGroup
from dgbench.harness.suites import expand, load_suite
from dgbench.store import stored_progress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True)
    parser.add_argument("--out", required=True, help="a results directory the suite ran into")
    parser.add_argument("--problems", default="")
    parser.add_argument("--estimators", default="")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args(argv)
    suite = load_suite(args.suite)
    problems = {p for p in args.problems.split(",") if p}
    estimators = {e for e in args.estimators.split(",") if e}
    cells = [c for c in expand(suite) if (not problems or c.problem in problems)
             and (not estimators or c.estimator in estimators)]
    _, measured = stored_progress(Path(args.out))
    start = time.perf_counter()
    plan = make_plan(suite.name, cells, finished=set(), measured={}, device="cpu", workers=args.workers,
                     seed_batching=True, cpu_auto=True)
    planning = time.perf_counter() - start
    predicted, recorded = collections.Counter(), collections.Counter()
    pairs = []
    for unit in plan.units:
        members = unit.cells if isinstance(unit, CellGroup) else [unit]
        if not all(c.key in measured for c in members):
            continue
        first = members[0]  # a stacked group's members each record the group's time
        key = (first.problem, first.kind, first.estimator)
        predicted[key] += plan.seconds[unit.key]
        recorded[key] += measured[first.key]
        pairs.append((plan.seconds[unit.key], measured[first.key]))
    if not pairs:
        print(f"no unit of the plan has a stored time in {args.out}", file=sys.stderr)
        return 2
    p, m = (np.array(x) for x in zip(*pairs))
    print(f"{len(pairs)} units; planning {planning:.1f} s; predicted {p.sum():.1f} s, measured {m.sum():.1f} s; "
          f"Spearman {spearmanr(p, m)[0]:.3f}; median |log2(predicted/measured)| "
          f"{np.median(np.abs(np.log2(np.maximum(p, 1e-6) / np.maximum(m, 1e-6)))):.2f}")
    print("| problem | kind | estimator | predicted s | measured s |\n|---|---|---|---|---|")
    for key in sorted(recorded, key=lambda k: -recorded[k])[:args.rows]:
        print(f"| {' | '.join(key)} | {predicted[key]:.1f} | {recorded[key]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
