"""The one training loop: every training cell runs through :func:`train`.

A model here is M members trained by one optimiser: a single cell is a one-member model
(:class:`dgbench.harness.cells.SingleModel`); the seeds and learning rates of a
seed-batched group are the members of one stacked model
(:class:`dgbench.harness.seed_batching.StackedModel`). The loop does, for each member,
what a training cell records: the objective at a stride, evaluations, gradient
statistics along the trajectory, checkpoints, and divergence (a non-finite objective or
gradient ends that member alone, as ``diverged``, evaluated at the parameters before its
bad step). Anything a model kind needs of its own (how a step is computed, where a
member's parameters live) is a method of the model, so a new training feature is written
once.

On the CPU every step is checked (a host sync costs nothing there) and a non-finite step
is never applied. On a GPU the checks wait for logging strides (:func:`defer_checks`): the
steps since the last check are applied and, when one was bad, the member's parameters are
restored from the snapshot taken at that check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from dgbench.harness import deferred as held_out
from dgbench.harness import schedules
from dgbench.harness.checkpoints import Checkpoint
from dgbench.harness.devices import stopwatch
from dgbench.harness.fused_adam import FusedAdam
from dgbench.harness.seeding import derive_seed, make_generator
from dgbench.harness.suites import Cell
from dgbench.problems.base import Problem


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


def forward_backward(problem: Problem, estimators: torch.nn.ModuleDict, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator, data_generator: torch.Generator,
                     loss_scale: float = 1.0, loss_fn: Callable[[torch.Generator], Tensor] | None = None,
                     ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """A training step up to (not including) the optimiser step: next minibatch, objective
    estimate, backward, the estimators' auxiliary gradients. Returns ``(objective,
    estimator_losses, check)`` as tensors; ``check`` is finite exactly when the objective
    and every gradient are (:func:`finiteness_check`). ``loss_fn(generator)`` stands in for
    ``problem.loss(estimators, generator)`` (a compiled one: ``benchmarks/compiled_step.py``)."""
    problem.next_batch(data_generator)
    optimizer.zero_grad(set_to_none=True)
    loss = problem.loss(estimators, generator) if loss_fn is None else loss_fn(generator)
    scaled = loss if loss_scale == 1.0 else loss * loss_scale
    (scaled if problem.minimize else -scaled).backward()
    estimator_losses = _step_estimators(estimators)
    objective = loss.detach()
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return objective, estimator_losses, finiteness_check(objective if objective.dim() == 0 else objective.sum(),
                                                         grads)


def finiteness_check(objective: Tensor, grads: list[Tensor]) -> Tensor:
    """The objective plus the sum of every gradient, per member: ``objective`` is ``()`` for
    one model or ``(M,)`` for M stacked members, whose gradients lead with the member dim.
    NaN and inf propagate into the sums, so a member's check is finite exactly when its
    objective and gradients are (a total that overflows counts as divergence too). One sum
    per gradient and one comparison on the host cost a tenth of ``isfinite`` per element."""
    if not grads:
        return objective
    if objective.dim() == 0:  # one model: a plain sum (no reshape view on the training step's path)
        return torch.stack([objective, *(g.sum() for g in grads)]).sum()
    return torch.stack([objective, *(g.reshape(*objective.shape, -1).sum(-1) for g in grads)]).sum(0)


def train_step(problem: Problem, estimators: torch.nn.ModuleDict, optimizer: torch.optim.Optimizer,
               generator: torch.Generator, data_generator: torch.Generator,
               deferred: bool = False, loss_scale: float = 1.0,
               loss_fn: Callable[[torch.Generator], Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor], bool | Tensor]:
    """One whole training step of a single model: :func:`forward_backward`, then the
    optimiser step unless something is non-finite. Returns ``(objective, losses, finite)``:
    ``finite`` a bool, or with ``deferred`` a 0-dim bool tensor (the step is taken whatever
    it says, without a host sync). ``loss_scale`` multiplies the loss that is
    differentiated (the batch size: a summed rather than averaged minibatch loss). The
    speed benchmarks time exactly this."""
    objective, losses, check = forward_backward(problem, estimators, optimizer, generator, data_generator,
                                                loss_scale, loss_fn)
    finite = check.isfinite() if deferred else math.isfinite(check.item())
    if deferred or finite:
        optimizer.step()
    return objective, losses, finite


def defer_checks(device: torch.device) -> bool:
    """Whether training checks finiteness only at logging strides: on a GPU, where a host
    sync per step stalls the device. On the CPU a sync costs nothing, so every step is
    checked and a non-finite step is never applied."""
    return device.type == "cuda"


def make_optimizer(name: str, params: list[torch.nn.Parameter] | list[dict[str, Any]], lr: float,
                   device: torch.device, momentum: float = 0.0) -> torch.optim.Optimizer:
    """``adam`` (fused: one kernel per device and dtype where the device has one, the CPU
    and CUDA; the update of the default implementation up to float rounding, at 2-3x less
    time on a 784-200 model; :class:`~dgbench.harness.fused_adam.FusedAdam` calls that
    kernel without the per-step Python of ``torch.optim.Adam.step``) or ``sgd`` (with
    ``momentum``, PyTorch's heavy-ball form). ``params`` may be parameter groups
    (``{"params": [...], "lr": ...}``)."""
    if name == "adam":
        tensors = [p for g in params for p in g["params"]] if params and isinstance(params[0], dict) else params
        fused = device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in tensors)
        return FusedAdam(params, lr) if fused else torch.optim.Adam(params, lr=lr)
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


class Member:
    """One member's record: its cell, its own problem (where its evaluations run), its
    generators (noise, gradient-statistics draws, data order: seeded by its problem,
    options and seed only, never by the estimator), its series and its outcome."""

    def __init__(self, cell: Cell, problem: Problem, device: torch.device) -> None:
        self.cell, self.problem = cell, problem
        self.noise = make_generator(derive_seed("train", cell.problem, cell.options, cell.seed), device)
        self.variance = make_generator(derive_seed("train-variance", cell.problem, cell.options, cell.seed), device)
        self.data = make_generator(derive_seed("data", cell.problem, cell.options, cell.seed), torch.device("cpu"))
        self.series: list[tuple] = []
        self.objective, self.evaluation = math.nan, {}
        self.status, self.reason, self.last_step = "done", None, 0

    @property
    def alive(self) -> bool:
        return self.status == "done"

    def generators(self) -> dict[str, torch.Generator]:
        return {"noise": self.noise, "variance": self.variance, "data": self.data}

    def record(self) -> dict[str, Any]:
        return {"series": self.series, "objective": self.objective, "evaluation": self.evaluation,
                "status": self.status, "reason": self.reason, "last_step": self.last_step}

    def restore(self, saved: dict[str, Any]) -> None:
        self.series, self.objective, self.evaluation = saved["series"], saved["objective"], saved["evaluation"]
        self.status, self.reason, self.last_step = saved["status"], saved["reason"], saved["last_step"]


class Model(Protocol):
    """What :func:`train` needs of a model of M members."""

    members: list[Member]
    optimizer: torch.optim.Optimizer
    schedule: Schedules
    deterministic: bool  # the estimator is exact: no gradient statistics along training
    minimize: bool
    evals_per_step: float
    extra_metrics: dict[str, float]
    note: str | None  # said in each member's result where nothing else is (why a compiled cell trained eagerly)

    def step(self, loss_scale: float) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Forward and backward (no optimiser step): objectives ``(M,)``, checks ``(M,)``
        (finite exactly where the member's objective and gradients are:
        :func:`finiteness_check`) and the estimators' auxiliary losses."""

    def member_problem(self, m: int) -> Problem:
        """Member ``m``'s problem holding its current parameters (for evaluation)."""

    def statistics(self, m: int, replicas: int) -> dict[str, float]:
        """Gradient statistics of member ``m`` at its current parameters."""

    def mask(self, keep: Tensor) -> None:
        """Zero the gradients of the members not in ``keep`` (NaN included)."""

    def snapshot(self) -> list[Tensor]: ...

    def restore(self, m: int, snapshot: list[Tensor]) -> None:
        """Member ``m``'s parameters as in ``snapshot``."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def train(model: Model, s: dict[str, Any], device: torch.device, checkpoint: Checkpoint | None = None,
          loss_scale: float = 1.0, stop_at: int | None = None) -> list[dict[str, Any]]:
    """Train ``model`` under settings ``s``; one result per member (status, reason,
    metrics, series, and ``final_state`` where its held-out splits wait for selection),
    as its own cell records it. ``checkpoint``: resume from it if it exists, save to it
    as training goes.

    ``stop_at`` (a rung of successive halving, :mod:`dgbench.harness.halving`): stop after
    that step, with every live member evaluated there and the whole state saved to
    ``checkpoint``; such members come back ``paused``, and a later call continues from the
    checkpoint exactly as an uninterrupted run would (evaluation draws from its own
    generator, so the rung's evaluation changes nothing of the training)."""
    if stop_at is not None and (checkpoint is None or stop_at < 1):
        raise ValueError("stop_at needs a checkpoint to pause into and a step >= 1")
    end = s["steps"] if stop_at is None else min(stop_at, s["steps"])
    members = model.members
    size = len(members)
    watch, first, note = stopwatch(device), 1, None
    saved = checkpoint.load() if checkpoint else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        model.optimizer.load_state_dict(saved["optimizer"])
        for member, state in zip(members, saved["members"]):
            member.problem.load_batch_state(state["batch"])
            for name, g in member.generators().items():
                g.set_state(state["generators"][name].to(g.get_state().device))
            member.restore(state["record"])
        watch.seconds, first = saved["seconds"], saved["step"] + 1
        note = f"resumed from a checkpoint at step {saved['step']}"
    deferred = defer_checks(device)
    alive = torch.tensor([m.alive for m in members], device=device)
    snapshot: list[Tensor] | None = None  # deferred: the parameters at the last check
    pending: list[tuple[int, Tensor, Tensor, dict[str, Tensor]]] = []  # steps since the last check

    def log(member: Member, step: int, value: float, losses: dict[str, Tensor]) -> None:
        seconds = watch.seconds / size  # a member's share of the model's time
        member.series.append((step, seconds, "objective", value))
        member.series.extend((step, seconds, f"estimator_loss_{name}", float(v)) for name, v in losses.items())
        if model.schedule.temperature is not None:
            member.series.append((step, seconds, "temperature", model.schedule.temperature))

    def diverge(m: int, step: int, value: float, losses: dict[str, Tensor], restore: list[Tensor] | None) -> None:
        member = members[m]
        log(member, step, value, losses)
        member.objective, member.last_step = value, step
        member.status, member.reason = "diverged", f"non-finite objective or gradient at step {step}"
        if restore is not None:  # deferred: the steps since the last check were applied
            model.restore(m, restore)
        member.evaluation = model.member_problem(m).evaluate()

    step = first - 1
    for step in range(first, end + 1):
        model.schedule.apply(step)
        with watch.time():
            objective, checks, losses = model.step(loss_scale)
            if deferred:
                finite = checks.isfinite()
                ok = finite & alive
                pending.append((step, objective, finite, losses))
                model.mask(ok)
                alive = ok
            else:  # one host read of the checks; tensors only when a member has ended
                flags = [math.isfinite(c) for c in checks.tolist()]
                bad = [m for m, (member, flag) in enumerate(zip(members, flags)) if member.alive and not flag]
                for m in bad:  # before the step: its parameters are those its own cell ends at
                    diverge(m, step, float(objective[m]), losses, None)
                if not all(member.alive for member in members):
                    model.mask(torch.tensor([member.alive for member in members], device=device))
            if deferred or any(member.alive for member in members):
                model.optimizer.step()
        checkpointing = checkpoint is not None and step < s["steps"] and checkpoint.due()
        stride = (step % s["log_every"] == 0 or step % s["eval_every"] == 0 or step == end
                  or step % s["variance_every"] == 0 or checkpointing)
        if deferred:
            if not stride:
                continue
            checked, pending = pending, []
            flags = torch.stack([c[2] for c in checked]).cpu()  # the one host sync of a stride
            for m, member in enumerate(members):
                if not member.alive:
                    continue
                bad = (~flags[:, m]).nonzero().flatten().tolist()
                if bad:
                    at, values, _, bad_losses = checked[bad[0]]
                    diverge(m, at, float(values[m]), bad_losses, snapshot)
            snapshot = model.snapshot()
        if not any(member.alive for member in members):
            break
        if not stride:  # the last step is a stride: members' last_step is right at the end
            continue
        values_now = objective.tolist()
        for m, member in enumerate(members):
            if not member.alive:
                continue
            member.last_step = step
            if step == end or checkpointing:
                member.objective = values_now[m]
            if step % s["log_every"] == 0:
                log(member, step, values_now[m], losses)
            if step % s["eval_every"] == 0 or step == end:
                member.evaluation = model.member_problem(m).evaluate()
                member.series.extend((step, watch.seconds / size, k, v) for k, v in member.evaluation.items())
            if step % s["variance_every"] == 0 and not model.deterministic:
                stats = model.statistics(m, s["variance_replicas"])
                member.series.extend((step, watch.seconds / size, f"grad_{k}", stats[k])
                                     for k in ("variance_mean", "bias_norm", "mse"))
        if checkpointing or (step == end < s["steps"] and checkpoint is not None):
            checkpoint.save({
                "step": step, "model": model.state_dict(), "optimizer": model.optimizer.state_dict(),
                "seconds": watch.seconds,
                "members": [{"batch": m.problem.batch_state(), "record": m.record(),
                             "generators": {name: g.get_state() for name, g in m.generators().items()}}
                            for m in members],
            })
    paused = end < s["steps"] and step == end
    note = "; ".join(n for n in (note, model.note) if n) or None
    results = []
    for m, member in enumerate(members):
        metrics = {
            "steps_run": member.last_step if member.status == "diverged" else step,
            "final_objective": member.objective,
            "seconds_per_step": watch.seconds / max(1, step) / size,
            "evals_per_step": model.evals_per_step,
            "minimize": float(model.minimize),  # lets reports rank objectives without the registry
            **model.extra_metrics,
        }
        metrics.update({f"final_{k}": v for k, v in member.evaluation.items()})
        if paused and member.alive:
            result = {"status": "paused", "reason": f"paused at step {end} (successive halving)", "metrics": metrics,
                      "series": member.series}
            results.append(result)
            continue
        result = {"status": member.status, "reason": member.reason or note, "metrics": metrics,
                  "series": member.series}
        if member.cell.settings.get(held_out.DEFER):  # the held-out splits wait for selection
            # a diverged member's problem holds the parameters it was evaluated at
            problem = model.member_problem(m) if member.alive else member.problem
            result["final_state"] = held_out.final_state(problem)
        results.append(result)
    return results
