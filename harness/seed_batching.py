"""Seed-batched training: the seeds of one training cell as one stacked model.

The cells of a (problem configuration, estimator, hyperparameters, settings) that differ
only in their seed train as one model with a leading member dimension: every parameter
of the problem is stacked over the members, its ``nn.Linear`` layers become batched
matmuls (:class:`StackedLinear`), and one optimiser step updates all members. Each member
keeps what its single-seed cell has: its initialisation (each member problem is built
from its own seed), its minibatch order (its own data generator and position), its noise
(a :class:`~dgbench.noise.MemberGenerators` draws member m's slice from m's generator
with the shape a single-seed run draws) and its evaluation and gradient-variance draws.
The member dim is one more batch dim of the logits, so estimators run unchanged; the
loss is the sum of the members' losses, whose gradient with respect to member m's
parameters is m's own gradient. A member's trajectory is therefore its single-seed
run's up to float rounding (until a discrete sample flips on a rounding difference).

A member whose objective or gradient turns non-finite ends alone, as ``diverged``, at
that step: its gradients are zeroed from then on and it is evaluated at the parameters
before the bad step, as its own cell would be; the others continue. Results are still
one cell per seed. What cannot batch runs per seed, and :func:`group_cells` says why:
problems that do not declare ``seed_batching`` (or refuse their options), estimators
with state (learned baselines, moving averages, control-variate networks: state must
never be shared between members) and plugin estimators that do not declare it.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
import traceback
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dgbench.errors import NotApplicable
from dgbench.estimators.base import Estimator
from dgbench.harness import deferred as held_out
from dgbench.harness import schedules
from dgbench.harness.cells import (
    Schedules,
    _statistics,
    batch_loss_scale,
    defer_checks,
    make_optimizer,
    make_problem,
    node_estimators,
)
from dgbench.harness.checkpoints import Checkpoint
from dgbench.harness.devices import peak_memory_mb, reset_peak_memory, stopwatch
from dgbench.harness.grids import MEMBER_AXES
from dgbench.harness.seeding import derive_seed, make_generator
from dgbench.harness.suites import Cell
from dgbench.noise import MemberGenerators
from dgbench.problems.base import Problem
from dgbench.problems.registry import PROBLEMS


class NotBatchable(ValueError):
    """A problem instance whose modules cannot be stacked over seeds."""


@dataclass(frozen=True)
class CellGroup:
    """Training cells that differ only in their seed, run as one seed-batched model.

    It stands in for a cell in the backends' queues (key, kind, problem, estimator); the
    driver records one result per member cell."""

    cells: tuple[Cell, ...]

    @property
    def key(self) -> str:
        blob = ",".join(c.key for c in self.cells)
        return "group-" + hashlib.sha256(blob.encode()).hexdigest()[:24]

    def __getattr__(self, name: str) -> Any:  # kind, problem, options, estimator, settings, ...
        if name.startswith("__") or name == "cells":
            raise AttributeError(name)
        return getattr(self.cells[0], name)

    @property
    def seed(self) -> str:
        return ",".join(str(c.seed) for c in self.cells)

    @property
    def skip_reason(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self.cells)


def estimator_refusal(cls: type[Estimator], family: str, hyperparameters: dict[str, Any]) -> str | None:
    """Why ``cls`` cannot serve stacked seeds, or None: a declaration of no, state of its
    own (parameters or buffers, which every member would share), or a plugin that does
    not declare that it draws its noise through :func:`dgbench.noise.uniform`."""
    declared = cls.seed_batching
    if declared is False:
        return f"{cls.id} declares seed_batching = False"
    if declared is None and not cls.__module__.startswith("dgbench.estimators."):
        return f"{cls.id} is a plugin that does not declare seed_batching = True"
    instance = cls(family, **hyperparameters)
    state = [name for name, _ in instance.named_parameters()] + [name for name, _ in instance.named_buffers()]
    if state:
        return f"{cls.id} keeps per-seed state ({', '.join(state)})"
    return None


def refusal(cell: Cell) -> str | None:
    """Why ``cell`` trains per seed rather than in a seed-batched group, or None."""
    if cell.kind != "train":
        return "gradient statistics are per seed"
    problem = PROBLEMS[cell.problem]
    why = problem.seed_batching_refusal(cell.options)
    if why is None:
        why = estimator_refusal(cell.estimator_class, problem.family, cell.hyperparameters)
    return why


def group_cells(cells: list[Cell], max_members: int | None = None) -> tuple[list[Cell | CellGroup], dict[str, int]]:
    """Training cells grouped over seeds where they can batch (groups of at most
    ``max_members``), the rest as they are; and the count of training cells that stay
    per seed, by reason."""
    groups: dict[tuple, list[Cell]] = {}
    out: list[Cell | CellGroup] = []
    per_seed: dict[str, int] = {}
    refusals: dict[tuple, str | None] = {}  # one estimator instance per configuration, not per seed
    for cell in cells:
        configuration = (cell.kind, cell.problem, repr(sorted(cell.options.items())), cell.estimator,
                         repr(sorted(cell.hyperparameters.items())), cell.variant_of)
        if not cell.skip_reason and configuration not in refusals:
            refusals[configuration] = refusal(cell)
        why = None if cell.skip_reason else refusals[configuration]
        if cell.skip_reason or why is not None:
            if why is not None and cell.kind == "train":
                per_seed[why] = per_seed.get(why, 0) + 1
            out.append(cell)
            continue
        # Members may differ in their seed and in the settings of their optimiser parameter
        # group (a grid's learning rates); everything else is shared by the stacked model.
        shared = {k: v for k, v in cell.settings.items() if k not in MEMBER_AXES}
        signature = (cell.problem, repr(sorted(cell.options.items())), cell.estimator,
                     repr(sorted(cell.hyperparameters.items())), repr(sorted(shared.items())), cell.variant_of)
        groups.setdefault(signature, []).append(cell)
    size = max_members or max(1, max((len(v) for v in groups.values()), default=1))
    for members in groups.values():
        members = sorted(members, key=lambda c: (c.seed, [c.settings.get(k) for k in MEMBER_AXES]))
        for start in range(0, len(members), size):
            chunk = members[start:start + size]
            out.append(chunk[0] if len(chunk) == 1 else CellGroup(tuple(chunk)))
    return out, per_seed


class _StackedAffine(torch.autograd.Function):
    """``y = x W^T + b`` per member, ``x (M, R, in)``, ``W (M, out, in)``, ``b (M, out)``,
    with the weight's gradient formed in the weight's own layout: ``gy^T x``. (Autograd's
    own backward of ``bmm(x, W^T)`` forms ``x^T gy`` and copies its transpose, which on
    a 784-200 layer cost as much as the matmul.)"""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


class StackedLinear(nn.Module):
    """``nn.Linear`` layers of M members as one module: ``weight (M, out, in)``, ``bias
    (M, out)``. An input ``(*lead, M, *rows, in)`` (``rows`` trailing batch dims) maps each
    member's rows through that member's layer in one batched matmul."""

    def __init__(self, layers: list[nn.Linear], rows: int) -> None:
        super().__init__()
        self.rows = rows
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        bias = [layer.bias for layer in layers]
        self.bias = None if bias[0] is None else nn.Parameter(torch.stack([b.detach() for b in bias]))

    def forward(self, x: Tensor) -> Tensor:
        axis = x.dim() - 2 - self.rows
        members = x.shape[axis]
        moved = x.movedim(axis, 0)
        y = _StackedAffine.apply(moved.reshape(members, -1, x.shape[-1]), self.weight, self.bias)
        return y.reshape(*moved.shape[:-1], y.shape[-1]).movedim(0, axis)


def _stack_module(module: nn.Module, copies: list[nn.Module], rows: int, top: bool) -> nn.Module:
    shell = copy.copy(module)
    shell.__dict__["_parameters"] = {}
    shell.__dict__["_buffers"] = {}
    shell.__dict__["_modules"] = {}
    params = {name: p for name, p in module._parameters.items() if p is not None}
    if params and not top:
        raise NotBatchable(f"{type(module).__name__} has parameters of its own ({', '.join(params)}); seed batching "
                           "stacks nn.Linear layers and the problem's own parameters")
    for name, p in module._parameters.items():
        if p is None:
            shell._parameters[name] = None
            continue
        stacked = torch.stack([c._parameters[name].detach() for c in copies])
        # (M, 1 per batch dim, *shape): broadcasts against (*S, M, *batch, *shape) tensors
        shell._parameters[name] = nn.Parameter(stacked.reshape(len(copies), *[1] * rows, *p.shape),
                                               requires_grad=p.requires_grad)
    for name, b in module._buffers.items():
        if b is not None and any(not torch.equal(c._buffers[name], b) for c in copies):
            raise NotBatchable(f"buffer {name!r} of {type(module).__name__} differs between seeds")
        shell._buffers[name] = b
    for name, child in module._modules.items():
        kids = [c._modules[name] for c in copies]
        if child is None:
            shell._modules[name] = None
        elif type(child) is nn.Linear:
            shell._modules[name] = StackedLinear(kids, rows)
        else:
            shell._modules[name] = _stack_module(child, kids, rows, top=False)
    return shell


def stack_problem(members: list[Problem]) -> Problem:
    """One problem whose parameters are the members' stacked along a leading dim; it
    shares the first member's data and buffers (equal in every member). Its batch is set
    by :meth:`Problem.take_member_batches`."""
    return _stack_module(members[0], members, members[0].batch_dims, top=True)


def copy_member(shell: Problem, member: Problem, m: int) -> None:
    """Member ``m``'s slice of the stacked parameters into its own problem (for evaluation)."""
    stacked = dict(shell.named_parameters())
    with torch.no_grad():
        for name, p in member.named_parameters():
            p.copy_(stacked[name][m].reshape(p.shape))


NOISE_PROBE = 1_000_003  # a dim size no estimator's own noise dims take


def member_axis(estimator: Estimator, logits_shape: torch.Size) -> int:
    """Where the estimator's noise draw puts the logits' leading (member) dim."""
    shape = estimator.noise_shape(torch.Size((NOISE_PROBE, *logits_shape[1:])))
    return list(shape).index(NOISE_PROBE)


class _Member:
    """One member's record: its cell, problem, generators, series and outcome."""

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


def group_step(shell: Problem, estimators: nn.ModuleDict, optimizer: torch.optim.Optimizer, noise: MemberGenerators,
               members: list[Problem], data: list[torch.Generator], loss_scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """One seed-batched training step up to (not including) the optimiser step: each
    member's next minibatch, the members' objectives ``(M,)`` and their sum's backward.
    Returns the objectives and per-member finiteness of objective and gradients ``(M,)``.
    The benchmarks time this plus ``optimizer.step()``."""
    for member, generator in zip(members, data):
        member.next_batch(generator)
    shell.take_member_batches(members)
    optimizer.zero_grad(set_to_none=True)
    shell.zero_grad(set_to_none=True)  # per-member optimisers hold views: the stacked gradients too
    values = shell.objective(estimators, shell.logits(), noise)
    total = values.sum() if loss_scale == 1.0 else values.sum() * loss_scale
    (total if shell.minimize else -total).backward()
    objective = values.detach()
    finite = objective.isfinite()
    grads = [p.grad for p in shell.parameters() if p.grad is not None]
    if grads:  # one sum per member and gradient: NaN and inf propagate into it
        finite = finite & torch.stack([g.flatten(1).sum(1) for g in grads]).isfinite().all(0)
    return objective, finite


def train_group(group: CellGroup, device: torch.device, checkpoint: Checkpoint | None = None) -> dict[str, Any]:
    """Train the group's cells as one seed-batched model; ``{"members": [result, ...]}``
    in the order of ``group.cells``, each the result its own cell's run gives."""
    cells, s = group.cells, group.cells[0].settings
    size = len(cells)
    members = [_Member(c, make_problem(c.problem, c.options, c.seed, device), device) for c in cells]
    for member in members:
        held_out.restrict(member.problem, member.cell.settings)
    shell = stack_problem([m.problem for m in members])
    estimators = node_estimators(shell, group.estimator_class, group.hyperparameters, device)
    # stateless (else the group is refused): one instance serves every member's own checks
    single_estimators = node_estimators(members[0].problem, group.estimator_class, group.hyperparameters, device)
    (node,) = shell.node_names()
    shell.take_member_batches([m.problem for m in members])
    noise = MemberGenerators([m.noise for m in members], member_axis(estimators[node], shell.logits().shape))
    params = list(shell.parameters())
    momentum = schedules.protocol(s)["momentum"]
    per_member = len({repr([c.settings.get(k) for k in MEMBER_AXES]) for c in cells}) > 1
    if per_member:  # one parameter group per member, of views into the stacked parameters
        views = [[p.detach()[m] for p in params] for m in range(size)]
        optimizer = make_optimizer(s["optimizer"], [{"params": v, "lr": c.settings["lr"]} for v, c in zip(views, cells)],
                                   s["lr"], device, momentum)
        schedule = Schedules(s, optimizer, estimators, [c.settings for c in cells])
    else:
        optimizer = make_optimizer(s["optimizer"], params, s["lr"], device, momentum)
        schedule = Schedules(s, optimizer, estimators)

    def share_gradients() -> None:
        """The members' views see their slices of the stacked gradients."""
        if per_member:
            for m, member_views in enumerate(views):
                for view, p in zip(member_views, params):
                    view.grad = None if p.grad is None else p.grad[m]
    loss_scale = batch_loss_scale(members[0].problem, s)
    deterministic = group.estimator_class.evals_per_sample is None
    watch, first, note = stopwatch(device), 1, None
    saved = checkpoint.load() if checkpoint else None
    if saved is not None:
        shell.load_state_dict(saved["shell"])
        optimizer.load_state_dict(saved["optimizer"])
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
    pending: list[tuple[int, Tensor, Tensor]] = []

    def seconds() -> float:  # a member's share of the group's time
        return watch.seconds / size

    def log(member: _Member, step: int, value: float) -> None:
        member.series.append((step, seconds(), "objective", value))
        if schedule.temperature is not None:
            member.series.append((step, seconds(), "temperature", schedule.temperature))

    def evaluate(m: int) -> dict[str, float]:
        copy_member(shell, members[m].problem, m)
        return members[m].problem.evaluate()

    def diverge(m: int, step: int, value: float, restore: list[Tensor] | None) -> None:
        member = members[m]
        log(member, step, value)
        member.objective, member.last_step = value, step
        member.status, member.reason = "diverged", f"non-finite objective or gradient at step {step}"
        if restore is not None:  # deferred: the steps since the last check were applied
            with torch.no_grad():
                for p, old in zip(params, restore):
                    p[m].copy_(old[m])
        member.evaluation = evaluate(m)

    problems, datas = [m.problem for m in members], [m.data for m in members]
    step = first - 1
    for step in range(first, s["steps"] + 1):
        if not bool(alive.any()):
            break
        schedule.apply(step)
        with watch.time():
            objective, finite = group_step(shell, estimators, optimizer, noise, problems, datas, loss_scale)
            share_gradients()
            grads = [p.grad for p in params if p.grad is not None]
            ok = finite & alive
            if deferred:
                pending.append((step, objective, finite))
                _mask(grads, ok)
                alive = ok
            else:
                bad = (alive & ~finite).nonzero().flatten().tolist()
                for m in bad:  # before the step: its parameters are those its own cell ends at
                    diverge(m, step, float(objective[m]), None)
                if bad or not bool(alive.all()):
                    _mask(grads, ok)
                    alive = ok
            optimizer.step()
        checkpointing = checkpoint is not None and step < s["steps"] and checkpoint.due()
        stride = (step % s["log_every"] == 0 or step % s["eval_every"] == 0 or step == s["steps"]
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
                    at, value = checked[bad[0]][0], float(checked[bad[0]][1][m])
                    diverge(m, at, value, snapshot)
            snapshot = [p.detach().clone() for p in params]
        values_now = objective.tolist()
        for m, member in enumerate(members):
            if not member.alive:
                continue
            member.last_step = step
            if step == s["steps"] or checkpointing:
                member.objective = values_now[m]
            if step % s["log_every"] == 0:
                log(member, step, values_now[m])
            if step % s["eval_every"] == 0 or step == s["steps"]:
                member.evaluation = evaluate(m)
                member.series.extend((step, seconds(), k, v) for k, v in member.evaluation.items())
            if step % s["variance_every"] == 0 and not deterministic:
                copy_member(shell, member.problem, m)
                stats = _statistics(member.problem, single_estimators, s["variance_replicas"], member.variance, device)
                member.series.extend((step, seconds(), f"grad_{k}", stats[k])
                                     for k in ("variance_mean", "bias_norm", "mse"))
        if checkpointing:
            checkpoint.save({
                "step": step, "shell": shell.state_dict(), "optimizer": optimizer.state_dict(),
                "seconds": watch.seconds,
                "members": [{"batch": m.problem.batch_state(), "record": m.record(),
                             "generators": {name: g.get_state() for name, g in m.generators().items()}}
                            for m in members],
            })
    evals = members[0].problem.evals_per_estimate(single_estimators)
    results = []
    for m, member in enumerate(members):
        steps_run = member.last_step if member.status == "diverged" else step
        metrics = {
            "steps_run": steps_run,
            "final_objective": member.objective,
            "seconds_per_step": watch.seconds / max(1, step) / size,
            "evals_per_step": evals,
            "minimize": float(shell.minimize),
            "seed_batch_members": float(size),
        }
        metrics.update({f"final_{k}": v for k, v in member.evaluation.items()})
        reason = member.reason or note
        result = {"status": member.status, "reason": reason, "metrics": metrics, "series": member.series}
        if member.cell.settings.get(held_out.DEFER):  # a diverged member's problem holds its evaluated parameters
            if member.alive:
                copy_member(shell, member.problem, m)
            result["final_state"] = held_out.final_state(member.problem)
        results.append(result)
    return {"members": results}


def _mask(grads: list[Tensor], keep: Tensor) -> None:
    """Zero the gradients of the members not in ``keep`` (NaN included)."""
    for g in grads:
        g.copy_(torch.where(keep.view(-1, *[1] * (g.dim() - 1)), g, torch.zeros((), dtype=g.dtype, device=g.device)))


def run_group(group: CellGroup, device: str = "cpu", checkpoint: Checkpoint | None = None) -> dict[str, Any]:
    """:func:`train_group`, never raising: a failure is every member's result."""
    started = time.time()
    dev = torch.device(device)
    try:
        reset_peak_memory(dev)
        result = train_group(group, dev, checkpoint)
        peak = peak_memory_mb(dev)
        members = result["members"]
        if peak is not None:
            for member in members:
                member["metrics"]["peak_memory_mb"] = peak
    except NotApplicable as err:
        members = [{"status": "skipped", "reason": str(err)} for _ in group.cells]
    except Exception as err:
        failure = {"status": "failed", "reason": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        members = [dict(failure) for _ in group.cells]
    finished = time.time()
    for member in members:
        member.update(started=started, finished=finished)
    return {"members": members, "started": started, "finished": finished}


def member_results(cell: Cell | CellGroup, result: dict[str, Any]) -> list[tuple[Cell, dict[str, Any]]]:
    """The (cell, result) pairs a result stands for: a group's one per member (a whole-group
    failure, e.g. its worker's death, is each member's)."""
    if not isinstance(cell, CellGroup):
        return [(cell, result)]
    members = result.get("members") or [dict(result) for _ in cell.cells]
    return list(zip(cell.cells, members))
