"""Model selection over a grid: the grid point with the best mean over seeds.

Shared by ``dgbench run``/``compare`` reports (:mod:`dgbench.reports.results`) and
``dgbench reproduce`` (:mod:`dgbench.harness.reproduce`), so a grid means the same thing
in both. Pure Python: reports import it without torch.

For one (problem configuration, estimator), each grid point has one record per planned
seed: its status and its value of the selection metric. A point *counts* only when every
planned seed finished (``done`` or ``diverged``: a diverged run is evaluated at the
parameters before its bad step, as its own cell records). Among the points that count,
the selected one maximises ``sign * mean`` (sign +1 for ``max``, -1 for ``min``); a
non-finite mean is the worst value. Exact ties go to the point listed first in the grid,
so the choice never depends on the order results arrived in.

A point whose seeds were stopped early by successive halving (``pruned``,
:mod:`dgbench.harness.halving`) is *settled* but never a candidate: its values are those
of a shorter run. A grid is settled when every point is complete or pruned.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

FINISHED = ("done", "diverged")
PRUNED = "pruned"
DIRECTIONS = ("max", "min")


def point_key(point: dict[str, Any]) -> str:
    """A grid point's canonical text (JSON with sorted keys): equal points, equal keys."""
    return json.dumps(point, sort_keys=True, default=str)


def point_label(point: dict[str, Any]) -> str:
    """``lr=0.03, temperature=0.5`` (``-`` for the empty point: no grid)."""
    if not point:
        return "-"
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())


@dataclass
class PointResult:
    """One grid point's seeds: how many were planned, finished, and their metric values."""

    point: dict[str, Any]
    planned: int
    finished: int = 0
    values: list[float] = field(default_factory=list)  # finite values of the selection metric
    pruned: int = 0  # seeds stopped early by successive halving

    @property
    def complete(self) -> bool:
        return self.planned > 0 and self.finished == self.planned

    @property
    def settled(self) -> bool:
        """Complete, or stopped by successive halving: nothing more will be computed."""
        return self.complete or (self.pruned > 0 and self.pruned + self.finished == self.planned)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.values and len(self.values) == self.finished else math.nan


@dataclass
class Selection:
    """The outcome of selection for one (configuration, estimator)."""

    points: list[PointResult]  # in grid order
    selected: PointResult | None  # None: no point has all its seeds finished
    direction: str
    partial: bool = False  # selected among incompletely finished points (allow_partial)

    @property
    def on_edge(self) -> str | None:
        """The axes (of two or more values) on which the selected point takes the smallest
        or largest value, as text (``lr=0.3``), or None: the optimum may lie outside."""
        if self.selected is None:
            return None
        edges = []
        for axis, value in self.selected.point.items():
            values = sorted({p.point[axis] for p in self.points if axis in p.point}, key=_order)
            if len(values) >= 2 and value in (values[0], values[-1]):
                edges.append(f"{axis}={value:g}" if isinstance(value, float) else f"{axis}={value}")
        return ", ".join(edges) or None


def _order(value: Any) -> tuple:
    return (0, value) if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, str(value))


def score(result: PointResult, direction: str) -> float:
    """What selection maximises: the signed mean, or -inf when the mean is not finite."""
    mean = result.mean
    if not math.isfinite(mean):
        return -math.inf
    return mean if direction == "max" else -mean


def select(points: list[PointResult], direction: str, allow_partial: bool = False) -> Selection:
    """The best complete point (see the module docstring). ``allow_partial``: when no point
    is complete, select among points with at least one finished seed (a reproduction
    report of a run still in progress says so)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'max' or 'min', got {direction!r}")
    candidates = [p for p in points if p.complete]
    partial = False
    if not candidates and allow_partial:
        candidates, partial = [p for p in points if p.finished and not p.pruned], True
    if not candidates:
        return Selection(points, None, direction)
    best = candidates[0]
    for p in candidates[1:]:  # strict improvement only: ties stay with the earlier point
        if score(p, direction) > score(best, direction):
            best = p
    return Selection(points, best, direction, partial)


def from_records(records: list[tuple[dict[str, Any], str | None, float | None]], grid_order: list[dict[str, Any]],
                 seeds: int, direction: str, allow_partial: bool = False) -> Selection:
    """Selection from ``(point, status, value)`` records, one per stored cell of the entry
    (a planned cell not stored yet is simply absent), with ``seeds`` planned per point."""
    by_key = {point_key(p): PointResult(dict(p), seeds) for p in grid_order}
    for point, status, value in records:
        result = by_key.get(point_key(point))
        if result is not None and status == PRUNED:
            result.pruned += 1
        if result is None or status not in FINISHED:
            continue
        result.finished += 1
        if value is not None and math.isfinite(value):
            result.values.append(float(value))
    return select(list(by_key.values()), direction, allow_partial)
