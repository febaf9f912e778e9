"""Grids of a suite: the settings each estimator is tuned over, and what selects among them.

A suite's ``[grid]`` table maps a name to a list of values. A name is either a training
setting (``lr``, the learning-rate decay and the temperature-annealing keys of
:mod:`dgbench.harness.schedules`) or an estimator hyperparameter (``temperature``,
``hidden``, ...), which applies to the estimators that have it and is ignored by the
others. A problem entry's ``grid`` and ``[estimators.grid.ID]`` replace the axes they name
(problem first, then estimator). Every (problem configuration, estimator) trains at every
point of the product of its axes and at every seed; the selected point is the best mean
over seeds of ``select_on`` (:mod:`dgbench.selection`), and reports rank each estimator
at its selected point.

``select_on`` names a metric of the problem's evaluation (``final_<select_on>`` of a
training cell): the suite's, a problem entry's own, or by default the problem's declared
selection metric (a validation split where it has one). ``select_direction`` is ``max`` or
``min``, by default the direction of the declared score with that metric (``valid_elbo``
takes ``test_elbo``'s).
"""

from __future__ import annotations

import itertools
from typing import Any

from dgbench.estimators.base import Estimator
from dgbench.problems.base import Problem
from dgbench.selection import DIRECTIONS

# Training settings a grid may vary. The ones that live in an optimiser's parameter group
# may differ between the members of one stacked model (seed_batching); the others
# (temperature schedules) must be equal within a group.
TRAINING_AXES = ("lr", "lr_decay", "lr_decay_every", "momentum", "anneal_rate", "anneal_every", "anneal_start",
                 "temperature_min")
MEMBER_AXES = ("lr", "lr_decay", "lr_decay_every")
MAX_GRID_POINTS = 10_000


class GridError(ValueError):
    """A grid, or a selection metric, that cannot be used."""


def check_grid(table: Any, where: str, estimators: list[type[Estimator]]) -> dict[str, list[Any]]:
    """``{axis: [values]}`` with every axis known (a training setting, or a hyperparameter
    of at least one of ``estimators``) and every list non-empty without repeats."""
    if not isinstance(table, dict):
        raise GridError(f"{where} must be a table of lists, got {type(table).__name__}")
    hyper_axes = {k for cls in estimators for k in cls.default_hyperparameters()} - {"samples"}
    for axis, values in table.items():
        if axis == "samples":
            raise GridError(f"{where}.samples: the budget sets samples; it cannot be tuned")
        if axis not in TRAINING_AXES and axis not in hyper_axes:
            raise GridError(f"{where}: unknown grid axis {axis!r} (training settings: {', '.join(TRAINING_AXES)}; "
                            f"or a hyperparameter of the suite's estimators: {', '.join(sorted(hyper_axes)) or 'none'})")
        if not isinstance(values, list) or not values:
            raise GridError(f"{where}.{axis} must be a non-empty list of values, got {values!r}")
        if len({repr(v) for v in values}) != len(values):
            raise GridError(f"{where}.{axis} lists a value twice: {values!r}")
        for cls in estimators:
            if axis in cls.default_hyperparameters():
                for value in values:
                    errors = cls.check_hyperparameters({axis: value}, f"{where}.{axis} for {cls.id}:")
                    if errors:
                        raise GridError(errors[0])
    return table


def resolve(suite_grid: dict[str, list], problem_grid: dict[str, list] | None,
            estimator_grid: dict[str, list] | None) -> dict[str, list]:
    """The axes of one (problem, estimator): the suite's, replaced axis by axis by the
    problem entry's, then by the estimator's."""
    return {**suite_grid, **(problem_grid or {}), **(estimator_grid or {})}


def points(grid: dict[str, list], cls: type[Estimator]) -> list[dict[str, Any]]:
    """The grid points of one estimator, in grid order (the first axis varies slowest);
    hyperparameter axes it does not have are dropped."""
    own = {k: v for k, v in grid.items() if k in TRAINING_AXES or k in cls.default_hyperparameters()}
    return [dict(zip(own, combo)) for combo in itertools.product(*own.values())]


def size(grid: dict[str, list]) -> int:
    n = 1
    for values in grid.values():
        n *= len(values)
    return n


def split(point: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(training settings, hyperparameters)`` of a grid point."""
    return ({k: v for k, v in point.items() if k in TRAINING_AXES},
            {k: v for k, v in point.items() if k not in TRAINING_AXES})


def selection_spec(pcls: type[Problem], select_on: str | None, direction: str | None, where: str) -> dict[str, str]:
    """``{"metric", "direction"}`` for a problem: ``select_on`` or the problem's declared
    selection metric; ``direction`` or the one of the declared score the metric names."""
    metric = select_on or pcls.selection_metric()
    if direction is None:
        direction = score_direction(pcls, metric)
        if direction is None:
            raise GridError(f"{where}: cannot tell whether {metric!r} is better high or low for {pcls.id} (its "
                            f"declared scores: {', '.join(s.metric for s in pcls.declared_scores())}); "
                            "add select_direction = \"max\" or \"min\"")
    if direction not in DIRECTIONS:
        raise GridError(f"{where}.select_direction must be 'max' or 'min', got {direction!r}")
    return {"metric": metric, "direction": direction}


def score_direction(pcls: type[Problem], metric: str) -> str | None:
    """``max``/``min`` from the declared score named ``metric``, or one on another split
    (``valid_elbo`` -> ``test_elbo``); the training objective from the problem's direction."""
    if metric == "objective":
        return "min" if pcls.minimize else "max"
    suffix = metric.split("_", 1)[-1]
    for score in pcls.declared_scores():
        if score.metric == metric or score.metric.split("_", 1)[-1] == suffix:
            return "max" if score.higher_is_better else "min"
    return None


def deferral(pcls: type[Problem], options: dict[str, Any], metric: str) -> tuple[str, str] | None:
    """``(along, deferred)``: the splits a tuned training cell of ``pcls`` evaluates along
    training (the selection metric's) and the ones it leaves to its selected point (the
    test split) (:mod:`dgbench.harness.deferred`); None when the problem does not evaluate
    split by split or the grid selects on the test split. No other split is evaluated: no
    report reads it."""
    splits = options.get("eval_splits", pcls.default_options().get("eval_splits"))
    if not isinstance(splits, str):
        return None
    named = [s for s in splits.replace(" ", "").split(",") if s]
    select = metric.split("_", 1)[0]
    if select == "test" or select not in named or "test" not in named:
        return None
    return select, "test"


def tuned_settings(pcls: type[Problem], options: dict[str, Any], spec: dict[str, str],
                   points: int) -> dict[str, Any]:
    """What a training cell of a grid with several (``points``) points carries: its
    selection metric and direction, the splits it evaluates along training and those
    deferred to the selected point, and the number of points (the cost model shares the
    deferred evaluation among them)."""
    out: dict[str, Any] = {"select_on": spec["metric"], "select_direction": spec["direction"], "grid_points": points}
    splits = deferral(pcls, options, spec["metric"])
    if splits:
        out["eval_along"], out["defer_splits"] = splits
    return out
