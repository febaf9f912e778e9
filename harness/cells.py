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
from dgbench.harness import deferred as held_out
from dgbench.harness import schedules
from dgbench.harness.checkpoints import Checkpoint
from dgbench.harness.devices import peak_memory_mb, reset_peak_memory, stopwatch
from dgbench.harness.enumeration import exact_objective_and_gradient
from dgbench.harness.gradstats import flatten, gradient_statistics, replicated_gradients
from dgbench.harness.references import reference_key, shared_reference
from dgbench.harness.seeding import derive_seed, make_generator
from dgbench.harness.suites import Cell
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


def materialize(problem: Problem, estimators: torch.nn.ModuleDict, generator: torch.Generator) -> None:
    """Give lazily-shaped estimator parameters (sized by the node) their shapes: one
    objective evaluation in eval mode, so that no estimator state changes."""
    if not any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in estimators.parameters()):
        return
    estimators.eval()
    with torch.no_grad():
        problem.loss(estimators, generator)
    estimators.train()


def _step_estimators(estimators: torch.nn.ModuleDict) -> dict[str, Tensor]:
    """Gradients of each estimator's auxiliary loss w.r.t. its own parameters only; the
    losses (detached tensors)."""
    losses = {}
    for name, estimator in estimators.items():
        aux = estimator.auxiliary_loss()
        if aux is None:
            continue
        params = [p for p in estimator.parameters() if p.requires_grad]
        grads = torch.autograd.grad(aux, params, allow_unused=True)
        for p, g in zip(params, grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        losses[name] = aux.detach()
    return losses


def train_step(problem: Problem, estimators: torch.nn.ModuleDict, optimizer: torch.optim.Optimizer,
               generator: torch.Generator, data_generator: torch.Generator,
               deferred: bool = False, loss_scale: float = 1.0) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """One timed training step: next minibatch, objective estimate, backward, the
    estimators' auxiliary step, and the optimiser step unless something is non-finite.

    Returns ``(objective, estimator_losses, finite)`` as tensors. ``deferred``: no host
    sync; the optimiser steps whatever ``finite`` says, and the caller checks the flags
    later (at logging strides). ``loss_scale`` multiplies the loss that is differentiated
    (the batch size: a summed rather than averaged minibatch loss). The speed benchmarks
    time exactly this.
    """
    problem.next_batch(data_generator)
    optimizer.zero_grad(set_to_none=True)
    loss = problem.loss(estimators, generator)
    scaled = loss if loss_scale == 1.0 else loss * loss_scale
    (scaled if problem.minimize else -scaled).backward()
    estimator_losses = _step_estimators(estimators)
    objective = loss.detach()
    # One sum per gradient: NaN and inf propagate into the sums (a sum that overflows
    # counts as divergence too), at a tenth of the cost of isfinite per element.
    sums = [p.grad.sum() for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    finite = objective.isfinite()
    if sums:
        finite = finite & torch.stack(sums).isfinite().all()
    if deferred or bool(finite):
        optimizer.step()
    return objective, estimator_losses, finite


def defer_checks(device: torch.device) -> bool:
    """Whether training checks finiteness only at logging strides: on a GPU, where a host
    sync per step stalls the device. On the CPU a sync costs nothing, so every step is
    checked and a non-finite step is never applied."""
    return device.type == "cuda"


def make_optimizer(name: str, params: list[torch.nn.Parameter] | list[dict[str, Any]], lr: float,
                   device: torch.device, momentum: float = 0.0) -> torch.optim.Optimizer:
    """``adam`` (fused: one kernel per device and dtype where the device has one, the CPU
    and CUDA; the update of the default implementation up to float rounding, at 2-3x less
    time on a 784-200 model) or ``sgd`` (with ``momentum``, PyTorch's heavy-ball form).
    ``params`` may be parameter groups (``{"params": [...], "lr": ...}``)."""
    if name == "adam":
        tensors = [p for g in params for p in g["params"]] if params and isinstance(params[0], dict) else params
        fused = device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in tensors)
        return torch.optim.Adam(params, lr=lr, fused=True if fused else None)
    return torch.optim.SGD(params, lr=lr, momentum=momentum)


def batch_loss_scale(problem: Problem, settings: dict[str, Any]) -> float:
    """1 for the default minibatch mean; the batch size for ``batch_loss = "sum"`` (the
    gradient of the summed loss, which plain SGD's learning rate depends on)."""
    if schedules.protocol(settings)["batch_loss"] == "mean":
        return 1.0
    batch = problem.options().get("batch_size")
    if batch is None:
        raise ValueError(f'batch_loss = "sum" needs a problem trained on minibatches; {problem.id} has no batch_size')
    return float(batch)


class Schedules:
    """Applies the protocol's learning-rate and temperature schedules
    (:mod:`dgbench.harness.schedules`) at the start of each step, touching the optimiser
    and the estimators only when a value changes. ``group_settings``: the settings of each
    of the optimiser's parameter groups (members of a stacked model may differ in their
    learning-rate schedule); by default every group follows ``settings``."""

    def __init__(self, settings: dict[str, Any], optimizer: torch.optim.Optimizer,
                 estimators: torch.nn.ModuleDict, group_settings: list[dict[str, Any]] | None = None) -> None:
        self.settings, self.optimizer, self.estimators = settings, optimizer, estimators
        self.group_settings = group_settings or [settings] * len(optimizer.param_groups)
        self.lr: list[float] | None = None
        self.temperature: float | None = None
        self.anneals = schedules.temperature(settings, 1) is not None
        # else the rates are set once
        self.decays = any(schedules.protocol(g)["lr_decay"] != 1.0 for g in self.group_settings)

    def apply(self, step: int) -> None:
        """Called before every training step: nothing to compute when no schedule is on."""
        if self.decays or self.lr is None:
            self._set_lr([schedules.learning_rate(g, step) for g in self.group_settings])
        if self.anneals:
            tau = schedules.temperature(self.settings, step)
            if tau != self.temperature:
                applied = [estimator.set_temperature(tau) for estimator in self.estimators.values()]
                self.temperature = tau if any(applied) else None
                self.anneals = any(applied)  # nothing to anneal: stop trying

    def _set_lr(self, lrs: list[float]) -> None:
        if lrs != self.lr:
            for group, lr in zip(self.optimizer.param_groups, lrs):
                group["lr"] = lr
            self.lr = lrs


def _train(cell: Cell, device: torch.device, checkpoint: Checkpoint | None = None) -> dict[str, Any]:
    s = cell.settings
    problem, estimators = build(cell, device)
    held_out.restrict(problem, s)
    materialize(problem, estimators, make_generator(derive_seed("materialize", cell.problem, cell.options, cell.seed), device))
    params = list(problem.parameters()) + list(estimators.parameters())
    optimizer = make_optimizer(s["optimizer"], params, s["lr"], device, schedules.protocol(s)["momentum"])
    schedule = Schedules(s, optimizer, estimators)
    loss_scale = batch_loss_scale(problem, s)
    generator = make_generator(derive_seed("train", cell.problem, cell.options, cell.seed), device)
    variance_generator = make_generator(derive_seed("train-variance", cell.problem, cell.options, cell.seed), device)
    # Data order depends on (problem, options, seed) only: every estimator sees the same batches.
    data_generator = make_generator(derive_seed("data", cell.problem, cell.options, cell.seed), torch.device("cpu"))
    generators = {"noise": generator, "variance": variance_generator, "data": data_generator}
    deterministic = cell.estimator_class.evals_per_sample is None
    watch, series, status, reason = stopwatch(device), [], "done", None
    objective, evaluation, first = math.nan, {}, 1
    saved = checkpoint.load() if checkpoint else None
    if saved is not None:
        problem.load_state_dict(saved["problem"])
        problem.load_batch_state(saved["batch"])
        estimators.load_state_dict(saved["estimators"])
        optimizer.load_state_dict(saved["optimizer"])
        for name, g in generators.items():
            g.set_state(saved["generators"][name].to(g.get_state().device))
        series, watch.seconds = saved["series"], saved["seconds"]
        objective, evaluation, first = saved["objective"], saved["evaluation"], saved["step"] + 1
        reason = f"resumed from a checkpoint at step {saved['step']}"
    deferred = defer_checks(device)
    pending: list[tuple[int, Tensor, dict[str, Tensor], Tensor]] = []  # steps since the last check
    snapshot: list[Tensor] | None = None  # deferred: the parameters at the last check

    def log(step: int, loss: Tensor, losses: dict[str, Tensor]) -> None:
        seconds = watch.seconds
        series.append((step, seconds, "objective", float(loss)))
        series.extend((step, seconds, f"estimator_loss_{name}", float(v)) for name, v in losses.items())
        if schedule.temperature is not None:
            series.append((step, seconds, "temperature", schedule.temperature))

    step = first - 1
    for step in range(first, s["steps"] + 1):
        schedule.apply(step)
        with watch.time():
            pending.append((step, *train_step(problem, estimators, optimizer, generator, data_generator, deferred,
                                              loss_scale)))
        checkpointing = checkpoint is not None and step < s["steps"] and checkpoint.due()
        if deferred and not (step % s["log_every"] == 0 or step % s["eval_every"] == 0 or step == s["steps"]
                             or step % s["variance_every"] == 0 or checkpointing):
            continue
        checked, pending = pending, []
        flags = checked[0][3].reshape(1) if len(checked) == 1 else torch.stack([c[3] for c in checked])
        bad = (~flags).nonzero().flatten().tolist()  # the one host sync of a stride
        if bad:
            step, loss, losses, _ = checked[bad[0]]
            log(step, loss, losses)
            objective = float(loss)
            status, reason = "diverged", f"non-finite objective or gradient at step {step}"
            if snapshot is not None:  # the steps after the last check were applied: evaluate before them
                with torch.no_grad():
                    for p, saved in zip(problem.parameters(), snapshot):
                        p.copy_(saved)
            break
        _, loss, losses, _ = checked[-1]
        objective = float(loss) if step == s["steps"] or checkpointing else objective
        if step % s["log_every"] == 0:
            log(step, loss, losses)
        if deferred:
            snapshot = [p.detach().clone() for p in problem.parameters()]
        if step % s["eval_every"] == 0 or step == s["steps"]:
            evaluation = problem.evaluate()
            series.extend((step, watch.seconds, k, v) for k, v in evaluation.items())
        if step % s["variance_every"] == 0 and not deterministic:
            stats = _statistics(problem, estimators, s["variance_replicas"], variance_generator, device)
            series.extend((step, watch.seconds, f"grad_{k}", stats[k]) for k in ("variance_mean", "bias_norm", "mse"))
        if checkpointing:
            checkpoint.save({
                "step": step, "problem": problem.state_dict(), "batch": problem.batch_state(),
                "estimators": estimators.state_dict(), "optimizer": optimizer.state_dict(),
                "generators": {name: g.get_state() for name, g in generators.items()},
                "series": series, "seconds": watch.seconds, "objective": objective, "evaluation": evaluation,
            })
    metrics = {
        "steps_run": step,
        "final_objective": objective,
        "seconds_per_step": watch.seconds / step,
        "evals_per_step": problem.evals_per_estimate(estimators),
        "minimize": float(problem.minimize),  # lets reports rank objectives without the registry
    }
    if status == "diverged":  # the last evaluation predates the divergence
        evaluation = problem.evaluate()
    metrics.update({f"final_{k}": v for k, v in evaluation.items()})
    result = {"status": status, "reason": reason, "metrics": metrics, "series": series}
    if s.get(held_out.DEFER):  # the held-out splits are evaluated later, if this point is selected
        result["final_state"] = held_out.final_state(problem)
    return result


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
