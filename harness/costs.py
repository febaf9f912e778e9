"""A cost model of cells: what ``dgbench run --dry-run`` prints, and the order cells are
handed to workers (longest first, so that no long cell starts at the end of a run while
the other workers idle).

A cell's cost is measured where it can be (the run time of the same cell in an earlier
run of the directory, e.g. one that failed or was interrupted) and otherwise predicted:
each problem configuration is calibrated once by timing a few training steps of
``reinforce`` and one evaluation (of a few examples, scaled up, where a problem
evaluates bounds on whole data splits), and a cell costs

    train:      steps x (step + (e - 1) x step' + overhead)  +  evaluations x eval
                +  variance checks x (batch + replicas x (e x replica + overhead') + reference)
    gradstats:  batch + replicas x (e x replica + overhead')  +  reference / cells sharing it

plus ``build`` (constructing the problem and its estimators; each cell, and each member
of a stacked group, builds its own) and :data:`UNIT_OVERHEAD` per unit a worker runs (a
cell or a stacked group: a worker's first call of each estimator and problem, the result's
assembly, and two workers sharing two cores where the model was timed alone; fitted on
the ``quick`` suite, where the other terms came to 125-137 s of the 157 s its 524
training units and 984 gradient-statistics cells ran, 2026-12-07).

``e`` is the estimator's f-evaluations per estimate as the problem counts them (samples
times evaluations per sample plus any extra; more where they grow with the node, as
IndeCateR's, and the product over the layers of a nested SBN), ``step`` a training step
with one sample and ``step'`` what each further evaluation adds (timed at one and at
:data:`SAMPLES` samples: vectorised samples cost far less than a step each), ``batch`` the
fixed cost of a vectorised batch of gradient
estimates and ``replica`` what each replica adds (timed at the two :data:`REPLICAS`).
An estimator whose work is not only f-evaluations (a learned control variate's network:
RELAX, REBAR, RODEO, NVIL cost 2-6 times a REINFORCE step on a toy; Gumbel-Rao's inner
draws) adds its ``overhead`` to each step and ``overhead'`` to each replica
(:class:`Overhead`): what it costs beyond the lines at its evaluations, timed once per run
on a toy of its family at two sizes (:data:`OVERHEAD_PROBES`), where a step is nothing but
overhead, and scaled to the configuration's logit coordinates (a fixed part and a part per
coordinate for the step, a part per coordinate for the replica).
``reference`` is the reference gradient that bias is measured against
(:func:`~dgbench.harness.cells.reference_gradient`): timed once where it is a closed form
or an enumeration (an SBN with 16 units enumerates 2^16 states), priced on the replica
line where it is the mean of many RLOO estimates. A training cell recomputes it at each
variance check (an enumerating estimator checks none: its gradient is exact); the
gradient-statistics cells of a configuration and seed share one (``OUT/references``).
Two kinds of training cell are timed on their own: an enumeration (``evals_per_sample``
None, e.g. ``exact``), whose cost grows with the node's states rather than with samples,
by a step of that estimator; and the members of a seed-batched group
(:mod:`dgbench.harness.seed_batching`), by a stacked step of as many members divided
among them (evaluations and gradient statistics stay per member). It is a rough model,
meant to order cells and to tell a suite that fits a laptop from one that needs a
cluster.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from dgbench.errors import NotApplicable
from dgbench.estimators.registry import ESTIMATORS
from dgbench.harness.cells import (
    REFERENCE_INNER_SAMPLES,
    REFERENCE_REPLICAS,
    REFERENCE_SAMPLES,
    make_optimizer,
    make_problem,
    materialize,
    node_estimators,
    train_step,
)
from dgbench.harness.enumeration import exact_objective_and_gradient
from dgbench.harness.gradstats import replicated_gradients
from dgbench.harness.suites import Cell
from dgbench.problems.registry import PROBLEMS

WARMUP, TIMED = 2, 5
# The toys each family's estimators are timed on for their overhead, at two sizes (families
# "both" and "any" on the Bernoulli one): the overhead of a learned control variate or of
# inner draws grows with the logits' coordinates (RODEO's 0.56 us per coordinate and replica
# on the 16-unit toy, 0.72 on vae-bernoulli-digits' 1024), not with what f costs.
OVERHEAD_PROBES = {"bernoulli": ("bernoulli-toy", {"dim": 16}, {"dim": 256}),
                   "categorical": ("categorical-toy", {"dim": 4, "categories": 4}, {"dim": 64, "categories": 4}),
                   "gaussian": ("gaussian-toy", {"dim": 8}, {"dim": 128})}
UNIT_OVERHEAD = {"train": 0.05, "gradstats": 0.01}  # seconds per unit beyond the model's terms (module docstring)
SAMPLES = 4  # the second point of the step's line in f-evaluations
REPLICAS = (32, 256)  # the two points of a gradient-statistics batch's line in replicas


@dataclass(frozen=True)
class Calibration:
    step_seconds: float  # one training step of reinforce with one sample
    evaluation_seconds: float  # one evaluate()
    replica_seconds: float  # what one more replica adds to a vectorised batch of reinforce estimates
    split_seconds: dict[str, float] | None = None  # evaluation_seconds by split, where a problem evaluates by split
    sample_seconds: float | None = None  # what one more sample adds to a step (None: a whole step)
    batch_seconds: float = 0.0  # the fixed cost of a vectorised batch of estimates
    build_seconds: float = 0.0  # constructing the problem and its estimators (data already loaded)
    reference_seconds: float = 0.0  # one reference gradient at the initial parameters

    def step(self, evaluations: float) -> float:
        extra = self.step_seconds if self.sample_seconds is None else self.sample_seconds
        return self.step_seconds + (evaluations - 1) * extra

    def replicas(self, replicas: float, evaluations: float) -> float:
        return self.batch_seconds + replicas * evaluations * self.replica_seconds


def _built(problem: str, options: dict[str, Any], estimator: str, samples: int, device: torch.device
           ) -> tuple[Any, torch.nn.ModuleDict, torch.Generator]:
    """``problem`` at seed 0 with ``estimator`` (``samples`` where it takes them), ready to step."""
    instance = make_problem(problem, options, 0, device)
    cls = ESTIMATORS[estimator]
    hyperparameters = {"samples": samples} if "samples" in cls.default_hyperparameters() else {}
    estimators = node_estimators(instance, cls, hyperparameters, device)
    generator = torch.Generator(device=device).manual_seed(0)
    materialize(instance, estimators, generator)
    return instance, estimators, generator


def _seconds_per_call(step: Callable[[], Any], warmup: int = WARMUP, timed: int = TIMED) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(timed):
        step()
    return (time.perf_counter() - start) / timed


def _step_seconds(problem: str, options: dict[str, Any], samples: int, device: torch.device,
                  estimator: str = "reinforce", warmup: int = WARMUP, timed: int = TIMED) -> float:
    instance, estimators, generator = _built(problem, options, estimator, samples, device)
    optimizer = make_optimizer("adam", list(instance.parameters()) + list(estimators.parameters()), 1e-4, device)
    data = torch.Generator().manual_seed(0)
    return _seconds_per_call(lambda: train_step(instance, estimators, optimizer, generator, data), warmup, timed)


OVERHEAD_REPLICAS = 128


@dataclass(frozen=True)
class Overhead:
    """What an estimator costs beyond the REINFORCE lines at its f-evaluations: per training
    step a fixed part and a part per logit coordinate, per gradient-statistics replica a part
    per coordinate (a replica batch is vectorised: its fixed part is the line's)."""

    step: float = 0.0
    step_per_coordinate: float = 0.0
    replica_per_coordinate: float = 0.0

    def at(self, coordinates: float) -> tuple[float, float]:
        """``(seconds per step, seconds per replica)`` on a node of ``coordinates`` logits."""
        return self.step + self.step_per_coordinate * coordinates, self.replica_per_coordinate * coordinates


def coordinates(instance: Any) -> float:
    """The logit coordinates of ``instance``'s first node (one tensor; summed over a dict)."""
    logits = instance.logits()
    return float(sum(t.numel() for t in logits.values()) if isinstance(logits, dict) else logits.numel())


def estimator_overhead(estimator: str, device: torch.device, probes: dict[tuple, tuple[Calibration, float]],
                       samples: int | None = None) -> Overhead:
    """What a training step and a gradient-statistics replica of ``estimator`` (``samples``,
    default its own; RODEO's network grows with their square) cost beyond the REINFORCE
    lines at its f-evaluations, on its family's toy at its two sizes (the step's fixed part
    and per-coordinate slope from the two; the replica's per coordinate from the larger);
    no overhead where it does not run there.
    ``probes`` caches the toys' calibrations and sizes."""
    cls = ESTIMATORS[estimator]
    family = cls.family if cls.family in OVERHEAD_PROBES else "bernoulli"
    problem, *sizes = OVERHEAD_PROBES[family]
    samples = samples or cls.default_hyperparameters().get("samples") or 1
    steps, replica = [], 0.0
    try:
        for options in sizes:
            key = (problem, json.dumps(options, sort_keys=True))
            if key not in probes:
                toy = make_problem(problem, options, 0, device)
                probes[key] = (calibrate(problem, options, device), coordinates(toy))
            probe, n = probes[key]
            step = _step_seconds(problem, options, samples, device, estimator, warmup=1, timed=3)
            instance, estimators, generator = _built(problem, options, estimator, samples, device)
            e = float(instance.evals_per_estimate(estimators))
            steps.append((n, max(step - probe.step(e), 0.0)))
        batch = _seconds_per_call(lambda: replicated_gradients(instance, estimators, OVERHEAD_REPLICAS, generator),
                                  warmup=1, timed=1)
        replica = max(batch - probe.replicas(OVERHEAD_REPLICAS, e), 0.0) / OVERHEAD_REPLICAS / n
    except Exception:  # not applicable to the toy: priced by its evaluations alone
        return Overhead()
    (n0, o0), (n1, o1) = steps
    slope = max((o1 - o0) / (n1 - n0), 0.0)
    return Overhead(max(o0 - slope * n0, 0.0), slope, replica)


def calibrate_enumeration(problem: str, options: dict[str, Any], estimator: str, device: torch.device
                          ) -> float | None:
    """Seconds of one training step of the enumerating ``estimator`` on ``problem`` (its
    cost grows with the node's states, not with samples, so the sample line of
    :func:`calibrate` cannot price it), or None where it does not apply."""
    try:
        return _step_seconds(problem, options, 1, device, estimator, warmup=1, timed=2)
    except Exception:  # NotApplicable (too many states) or a failure the cell will report
        return None


def calibrate(problem: str, options: dict[str, Any], device: torch.device) -> Calibration:
    """Time a few training steps (at one and at :data:`SAMPLES` samples), one evaluation
    and two batches of gradient estimates of ``problem`` (seed 0)."""
    one = _step_seconds(problem, options, 1, device)
    more = _step_seconds(problem, options, SAMPLES, device)
    start = time.perf_counter()  # the data were loaded by the steps' problems: this is construction only
    instance, estimators, generator = _built(problem, options, "reinforce", 1, device)
    build = time.perf_counter() - start
    # the evaluations SAMPLES samples make (SAMPLES**layers in a nested SBN)
    extra = _problem_evaluations(instance, "reinforce", {"samples": SAMPLES}, device) - 1.0
    splits = _evaluation_seconds(instance, problem, options, device)
    batches = []
    for replicas in REPLICAS:
        replicated_gradients(instance, estimators, replicas, generator)
        start = time.perf_counter()
        replicated_gradients(instance, estimators, replicas, generator)
        batches.append(time.perf_counter() - start)
    (r0, t0), (r1, t1) = zip(REPLICAS, batches)
    per_replica = max((t1 - t0) / (r1 - r0), t1 / r1 / 10)  # a floor: timing noise may flatten the line
    batch = max(t0 - r0 * per_replica, 0.0)
    return Calibration(one, sum(splits.values()), per_replica, splits if len(splits) > 1 or "" not in splits else None,
                       sample_seconds=max((more - one) / max(extra, 1.0), 0.0), batch_seconds=batch,
                       build_seconds=build, reference_seconds=reference_seconds(instance, batch, per_replica))


def _problem_evaluations(instance: Any, estimator: str, hyperparameters: dict[str, Any], device: torch.device
                         ) -> float:
    """f-evaluations of one estimate of ``estimator`` on ``instance``, as the problem counts them."""
    estimators = node_estimators(instance, ESTIMATORS[estimator], hyperparameters, device)
    return float(instance.evals_per_estimate(estimators))


def reference_seconds(instance: Any, batch: float, per_replica: float) -> float:
    """Seconds of ``instance``'s reference gradient: a closed form or an enumeration timed
    once, the mean of many RLOO estimates priced on the replica line (timing it would
    cost as much as the cells it prices: seconds per configuration)."""
    start = time.perf_counter()
    try:
        if instance.exact_gradient() is None:
            exact_objective_and_gradient(instance)
        return time.perf_counter() - start
    except NotApplicable:  # RLOO: REFERENCE_SAMPLES on the first node, REFERENCE_INNER_SAMPLES nested in each further
        evals = REFERENCE_SAMPLES * REFERENCE_INNER_SAMPLES ** (len(instance.node_names()) - 1)
        return batch + REFERENCE_REPLICAS * evals * per_replica


CALIBRATION_EXAMPLES = 32


def _evaluation_seconds(instance: Any, problem: str, options: dict[str, Any], device: torch.device
                        ) -> dict[str, float]:
    """The seconds of one ``evaluate()``, by split where the problem evaluates split by
    split (``{"": seconds}`` otherwise). A problem that evaluates bounds on whole data
    splits (with up to 1000 samples per example: minutes) is timed on a few examples of
    each split and scaled up."""
    examples = getattr(instance, "evaluation_examples", None)
    splits = instance.evaluation_splits()
    if examples is None or "eval_examples" not in type(instance).default_options() or examples() <= CALIBRATION_EXAMPLES:
        start = time.perf_counter()
        instance.evaluate()
        return {"": time.perf_counter() - start}
    out = {}
    for split in splits or ("",):
        small = make_problem(problem, {**options, "eval_examples": CALIBRATION_EXAMPLES}, 0, device)
        if split:
            small.restrict_evaluation({split})
        start = time.perf_counter()
        small.evaluate()
        seconds = time.perf_counter() - start
        scale = instance.evaluation_examples(split or None) / max(1e-9, small.evaluation_examples(split or None))
        out[split] = seconds * scale
    return out


def evaluations(cell: Cell) -> float:
    cls = cell.estimator_class
    if cls.evals_per_sample is None:
        return 1.0
    samples = cell.hyperparameters.get("samples", cls.default_hyperparameters().get("samples") or cls.min_samples)
    return float(samples * cls.evals_per_sample + cls.extra_evals)


def evaluation_shares(cell: Cell, split_seconds: dict[str, float] | None = None) -> tuple[float, float]:
    """The shares of a full evaluation a training cell runs along training and, for its
    selected point only, at the end: ``(1, 0)`` unless a grid defers splits
    (:mod:`dgbench.harness.deferred`); each split weighs its calibrated seconds where
    known (a cheaper validation bound, ``valid_iw_samples``), else all alike."""
    deferred = {x for x in (cell.settings.get("defer_splits") or "").split(",") if x}
    splits = cell.options.get("eval_splits", PROBLEMS[cell.problem].default_options().get("eval_splits"))
    if not deferred or not isinstance(splits, str):
        return 1.0, 0.0
    named = [x for x in splits.replace(" ", "").split(",") if x]
    along = {x for x in (cell.settings.get("eval_along") or "").split(",") if x} or set(named) - deferred
    weight = {x: (split_seconds or {}).get(x, 1.0 if not split_seconds else 0.0) for x in named}
    total = sum(weight.values()) or 1.0
    return (sum(w for x, w in weight.items() if x in along) / total,
            sum(w for x, w in weight.items() if x in deferred) / total)


def evaluations_along(steps: int, eval_every: int) -> int:
    """How many evaluations training runs: at every multiple of ``eval_every`` in
    ``1..steps``, and at the last step when it is not one (never at step 0)."""
    return steps // eval_every + (1 if steps % eval_every else 0)


@dataclass(frozen=True)
class CellCost:
    """A training cell's predicted seconds by where they go."""

    steps: float  # the training steps (with the gradient statistics along them)
    evaluation: float  # one evaluation of the splits read along training
    evaluations: int  # how many of them
    deferred: float  # the cell's share of the held-out evaluation at the selected point

    build: float = 0.0  # constructing the problem and its estimators

    @property
    def seconds(self) -> float:
        return self.build + self.steps + self.evaluation * self.evaluations + self.deferred

    def pruned(self, share: float, rung_evaluations: float) -> float:
        """The expected seconds under successive halving: ``share`` of the steps (and of
        the evaluations along them) and ``rung_evaluations`` more evaluations."""
        return (self.build + self.steps * share + self.evaluation * (self.evaluations * share + rung_evaluations)
                + self.deferred)


def training_cost(cell: Cell, calibration: Calibration, e: float | None = None,
                  overhead: tuple[float, float] = (0.0, 0.0)) -> CellCost:
    """The model of the module docstring for a training cell (``e``: its f-evaluations per
    estimate, by default as the estimator class declares them; ``overhead``: the seconds its
    step and each replica of its variance checks add beyond them); a grid's deferred splits
    cost one evaluation shared by the entry's grid points (only the selected point runs it)."""
    s, e = cell.settings, evaluations(cell) if e is None else e
    steps = s["steps"]
    along, later = evaluation_shares(cell, calibration.split_seconds)
    checks = 0 if cell.estimator_class.evals_per_sample is None else steps // s["variance_every"]
    return CellCost(steps * (calibration.step(e) + overhead[0])
                    + checks * (calibration.replicas(s["variance_replicas"], e) + s["variance_replicas"] * overhead[1]
                                + calibration.reference_seconds),
                    calibration.evaluation_seconds * along, evaluations_along(steps, s["eval_every"]),
                    calibration.evaluation_seconds * later / s.get("grid_points", 1), calibration.build_seconds)


def predicted_seconds(cell: Cell, calibration: Calibration, sharing: int = 1, e: float | None = None,
                      overhead: tuple[float, float] = (0.0, 0.0)) -> float:
    """The model of the module docstring; ``sharing``: the gradient-statistics cells that
    share this one's reference gradient (its configuration and seed); ``e`` as in
    :func:`training_cost`, ``overhead``: the seconds a step and a replica add beyond the
    estimator's evaluations (:func:`estimator_overhead`)."""
    e = evaluations(cell) if e is None else e
    if cell.kind == "gradstats":
        replicas = cell.settings["replicas"]
        return (calibration.build_seconds + calibration.replicas(replicas, e) + replicas * overhead[1]
                + calibration.reference_seconds / max(sharing, 1))
    return training_cost(cell, calibration, e, overhead).seconds


def calibrate_stacked(problem: str, options: dict[str, Any], members: int, device: torch.device) -> float:
    """Seconds per member of a seed-batched training step of ``members`` stacked seeds of
    ``problem`` (``reinforce``, one sample), timed like :func:`calibrate`'s step."""
    from dgbench.harness.seed_batching import group_step, member_axis, stack_problem
    from dgbench.noise import MemberGenerators

    instances = [make_problem(problem, options, seed, device) for seed in range(members)]
    shell = stack_problem(instances)
    estimators = node_estimators(shell, ESTIMATORS["reinforce"], {"samples": 1}, device)
    shell.take_member_batches(instances)
    (node,) = shell.node_names()
    noise = MemberGenerators([torch.Generator(device=device).manual_seed(m) for m in range(members)],
                             member_axis(estimators[node], shell.logits().shape))
    data = [torch.Generator().manual_seed(m) for m in range(members)]
    optimizer = make_optimizer("adam", list(shell.parameters()), 1e-4, device)

    def step() -> None:
        group_step(shell, estimators, optimizer, noise, instances, data)
        optimizer.step()

    return _seconds_per_call(step) / members


def configuration(cell: Cell) -> tuple[str, str]:
    return cell.problem, json.dumps(cell.options, sort_keys=True)


def estimate(cells: list[Cell], device: torch.device, measured: dict[str, float] | None = None,
             pruned: dict[str, tuple[float, float]] | None = None) -> dict[str, float]:
    """Predicted (or measured) seconds of every runnable cell, by key (calibrated on the
    CPU where ``device`` is not on this machine, e.g. the GPUs of remote Dask workers).
    ``pruned``: the cells successive halving applies to, with their expected
    ``(share of steps, rung evaluations)`` (:func:`dgbench.harness.halving.expected_share`)."""
    pruned = pruned or {}
    measured = measured or {}
    if device.type == "cuda" and not torch.cuda.is_available():
        device = torch.device("cpu")
    calibrations: dict[tuple, Calibration] = {}

    def calibration(cell: Cell, members: int) -> Calibration:
        config = configuration(cell)
        if config not in calibrations:
            try:
                calibrations[config] = calibrate(cell.problem, cell.options, device)
            except Exception:  # the cell itself will report what is wrong; here it only loses its place
                calibrations[config] = Calibration(0.0, 0.0, 0.0)
        if cell.kind == "train" and cell.estimator_class.evals_per_sample is None:  # an enumeration
            key = (*config, cell.estimator)
            if key not in calibrations:
                step = calibrate_enumeration(cell.problem, cell.options, cell.estimator, device)
                calibrations[key] = calibrations[config] if step is None else replace(
                    calibrations[config], step_seconds=step, sample_seconds=0.0)
            return calibrations[key]
        if members == 1:
            return calibrations[config]
        if (*config, members) not in calibrations:
            try:
                step = calibrate_stacked(cell.problem, cell.options, members, device)
            except Exception:  # no stacked figure: each member as if it ran alone
                step = calibrations[config].step_seconds
            single = calibrations[config]
            scale = step / single.step_seconds if single.step_seconds > 0 else 1.0
            calibrations[(*config, members)] = replace(
                single, step_seconds=step,
                sample_seconds=None if single.sample_seconds is None else single.sample_seconds * scale)
        return calibrations[(*config, members)]

    instances: dict[tuple, Any] = {}
    counted: dict[tuple, float] = {}

    def instance_of(cell: Cell) -> Any:
        """The cell's problem at seed 0, built once per configuration."""
        config = configuration(cell)
        if config not in instances:
            instances[config] = make_problem(cell.problem, cell.options, 0, device)
        return instances[config]

    def evaluations_of(cell: Cell) -> float:
        """As the problem counts them (an estimator's class cannot know a node's size or a
        model's nesting); the class's count where the estimator cannot be built."""
        if cell.estimator_class.evals_per_sample is None:
            return evaluations(cell)
        key = (*configuration(cell), cell.estimator, json.dumps(cell.hyperparameters, sort_keys=True, default=str))
        if key not in counted:
            try:
                counted[key] = _problem_evaluations(instance_of(cell), cell.variant_of or cell.estimator,
                                                    cell.hyperparameters, device)
            except Exception:  # the cell itself will report what is wrong
                counted[key] = evaluations(cell)
        return counted[key]

    probes: dict[tuple, tuple[Calibration, float]] = {}
    overheads: dict[tuple, Overhead] = {}
    sizes: dict[tuple, float] = {}

    def coordinates_of(cell: Cell) -> float:
        config = configuration(cell)
        if config not in sizes:
            try:
                sizes[config] = coordinates(instance_of(cell))
            except Exception:  # the cell itself will report what is wrong
                sizes[config] = 0.0
        return sizes[config]

    def overhead_of(cell: Cell, members: int) -> tuple[float, float]:
        """A stacked step's overhead is shared by its members."""
        name = cell.variant_of or cell.estimator
        if cell.estimator_class.evals_per_sample is None:
            return 0.0, 0.0
        samples = cell.hyperparameters.get("samples") if "samples" in cell.estimator_class.default_hyperparameters() else None
        if (name, samples) not in overheads:
            overheads[(name, samples)] = estimator_overhead(name, device, probes, samples)
        step, replica = overheads[(name, samples)].at(coordinates_of(cell))
        return step / members, replica

    def seconds(cell: Cell, members: int = 1) -> float:
        if cell.key in measured:  # a stacked member records its whole group's time
            return measured[cell.key] / members
        e, overhead = evaluations_of(cell), overhead_of(cell, members)
        if cell.key in pruned:
            return UNIT_OVERHEAD[cell.kind] / members + training_cost(cell, calibration(cell, members), e,
                                                           overhead).pruned(*pruned[cell.key])
        return UNIT_OVERHEAD[cell.kind] / members + predicted_seconds(
            cell, calibration(cell, members), sharing.get((*configuration(cell), cell.seed), 1), e, overhead)

    sharing: dict[tuple, int] = {}  # gradient-statistics cells by configuration and seed: one reference each
    for cell in cells:
        if cell.kind == "gradstats" and not cell.skip_reason and cell.key not in measured:
            key = (*configuration(cell), cell.seed)
            sharing[key] = sharing.get(key, 0) + 1
    out = {}
    for cell in cells:
        if cell.skip_reason:
            continue
        members = getattr(cell, "cells", None)  # a seed-batched group: its members' steps stacked
        out[cell.key] = sum(seconds(c, len(members)) for c in members) if members else seconds(cell)
    return out


def longest_first(cells: list[Cell], seconds: dict[str, float]) -> list[Cell]:
    return sorted(cells, key=lambda c: -seconds.get(c.key, 0.0))
