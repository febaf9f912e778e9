"""Successive halving of a grid (``--prune halving``): hopeless grid points stop early.

Successive halving (Jamieson & Talwalkar, 2016, "Non-stochastic best arm identification
and hyperparameter optimization", AISTATS), in the geometric form of one bracket of
Hyperband (Li et al., 2018, JMLR). The ``n`` points of one entry's grid (a problem
configuration and an estimator; the seeds of a point always go together) train to
``r_0`` steps; at every rung the points are ranked by the mean over their seeds of the
selection metric, with the rule of :mod:`dgbench.selection` (a non-finite mean is the
worst, ties go to the point listed first), the best ``n_{k+1}`` continue from where they
stopped (their checkpoints), and the others end as ``pruned``. With ``R`` the protocol's
steps, ``eta = 2`` and ``K = floor(log2 min(n, R))``:

    r_k = floor(R / 2^(K - k)),    n_k = max(1, floor(n / 2^k)),    k = 0 .. K

so the last rung trains ``n_K`` points to ``R`` steps, and the entry costs
``sum_k n_k (r_k - r_{k-1}) / (n R)`` of the full grid's training steps (6 points: 0.46;
24 points: 0.18) plus one evaluation of the selection split per point and rung.

A survivor's result is that of an uninterrupted run (a paused cell continues from its
checkpoint bit for bit on the CPU; the rung's evaluation draws from its own generator),
with the rung's evaluations added to its series. A pruned cell is stored with the metrics
it had at its last rung. It is a protocol difference: a setting that learns slowly but
ends best (a small learning rate) can be cut at an early rung. Never on by default; a
reproduction run with it lists it among its differences, and the report's banner says it.

The driver runs all entries' rung ``k`` together (one backend call per rung, so workers
stay busy across entries), keeps each paused result in ``OUT/halving/KEY.json`` until
the cell is stored, and decides an entry's rung once every live seed of it has reported:
a run stopped anywhere resumes where it was, and decides nothing twice.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dgbench import selection
from dgbench.harness.suites import Cell

ETA = 2
DIRECTORY = "halving"
METHODS = ("none", "halving")


def rungs(points: int, steps: int) -> list[tuple[int, int]]:
    """``[(n_k, r_k)]``: how many points train to ``r_k`` steps at rung ``k`` (see the
    module docstring; with fewer steps than points, ``K = floor(log2 steps)`` instead, so
    that every rung trains at least one step)."""
    if points < 1 or steps < 1:
        raise ValueError(f"successive halving needs at least one point and one step, got {points} and {steps}")
    # fewer rungs where the steps cannot be halved that often: every rung trains >= 1 step
    top = min(int(math.floor(math.log(points, ETA) + 1e-9)), int(math.floor(math.log(steps, ETA) + 1e-9)))
    return [(max(1, points // ETA ** k), steps // ETA ** (top - k)) for k in range(top + 1)]


def expected_share(points: int, steps: int) -> tuple[float, float]:
    """``(steps, evaluations)``: the expected share of a cell's training steps that
    successive halving runs, and the rung evaluations per cell (before its last rung)."""
    schedule = rungs(points, steps)
    trained, before = 0.0, 0
    for n, r in schedule:
        trained += n * (r - before)
        before = r
    return trained / (points * steps), sum(n for n, _ in schedule[:-1]) / points


def entry_key(cell: Cell) -> tuple[str, str, str]:
    """What a grid is selected within: the problem configuration and the estimator."""
    return cell.problem, json.dumps(cell.options, sort_keys=True), cell.estimator


def entries(cells: list[Cell]) -> dict[tuple[str, str, str], list[Cell]]:
    """The training cells of every entry whose grid has more than one point."""
    out: dict[tuple[str, str, str], list[Cell]] = {}
    for cell in cells:
        if cell.kind == "train" and not cell.skip_reason:
            out.setdefault(entry_key(cell), []).append(cell)
    return {k: v for k, v in out.items() if len({selection.point_key(c.grid) for c in v}) > 1}


def shares(cells: list[Cell]) -> dict[str, tuple[float, float]]:
    """:func:`expected_share` of every cell that successive halving applies to, by key."""
    out = {}
    for members in entries(cells).values():
        share = expected_share(len({selection.point_key(c.grid) for c in members}), members[0].settings["steps"])
        out.update({c.key: share for c in members})
    return out


def paused_path(out: Path, key: str) -> Path:
    return Path(out) / DIRECTORY / f"{key}.json"


def load_paused(out: Path, key: str) -> dict[int, dict[str, Any]]:
    """The paused results of a cell, by the step it paused at."""
    try:
        saved = json.loads(paused_path(out, key).read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # a damaged file: the rung is rerun from its checkpoint
        return {}
    return {int(step): result for step, result in saved.items()}


def save_paused(out: Path, key: str, step: int, result: dict[str, Any]) -> None:
    saved = {str(k): v for k, v in load_paused(out, key).items()}
    saved[str(step)] = result
    path = paused_path(out, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(saved, default=float))
    os.replace(partial, path)


class Entry:
    """One entry's grid under successive halving: its cells, its rungs, what is stored."""

    def __init__(self, cells: list[Cell]) -> None:
        self.cells = cells
        self.order = list(dict.fromkeys(selection.point_key(c.grid) for c in cells))
        self.seeds = len({c.seed for c in cells})
        self.schedule = rungs(len(self.order), cells[0].settings["steps"])
        self.metric = f"final_{cells[0].settings['select_on']}"
        self.direction = cells[0].settings["select_direction"]

    def live_points(self, status: dict[str, str]) -> set[str]:
        """Grid points none of whose seeds was pruned."""
        pruned = {selection.point_key(c.grid) for c in self.cells if status.get(c.key) == selection.PRUNED}
        return set(self.order) - pruned

    def training(self, status: dict[str, str]) -> list[Cell]:
        """The cells of live points that are still training (not stored)."""
        live = self.live_points(status)
        return [c for c in self.cells if selection.point_key(c.grid) in live and c.key not in status]

    def work(self, k: int, status: dict[str, str], out: Path) -> list[Cell]:
        """The cells to run for rung ``k``: those still training without its result."""
        if k >= len(self.schedule):
            return []
        r = self.schedule[k][1]
        last = k == len(self.schedule) - 1
        todo = [c for c in self.training(status) if last or r not in load_paused(out, c.key)]
        return [c if last else dataclasses.replace(c, stop_at=r) for c in todo]

    def decide(self, k: int, status: dict[str, str], stored: dict[str, float], out: Path
               ) -> list[tuple[Cell, dict[str, Any]]] | None:
        """After rung ``k`` (not the last): the cells to store as pruned, with their
        results; None while a live seed has not reported (a failed cell: a rerun decides)."""
        if k >= len(self.schedule) - 1:
            return []
        r, keep = self.schedule[k][1], self.schedule[k + 1][0]
        live = self.live_points(status)
        if len(live) <= keep:
            return []  # decided before
        records, paused = [], {}
        for cell in self.cells:
            point = selection.point_key(cell.grid)
            if point not in live:
                continue
            if cell.key in status:  # ended (diverged) at an earlier step: its stored value counts
                if status[cell.key] not in selection.FINISHED:
                    return None
                records.append((cell.grid, status[cell.key], stored.get(cell.key)))
                continue
            result = load_paused(out, cell.key).get(r)
            if result is None:
                return None
            paused[cell.key] = result
            records.append((cell.grid, "done", result["metrics"].get(self.metric)))
        ranked = selection.from_records(records, [json.loads(p) for p in self.order if p in live], self.seeds,
                                        self.direction)
        order = sorted(range(len(ranked.points)), key=lambda i: -selection.score(ranked.points[i], self.direction))
        survivors = {selection.point_key(ranked.points[i].point) for i in order[:keep]}  # stable: ties to grid order
        out_cells = []
        for cell in self.cells:
            point = selection.point_key(cell.grid)
            if point in live and point not in survivors and cell.key in paused:
                result = dict(paused[cell.key])
                value = result["metrics"].get(self.metric)
                result.update(status=selection.PRUNED, reason=(
                    f"pruned by successive halving at step {r} of {self.cells[0].settings['steps']}: "
                    f"{self.metric[len('final_'):]} = {value:.6g}" if isinstance(value, float) else
                    f"pruned by successive halving at step {r}"))
                out_cells.append((cell, result))
        return out_cells


def run_rungs(cells: list[Cell], others: list[Cell], store: Any, run: Callable[[list[Cell]], None],
              record: Callable[[Cell, dict[str, Any]], None]) -> None:
    """Run ``others`` (cells halving does not apply to) with rung 0, then the rungs of
    every entry of ``cells`` (all of the plan's cells, finished ones included) in turn;
    ``run(units)`` hands units to the backend (whose results come back through the
    caller's recording), ``record(cell, result)`` stores a pruned cell."""
    out = store.directory
    todo = [Entry(members) for members in entries(cells).values()]
    keys = {c.key for e in todo for c in e.cells}
    rounds = max((len(e.schedule) for e in todo), default=1)
    blocked: set[int] = set()  # entries a failed seed holds at a rung: a rerun goes on
    def settled() -> dict[str, str]:  # a failed cell is retried: it counts as still training
        return {k: v for k, v in store.statuses(keys).items() if v != "failed"}

    for k in range(rounds):
        status = settled()
        units = [c for i, e in enumerate(todo) if i not in blocked for c in e.work(k, status, out)]
        if k == 0:
            units = others + units
        if units:
            run(units)
        status = settled()
        for i, entry in enumerate(todo):
            if i in blocked:
                continue
            stored = store.metric_values({c.key for c in entry.cells}, entry.metric)
            decided = entry.decide(k, status, stored, out)
            if decided is None:
                blocked.add(i)
                continue
            for cell, result in decided:
                record(cell, result)
    status = store.statuses(keys)
    for key in keys & set(status):  # stored: its series and metrics hold what the rungs reported
        paused_path(out, key).unlink(missing_ok=True)
    folder = Path(out) / DIRECTORY
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
