"""Seed-batched training: the seeds (and a grid's learning rates) of one training cell as
one stacked model, trained by the one loop of :mod:`dgbench.harness.training`.

The cells of a (problem configuration, estimator, hyperparameters, settings) that differ
only in their seed and their learning-rate schedule (``lr``, ``lr_decay``,
``lr_decay_every``: a grid's rates) train as one model with a leading member dimension;
each member whose schedule differs gets its own optimiser parameter group of views into
the stacked parameters. Every parameter
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
import time
import traceback
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dgbench.errors import NotApplicable
from dgbench.estimators.base import Estimator, state_names
from dgbench.harness import compiled, schedules
from dgbench.harness import deferred as held_out
from dgbench.harness.cells import _statistics, make_problem, node_estimators
from dgbench.harness.checkpoints import Checkpoint
from dgbench.harness.devices import peak_memory_mb, reset_peak_memory
from dgbench.harness.grids import MEMBER_AXES
from dgbench.harness.suites import Cell
from dgbench.harness.training import Member, Schedules, batch_loss_scale, finiteness_check, make_optimizer, train
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
    state = state_names(instance)
    if state:
        return f"{cls.id} keeps per-seed state ({', '.join(state)})"
    return None


def refusal(cell: Cell) -> str | None:
    """Why ``cell`` trains per seed rather than in a seed-batched group, or None."""
    if cell.kind != "train":
        return "gradient statistics are per seed"
    if compiled.wanted(cell.settings):
        return "its estimate is compiled ([training] compile), which seed-batched groups are not"
    problem = PROBLEMS[cell.problem]
    why = problem.seed_batching_refusal(cell.options)
    if why is None:
        why = estimator_refusal(cell.estimator_class, problem.family, cell.hyperparameters)
    return why


CPU_AUTO_REFUSAL = ("seed batching auto on the CPU: stacked seeds pay only where overhead dominates a step "
                    "(the toys, the VAEs on the digits; not enumeration)")


def group_cells(cells: list[Cell], max_members: int | None = None, cpu_auto: bool = False
                ) -> tuple[list[Cell | CellGroup], dict[str, int]]:
    """Training cells grouped over seeds where they can batch (groups of at most
    ``max_members``), the rest as they are; and the count of training cells that stay
    per seed, by reason. ``cpu_auto``: only where the problem stacks on the CPU with the
    cell's options (``stacks_on_cpu_with``) and the estimator declares ``stacks_on_cpu``."""
    groups: dict[tuple, list[Cell]] = {}
    out: list[Cell | CellGroup] = []
    per_seed: dict[str, int] = {}
    refusals: dict[tuple, str | None] = {}  # one estimator instance per configuration, not per seed
    for cell in cells:
        configuration = (cell.kind, cell.problem, repr(sorted(cell.options.items())), cell.estimator,
                         repr(sorted(cell.hyperparameters.items())), cell.variant_of)
        if not cell.skip_reason and configuration not in refusals:
            refusals[configuration] = refusal(cell)
            if cpu_auto and refusals[configuration] is None and not (
                    PROBLEMS[cell.problem].stacks_on_cpu_with(cell.options) and cell.estimator_class.stacks_on_cpu):
                refusals[configuration] = CPU_AUTO_REFUSAL
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


def group_step(shell: Problem, estimators: nn.ModuleDict, optimizer: torch.optim.Optimizer, noise: MemberGenerators,
               members: list[Problem], data: list[torch.Generator], loss_scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """One seed-batched training step up to (not including) the optimiser step: each
    member's next minibatch, the members' objectives ``(M,)`` and their sum's backward.
    Returns the objectives and per-member checks ``(M,)``, finite exactly where the
    member's objective and gradients are
    (:func:`~dgbench.harness.training.finiteness_check`). The benchmarks time this plus
    ``optimizer.step()``."""
    for member, generator in zip(members, data):
        member.next_batch(generator)
    shell.take_member_batches(members)
    optimizer.zero_grad(set_to_none=True)
    shell.zero_grad(set_to_none=True)  # per-member optimisers hold views: the stacked gradients too
    values = shell.objective(estimators, shell.logits(), noise)
    total = values.sum() if loss_scale == 1.0 else values.sum() * loss_scale
    (total if shell.minimize else -total).backward()
    objective = values.detach()
    return objective, finiteness_check(objective, [p.grad for p in shell.parameters() if p.grad is not None])


class StackedModel:
    """A seed-batched group as one model of :func:`dgbench.harness.training.train`: the
    members' problems stacked into one shell, one stateless estimator instance per node
    (the group is refused otherwise), and one optimiser. Members that differ in their
    learning-rate schedule (a grid's rates) each get a parameter group of views into the
    stacked parameters; otherwise one group serves all."""

    def __init__(self, group: CellGroup, device: torch.device) -> None:
        cells, s = group.cells, group.cells[0].settings
        self.device = device
        self.members = [Member(c, make_problem(c.problem, c.options, c.seed, device), device) for c in cells]
        for member in self.members:
            held_out.restrict(member.problem, member.cell.settings)
        self.shell = stack_problem([m.problem for m in self.members])
        self.estimators = node_estimators(self.shell, group.estimator_class, group.hyperparameters, device)
        # stateless (else the group is refused): one instance serves every member's own checks
        self.single_estimators = node_estimators(self.members[0].problem, group.estimator_class,
                                                 group.hyperparameters, device)
        (node,) = self.shell.node_names()
        self.problems = [m.problem for m in self.members]
        self.datas = [m.data for m in self.members]
        self.shell.take_member_batches(self.problems)
        self.noise = MemberGenerators([m.noise for m in self.members],
                                      member_axis(self.estimators[node], self.shell.logits().shape))
        self.params = list(self.shell.parameters())
        momentum = schedules.protocol(s)["momentum"]
        self.per_member = len({repr([c.settings.get(k) for k in MEMBER_AXES]) for c in cells}) > 1
        if self.per_member:  # one parameter group per member, of views into the stacked parameters
            self.views = [[p.detach()[m] for p in self.params] for m in range(len(cells))]
            groups = [{"params": v, "lr": c.settings["lr"]} for v, c in zip(self.views, cells)]
            self.optimizer = make_optimizer(s["optimizer"], groups, s["lr"], device, momentum)
            self.schedule = Schedules(s, self.optimizer, self.estimators, [c.settings for c in cells])
        else:
            self.optimizer = make_optimizer(s["optimizer"], self.params, s["lr"], device, momentum)
            self.schedule = Schedules(s, self.optimizer, self.estimators)
        self.deterministic = group.estimator_class.evals_per_sample is None
        self.minimize = self.shell.minimize
        self.evals_per_step = self.members[0].problem.evals_per_estimate(self.single_estimators)
        self.extra_metrics = {"seed_batch_members": float(len(cells))}
        self.note = None

    def step(self, loss_scale: float) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        objective, checks = group_step(self.shell, self.estimators, self.optimizer, self.noise, self.problems,
                                       self.datas, loss_scale)
        if self.per_member:  # the members' views see their slices of the stacked gradients
            for m, member_views in enumerate(self.views):
                for view, p in zip(member_views, self.params):
                    view.grad = None if p.grad is None else p.grad[m]
        return objective, checks, {}

    def member_problem(self, m: int) -> Problem:
        copy_member(self.shell, self.members[m].problem, m)
        return self.members[m].problem

    def statistics(self, m: int, replicas: int) -> dict[str, float]:
        problem = self.member_problem(m)
        return _statistics(problem, self.single_estimators, replicas, self.members[m].variance, self.device)

    def mask(self, keep: Tensor) -> None:
        """Zero the gradients of the members not in ``keep`` (NaN included)."""
        for p in self.params:
            g = p.grad
            if g is not None:
                g.copy_(torch.where(keep.view(-1, *[1] * (g.dim() - 1)), g,
                                    torch.zeros((), dtype=g.dtype, device=g.device)))

    def snapshot(self) -> list[Tensor]:
        return [p.detach().clone() for p in self.params]

    def restore(self, m: int, snapshot: list[Tensor]) -> None:
        with torch.no_grad():
            for p, old in zip(self.params, snapshot):
                p[m].copy_(old[m])

    def state_dict(self) -> dict[str, Any]:
        return {"shell": self.shell.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.shell.load_state_dict(state["shell"])


def train_group(group: CellGroup, device: torch.device, checkpoint: Checkpoint | None = None) -> dict[str, Any]:
    """Train the group's cells as one stacked model; ``{"members": [result, ...]}`` in the
    order of ``group.cells``, each the result its own cell's run gives."""
    model = StackedModel(group, device)
    s = group.cells[0].settings
    return {"members": train(model, s, device, checkpoint, batch_loss_scale(model.members[0].problem, s))}


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
