"""Running one cell: gradient statistics at fixed parameters, or a training run.

Runs inside a worker process; returns a plain dict (status, metrics, series) that the
driver writes. An estimator that cannot run on the problem (:class:`NotApplicable`, e.g.
``exact`` beyond its state limit) marks the cell ``skipped`` with its reason; any other
exception marks it ``failed`` with its traceback; a non-finite
objective or gradient ends a training run as ``diverged`` at that step.
"""

from __future__ import annotations

import math
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dgbench.errors import NotApplicable
from dgbench.estimators.base import Estimator
from dgbench.estimators.registry import ESTIMATORS
from dgbench.harness import compiled, schedules
from dgbench.harness import deferred as held_out
from dgbench.harness.checkpoints import Checkpoint
from dgbench.harness.devices import peak_memory_mb, reset_peak_memory
from dgbench.harness.enumeration import exact_objective_and_gradient
from dgbench.harness.gradstats import flatten, gradient_statistics, replicated_gradients
from dgbench.harness.references import reference_key, shared_reference
from dgbench.harness.seeding import derive_seed, make_generator
from dgbench.harness.suites import Cell
from dgbench.harness.training import (  # noqa: F401  (train_step, defer_checks: the single-model API, re-exported)
    Member,
    Schedules,
    _step_estimators,
    batch_loss_scale,
    defer_checks,
    forward_backward,
    make_optimizer,
    materialize,
    train,
    train_step,
)
from dgbench.problems.base import Problem
from dgbench.problems.registry import PROBLEMS

SCALAR_STATS = ("bias_norm", "bias_z_max", "variance_mean", "variance_total", "mse", "cosine", "snr_mean",
                "gradient_norm", "bias_along", "se_along", "z_along")


def node_estimators(problem: Problem, cls: type[Estimator], hyperparameters: dict[str, Any],
                    device: torch.device) -> torch.nn.ModuleDict:
    """One instance of ``cls`` per stochastic node of ``problem``."""
    return torch.nn.ModuleDict(
        {name: cls(problem.family, **hyperparameters) for name in problem.node_names()}
    ).to(device)


def make_problem(problem_id: str, options: dict[str, Any], seed: int, device: torch.device,
                 dtype: torch.dtype | None = None) -> Problem:
    """``problem_id`` with ``options``, its parameters (and first minibatch) drawn from a
    generator seeded by (problem, options, seed index) only, never by the estimator; torch's
    global RNG is neither used nor touched."""
    generator = torch.Generator().manual_seed(derive_seed("init", problem_id, options, seed))
    extra = {} if dtype is None else {"dtype": dtype}
    return PROBLEMS[problem_id](**options, **extra, device=device, generator=generator)


def build(cell: Cell, device: torch.device) -> tuple[Problem, torch.nn.ModuleDict]:
    """The cell's problem (initialised from a seed that ignores the estimator) and estimators."""
    problem = make_problem(cell.problem, cell.options, cell.seed, device)
    return problem, node_estimators(problem, cell.estimator_class, cell.hyperparameters, device)


# The many-sample reference: RLOO (unbiased, any family) with this many samples per
# estimate at the first node (2 at deeper nodes, whose cost multiplies), averaged over
# REFERENCE_REPLICAS vectorised estimates.
REFERENCE_SAMPLES = 64
REFERENCE_INNER_SAMPLES = 2
REFERENCE_REPLICAS = 200


def reference_gradient(problem: Problem, generator: torch.Generator) -> tuple[torch.Tensor, str, torch.Tensor]:
    """The gradient bias is measured against, its source, and its per-coordinate standard error.

    Closed form if the problem has one, else enumeration if the node is small enough
    (standard error 0), else the mean of many unbiased RLOO estimates with its own
    standard error.
    """
    closed = problem.exact_gradient()
    if closed is not None:
        grad = flatten(closed)
        return grad, "closed-form", torch.zeros_like(grad)
    try:
        grad = flatten(exact_objective_and_gradient(problem)[1])
        # A Gaussian node is "enumerated" on its Gauss-Hermite grid (see the exact estimator).
        return grad, "quadrature" if problem.family == "gaussian" else "enumeration", torch.zeros_like(grad)
    except NotApplicable:
        pass
    rloo = ESTIMATORS["rloo"]
    names = problem.node_names()
    device = problem.logits().device
    estimators = torch.nn.ModuleDict({
        name: rloo(problem.family, samples=REFERENCE_SAMPLES if i == 0 else REFERENCE_INNER_SAMPLES)
        for i, name in enumerate(names)
    }).to(device)
    estimates = replicated_gradients(problem, estimators, REFERENCE_REPLICAS, generator)
    return estimates.mean(0), "sampled", (estimates.var(0) / REFERENCE_REPLICAS).sqrt()


def _statistics(problem, estimators, replicas, generator, device, reference=None) -> dict[str, float]:
    reference, source, reference_se = reference if reference is not None else reference_gradient(problem, generator)
    stats, seconds = gradient_statistics(problem, estimators, reference, replicas, generator, device, reference_se)
    out = {name: getattr(stats, name) for name in SCALAR_STATS}
    out["seconds_per_estimate"] = seconds
    out["reference_is_exact"] = float(source != "sampled")
    out["reference_standard_error"] = float(reference_se.norm())
    out["coordinates"] = float(reference.numel())
    return out


def _gradstats(cell: Cell, device: torch.device, references: Path | None = None) -> dict[str, Any]:
    problem, estimators = build(cell, device)
    generator = make_generator(derive_seed("gradstats", cell.problem, cell.options, cell.seed), device)
    reference = None
    if references is not None:  # computed once per configuration and seed, shared by its cells
        key = reference_key(problem, [cell.problem, cell.options, cell.seed, device.type],
                            {"samples": REFERENCE_SAMPLES, "inner": REFERENCE_INNER_SAMPLES, "replicas": REFERENCE_REPLICAS})
        reference = shared_reference(references, key, generator, lambda: reference_gradient(problem, generator), device)
    metrics = _statistics(problem, estimators, cell.settings["replicas"], generator, device, reference)
    metrics["evals_per_estimate"] = problem.evals_per_estimate(estimators)
    # SNR is infinite, and the cosine undefined, for legitimately zero variance or gradient.
    bad = [name for name in ("bias_norm", "variance_mean", "variance_total", "mse") if not math.isfinite(metrics[name])]
    if bad:  # a NaN/Inf in the estimates: recorded as such, never as a finished cell with holes
        return {"status": "diverged", "reason": f"non-finite gradient statistics ({', '.join(bad)}): "
                                                "the estimates contain NaN or Inf", "metrics": metrics}
    return {"status": "done", "metrics": metrics}


class SingleModel:
    """One training cell as a one-member model of :func:`dgbench.harness.training.train`:
    its problem (initialised from a seed that ignores the estimator), its estimators
    (learned baselines and other estimator state included: their parameters train with
    the problem's) and one optimiser over both. With the protocol's ``compile``, the
    estimate runs as a compiled graph (:mod:`dgbench.harness.compiled`; the ``compiled``
    metric says whether it did)."""

    def __init__(self, cell: Cell, device: torch.device) -> None:
        s = cell.settings
        self.device = device
        self.problem, self.estimators = build(cell, device)
        held_out.restrict(self.problem, s)
        materialize(self.problem, self.estimators,
                    make_generator(derive_seed("materialize", cell.problem, cell.options, cell.seed), device))
        self.params = list(self.problem.parameters()) + list(self.estimators.parameters())
        self.optimizer = make_optimizer(s["optimizer"], self.params, s["lr"], device, schedules.protocol(s)["momentum"])
        self.schedule = Schedules(s, self.optimizer, self.estimators)
        self.members = [Member(cell, self.problem, device)]
        self.deterministic = cell.estimator_class.evals_per_sample is None
        self.minimize = self.problem.minimize
        self.evals_per_step = self.problem.evals_per_estimate(self.estimators)
        self.loss = compiled.CompiledLoss(self.problem, self.estimators, device) if compiled.wanted(s) else None

    @property
    def extra_metrics(self) -> dict[str, float]:
        return {} if self.loss is None else {"compiled": float(self.loss.compiled)}

    @property
    def note(self) -> str | None:
        """Why a cell that asked to compile trained eagerly."""
        if self.loss is None or self.loss.compiled:
            return None
        return f"trained eagerly, not compiled: {self.loss.reason}"

    def step(self, loss_scale: float) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        member = self.members[0]
        objective, losses, check = forward_backward(self.problem, self.estimators, self.optimizer, member.noise,
                                                    member.data, loss_scale, self.loss)
        return objective.reshape(1), check.reshape(1), losses

    def member_problem(self, m: int) -> Problem:
        return self.problem

    def statistics(self, m: int, replicas: int) -> dict[str, float]:
        return _statistics(self.problem, self.estimators, replicas, self.members[0].variance, self.device)

    def mask(self, keep: Tensor) -> None:
        flag = keep.reshape(())
        zero = torch.zeros((), device=flag.device)
        for p in self.params:
            if p.grad is not None:
                p.grad.copy_(torch.where(flag, p.grad, zero.to(p.grad.dtype)))

    def snapshot(self) -> list[Tensor]:
        return [p.detach().clone() for p in self.params]

    def restore(self, m: int, snapshot: list[Tensor]) -> None:
        with torch.no_grad():
            for p, saved in zip(self.params, snapshot):
                p.copy_(saved)

    def state_dict(self) -> dict[str, Any]:
        return {"problem": self.problem.state_dict(), "estimators": self.estimators.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.problem.load_state_dict(state["problem"])
        self.estimators.load_state_dict(state["estimators"])


def _train(cell: Cell, device: torch.device, checkpoint: Checkpoint | None = None) -> dict[str, Any]:
    model = SingleModel(cell, device)
    return train(model, cell.settings, device, checkpoint, batch_loss_scale(model.problem, cell.settings),
                 stop_at=cell.stop_at)[0]


RUNNERS = {"gradstats": _gradstats, "train": _train}


def run_cell(cell: Cell, device: str = "cpu", checkpoint: Checkpoint | None = None,
             references: Path | None = None) -> dict[str, Any]:
    """Run one cell; never raises (failures are results). A training cell given a
    ``checkpoint`` resumes from it if it exists and saves to it as it goes; a
    gradient-statistics cell given ``references`` (a directory) shares its reference
    gradient there (:mod:`dgbench.harness.references`)."""
    started = time.time()
    if cell.skip_reason:
        return {"status": "skipped", "reason": cell.skip_reason, "started": started, "finished": started}
    dev = torch.device(device)
    try:
        reset_peak_memory(dev)
        extra: dict[str, Any] = {}
        if cell.kind == "train" and checkpoint:
            extra["checkpoint"] = checkpoint
        elif cell.kind == "gradstats" and references:
            extra["references"] = references
        result = RUNNERS[cell.kind](cell, dev, **extra)
        peak = peak_memory_mb(dev)
        if peak is not None:
            result["metrics"]["peak_memory_mb"] = peak
    except NotApplicable as err:
        result = {"status": "skipped", "reason": str(err)}
    except Exception as err:
        result = {"status": "failed", "reason": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    result.update(started=started, finished=time.time())
    return result
