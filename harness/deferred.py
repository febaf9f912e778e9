"""Held-out evaluation deferred to the selected grid points.

In a tuned comparison only the selected point's test metrics are ever read, and the test
bound is the expensive part of a VAE cell (1000 importance samples per test example). So
a training cell of a grid with more than one point, on a problem that evaluates split by
split, carries ``defer_splits`` (e.g. ``"test"``) in its settings: it evaluates the other
splits it reads along training (``eval_along``: the selection metric's), leaves the
deferred ones out (and any split nobody reads), and
returns its final parameters; :mod:`dgbench.harness.selected_evaluation` keeps them and
evaluates the deferred splits at the selected point only, once its grid is complete. A
run resumed later evaluates what is missing and nothing twice.
"""

from __future__ import annotations

from typing import Any

import torch

from dgbench.harness.suites import Cell
from dgbench.problems.base import Problem

DEFER = "defer_splits"  # settings key: comma-separated splits evaluated only at the selected point
ALONG = "eval_along"  # settings key: the splits evaluated along training (default: all but the deferred)


def _splits(text: str | None) -> set[str]:
    return {s for s in (text or "").split(",") if s}


def deferred_splits(cell: Cell) -> set[str]:
    return _splits(cell.settings.get(DEFER))


def restrict(problem: Problem, cell_settings: dict[str, Any]) -> None:
    """Evaluate only the splits read along training: ``eval_along`` where given, else all
    but the deferred ones."""
    deferred = _splits(cell_settings.get(DEFER))
    if not deferred:
        return
    along = _splits(cell_settings.get(ALONG)) or set(problem.evaluation_splits()) - deferred
    problem.restrict_evaluation(along)


def final_state(problem: Problem) -> dict[str, torch.Tensor]:
    """The problem's parameters and buffers at the end of training, on the CPU."""
    return {k: v.detach().to("cpu", copy=True) for k, v in problem.state_dict().items()}
