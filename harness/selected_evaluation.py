"""Evaluation of the deferred held-out splits at the selected grid points (see
:mod:`dgbench.harness.deferred` for what a training cell defers).

The driver keeps each deferred cell's final parameters in ``OUT/finals/KEY.pt``
(checksummed, :mod:`dgbench.harness.checkpoints`); once a (configuration, estimator) has
every seed finished (or pruned, :mod:`dgbench.harness.halving`) at every grid point,
:func:`evaluate_selected` selects its point
(:mod:`dgbench.selection`, on the cells' ``select_on`` and ``select_direction``) and
evaluates the deferred splits of that point's seeds only. Their metrics join the training
cells' own (``final_test_elbo``, ...), with ``deferred_evaluation = 1``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from dgbench import selection
from dgbench.harness.cells import make_problem
from dgbench.harness.checkpoints import load_saved, save_atomically
from dgbench.harness.deferred import deferred_splits
from dgbench.harness.halving import entry_key
from dgbench.harness.suites import Cell

DIRECTORY = "finals"
FORMAT = 1


def final_path(out: Path, key: str) -> Path:
    return Path(out) / DIRECTORY / f"{key}.pt"


def save_final(out: Path, key: str, state: dict[str, torch.Tensor]) -> None:
    save_atomically(final_path(out, key), {"format": FORMAT, "state": state})


def load_final(out: Path, key: str) -> dict[str, torch.Tensor] | None:
    saved = load_saved(final_path(out, key), FORMAT)
    return None if saved is None else saved["state"]


def evaluate_selected(cells: list[Cell], store: Any, device: str, progress: bool = False) -> int:
    """Evaluate the deferred splits at every selected point whose grid is complete and
    whose seeds lack them; the number of cells evaluated."""
    deferred = [c for c in cells if c.kind == "train" and deferred_splits(c) and not c.skip_reason]
    if not deferred:
        return 0
    entries: dict[tuple, list[Cell]] = {}
    for cell in deferred:
        entries.setdefault(entry_key(cell), []).append(cell)
    status = store.statuses({c.key for c in deferred})
    todo: list[Cell] = []
    for members in entries.values():
        first = members[0]
        metric = f"final_{first.settings['select_on']}"
        values = store.metric_values({c.key for c in members}, metric)
        order = list(dict.fromkeys(selection.point_key(c.grid) for c in members))
        seeds = len({c.seed for c in members})
        chosen = selection.from_records([(c.grid, status.get(c.key), values.get(c.key)) for c in members],
                                        [json.loads(k) for k in order], seeds, first.settings["select_direction"])
        if chosen.selected is None or not all(p.settled for p in chosen.points):
            continue  # a later run completes the grid, then evaluates
        best = selection.point_key(chosen.selected.point)
        for cell in members:
            if selection.point_key(cell.grid) != best or status.get(cell.key) not in selection.FINISHED:
                continue
            have = store.metric_names(cell.key)
            wanted = deferred_splits(cell)
            if not any(name.startswith(f"final_{split}_") for name in have for split in wanted):
                todo.append(cell)
    if not todo:
        return 0
    evaluated = 0
    for cell in tqdm(todo, unit="evaluation", desc="test bound at selected points", disable=not progress,
                     dynamic_ncols=True):
        state = load_final(store.directory, cell.key)
        if state is None:
            print(f"dgbench: note: no final parameters for {cell.estimator} on {cell.problem} (seed {cell.seed}); "
                  "its held-out splits stay unevaluated until the cell is rerun", file=sys.stderr)
            continue
        problem = make_problem(cell.problem, cell.options, cell.seed, torch.device(device))
        problem.load_state_dict(state)
        problem.restrict_evaluation(deferred_splits(cell))
        metrics = {f"final_{k}": v for k, v in problem.evaluate().items()}
        store.add_metrics(cell.key, {**metrics, "deferred_evaluation": 1.0})
        evaluated += 1
    return evaluated
