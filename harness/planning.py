"""A run's plan: what is left to compute, as the units a backend runs, costed and ordered.

From the expanded cells of a suite (or a reproduction) and what the results directory
already holds, :func:`make_plan` decides once:

- which cells are finished (kept) and which are skipped (recorded without running);
- how the rest are grouped: with seed batching, the training cells that differ only in
  their seed and learning-rate schedule become one :class:`CellGroup` (a stacked model,
  :mod:`dgbench.harness.seed_batching`), and the others stay cells, with the reason;
- what each unit costs (:mod:`dgbench.harness.costs`, timed at the thread count each
  worker will have; durations measured in an earlier run replace the model);
- the order: longest first, so that no long unit starts while the other workers idle.

``dgbench run --dry-run`` and ``reproduce --dry-run`` print the plan; a run hands it to a
backend (:mod:`dgbench.harness.backends`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dgbench.harness import halving
from dgbench.harness.costs import estimate, longest_first
from dgbench.harness.local_backend import threads_per_worker
from dgbench.harness.seed_batching import CellGroup, group_cells
from dgbench.harness.suites import Cell


@dataclass
class Plan:
    name: str
    cells: list[Cell]  # every cell of the selection
    finished: set[str]  # keys of its cells already stored
    skipped: list[Cell]  # not applicable: recorded without running
    units: list[Cell | CellGroup]  # to run, longest first
    seconds: dict[str, float]  # estimated seconds of each unit, by key
    workers: int
    seed_batching: bool = False
    per_seed: dict[str, int] = field(default_factory=dict)  # training cells kept per seed, by reason
    prune: str = "none"  # "halving": grids train by successive halving (dgbench.harness.halving)
    cpu_auto: bool = False  # seed batching chose itself on the CPU: only problems that stack cheaply

    @property
    def cells_to_run(self) -> int:
        return sum(len(u) if isinstance(u, CellGroup) else 1 for u in self.units)

    @property
    def cpu_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def wall_seconds(self) -> float:
        """With ``workers`` workers: at least the longest unit, at best the total split evenly."""
        return max(self.cpu_seconds / max(1, self.workers), max(self.seconds.values(), default=0.0))

    def longest(self, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` longest units, described, with their estimated seconds."""
        out = []
        for unit in self.units[:n]:
            seeds = unit.seed if isinstance(unit, CellGroup) else str(unit.seed)
            what = "group of " + str(len(unit)) if isinstance(unit, CellGroup) else unit.kind
            out.append((f"{what} {unit.estimator} on {unit.problem} (seed {seeds})", self.seconds.get(unit.key, 0.0)))
        return out

    def batching_summary(self) -> dict | bool:
        """What the provenance records: the groups and why other training cells run alone."""
        if not self.seed_batching:
            return False
        groups = [u for u in self.units if isinstance(u, CellGroup)]
        return {"groups": len(groups), "grouped_cells": sum(len(g) for g in groups), "per_seed": self.per_seed}


def make_plan(name: str, cells: list[Cell], *, finished: set[str], measured: dict[str, float], device: str,
              workers: int, threads: int | None = None, seed_batching: bool = False, prune: str = "none",
              cpu_auto: bool = False) -> Plan:
    """The plan of ``cells`` given the keys already ``finished`` and the seconds
    ``measured`` in earlier runs (see the module docstring). ``prune="halving"``: the
    cells of grids cost their expected share under successive halving (and are never
    stacked)."""
    if prune not in halving.METHODS:
        raise ValueError(f"prune must be one of {', '.join(halving.METHODS)}, got {prune!r}")
    if prune == "halving" and seed_batching:
        raise ValueError("successive halving runs cell by cell: it cannot be combined with seed batching")
    todo = [c for c in cells if c.key not in finished]
    skipped = [c for c in todo if c.skip_reason]
    runnable: list[Cell | CellGroup] = [c for c in todo if not c.skip_reason]
    per_seed: dict[str, int] = {}
    if seed_batching:
        runnable, per_seed = group_cells(runnable, cpu_auto=cpu_auto)
    workers = min(workers, max(1, len(runnable)))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or threads_per_worker(workers))
    try:
        seconds = estimate(runnable, torch.device(device), measured,
                           halving.shares(cells) if prune == "halving" else None)
    finally:
        torch.set_num_threads(previous)
    return Plan(name, cells, finished & {c.key for c in cells}, skipped, longest_first(runnable, seconds), seconds,
                workers, seed_batching, per_seed, prune, cpu_auto)


def plan_line(plan: Plan) -> str:
    def minutes(seconds: float) -> str:
        if seconds < 1:
            return "under 1 s"
        if seconds >= 3600:
            return f"{seconds / 3600:.1f} h"
        return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"

    longest = "; ".join(f"{what}: {minutes(s)}" for what, s in plan.longest())
    grouped = ""
    if plan.seed_batching:
        groups = sum(isinstance(u, CellGroup) for u in plan.units)
        grouped = f" in {len(plan.units)} unit(s) ({groups} stacked group(s))"
    return (f"{plan.name}: {len(plan.cells)} cells ({sum(1 for c in plan.cells if c.skip_reason)} skipped, "
            f"{len(plan.finished)} already finished), {plan.cells_to_run} to run{grouped}: about "
            f"{minutes(plan.cpu_seconds)} of cell time, about {minutes(plan.wall_seconds)} with {plan.workers} "
            "worker(s) (an estimate from timing a few steps of each problem"
            + ("; grids pruned by successive halving" if plan.prune == "halving" else "") + ")"
            + (f"; longest: {longest}" if longest else ""))
