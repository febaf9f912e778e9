"""Autoregressive discrete nodes: T units drawn one after another,

    q(z) = prod_t q(z_t | z_<t),    q(z_t | z_<t) = Bernoulli or Categorical(logits_t(z_<t)),

the node of sequence generation (a policy emitting tokens) and of DARN posteriors (Gregor
et al., 2014). A sample has the layout of a factorised node of T units, ``(*batch, T)``
(Bernoulli) or ``(*batch, T, V)`` (one-hot categorical), so objectives ``f`` take it as
they take any sample; what differs is that unit t's logits depend on the units before it.

A problem with such a node returns an :class:`Autoregressive` from ``logits()`` instead
of a tensor, and estimators that declare ``sequential`` take it in place of logits:

* score-function estimators draw whole sequences (:meth:`Autoregressive.sample`) and
  differentiate ``log q(z) = sum_t log q(z_t | z_<t)`` through the teacher-forced logits
  ``L(z)`` (:meth:`Autoregressive.teacher_forced`): with z fixed,
  ``d log q(z) / d theta = sum_t (z_t - p_t)^T d L_t / d theta``;
* relaxed estimators roll the sequence out with their per-step relaxation
  (:meth:`Autoregressive.rollout`): the relaxed or straight-through unit is fed to the
  next step, so the gradient flows through the recurrence (the Gumbel-softmax text-GAN
  construction, Kusner & Hernandez-Lobato, 2016);
* ``exact`` enumerates the V^T sequences.

Estimators that need factorised units (ARM/DisARM couplings, REBAR/RELAX conditional
noise, MuProp's mean) do not declare ``sequential`` and are skipped with that reason.

Noise follows :mod:`dgbench.noise`: one uniform tensor per call, ``(S, *shape)``, unit
t's noise at index t of the unit axis.

A subclass supplies :meth:`initial_state` and :meth:`step` (and may override
:meth:`teacher_forced` with a faster form); the batch dims of ``shape`` may start with
replica dims added by :meth:`replicate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from dgbench import noise
from dgbench.nodes import Node

# unit step transform: (logits of unit t (*lead, 1[, V]), its noise) -> the unit fed on
StepTransform = Callable[[Tensor, Tensor], Tensor]


class Autoregressive:
    """An autoregressive node over ``length`` units of ``node``'s family."""

    def __init__(self, node: Node, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                 replicas: int = 0) -> None:
        self.node = node
        self.shape = torch.Size(shape)  # (*batch, T) or (*batch, T, V)
        self.dtype, self.device = dtype, device
        self.replicas = replicas  # leading replica dims already in shape (0 or 1)

    # What a subclass supplies ------------------------------------------------------------

    def initial_state(self, lead: tuple[int, ...]) -> Any:
        """The recurrence's state before unit 0, for samples with leading dims ``lead``."""
        raise NotImplementedError

    def step(self, state: Any, t: int, previous: Tensor | None) -> tuple[Tensor, Any]:
        """Logits of unit ``t``, shape ``(*lead, *batch, 1[, V])``, and the next state, given
        unit ``t - 1``'s value ``previous`` (hard, relaxed or straight-through; None at t = 0)."""
        raise NotImplementedError

    def _replicated(self, n: int) -> Autoregressive:
        """This node with a leading replica dim of size ``n`` (independent draws, shared parameters)."""
        raise NotImplementedError

    def context(self) -> Tensor:
        """What the node is conditioned on, ``(*batch, C)``, detached: the input of a learned
        baseline, which must not depend on the sample. Default: unit 0's logits."""
        with torch.no_grad():
            logits = self.step(self.initial_state(()), 0, None)[0]
        return logits.flatten(len(self.batch_shape))

    # Derived -------------------------------------------------------------------------------

    @property
    def length(self) -> int:
        return int(self.shape[self.unit_axis])

    @property
    def unit_axis(self) -> int:
        return len(self.shape) - self.node.event_dims

    @property
    def batch_shape(self) -> torch.Size:
        return self.shape[: self.unit_axis]

    def dim(self) -> int:
        return len(self.shape)

    def numel(self) -> int:
        return math.prod(self.shape)

    def replicate(self, n: int) -> Autoregressive:
        """``n`` replicas side by side (gradient statistics draw them in one call)."""
        if self.replicas:
            raise ValueError("this node already has a replica dim")
        return self._replicated(n)

    def _unit(self, x: Tensor, t: int) -> Tensor:
        """Unit ``t`` of a ``(..., *shape)`` tensor, keeping the unit axis."""
        axis = x.dim() - self.node.event_dims
        return x.narrow(axis, t, 1)

    def rollout(self, transform: StepTransform, u: Tensor, samples: int) -> Tensor:
        """Draw the units in order: unit t is ``transform(logits_t, u_t)``, fed to step t + 1.

        ``u`` is ``(*extra, samples, *shape)`` (``extra``: a part's further noise sources);
        the result is ``(samples, *shape)``."""
        state, previous, units = self.initial_state((samples,)), None, []
        for t in range(self.length):
            logits_t, state = self.step(state, t, previous)
            previous = transform(logits_t, self._unit(u, t))
            units.append(previous)
        return torch.cat(units, dim=1 + self.unit_axis)

    def noise(self, samples: int, generator: torch.Generator) -> Tensor:
        return noise.uniform((samples, *self.shape), generator, torch.empty((), dtype=self.dtype, device=self.device))

    def sample(self, samples: int, generator: torch.Generator) -> Tensor:
        """``samples`` hard sequences ``(samples, *shape)``, without gradient."""
        u = self.noise(samples, generator)
        with torch.no_grad():
            return self.rollout(lambda logits_t, u_t: self.node.hard(logits_t, u_t), u, samples)

    def teacher_forced(self, z: Tensor) -> Tensor:
        """The logits of every unit given the sample's own earlier units, ``z.shape``, with
        gradient to the node's parameters (``z`` may be relaxed and may carry any leading dims)."""
        lead = tuple(z.shape[: z.dim() - len(self.shape)])
        state, previous, logits = self.initial_state(lead), None, []
        for t in range(self.length):
            logits_t, state = self.step(state, t, previous)
            logits.append(logits_t)
            previous = self._unit(z, t)
        return torch.cat(logits, dim=len(lead) + self.unit_axis)

    def log_prob(self, z: Tensor) -> Tensor:
        """``log q(z) = sum_t log q(z_t | z_<t)``, ``(*lead, *batch)``."""
        return self.node.log_prob(z, self.teacher_forced(z))

    def states(self) -> Tensor:
        """Every sequence, ``(N, *batch, T[, V])`` with N = 2^T or V^T, expanded over the batch."""
        event = self.shape[self.unit_axis:]
        states = self.node.states(event, torch.empty((), dtype=self.dtype, device=self.device))
        n = states.shape[0]
        view = (n,) + (1,) * len(self.batch_shape) + tuple(event)
        return states.reshape(view).expand(n, *self.shape)

    def num_states(self) -> int:
        return self.node.num_states(self.shape[self.unit_axis:])


def is_sequence(logits: Any) -> bool:
    return isinstance(logits, Autoregressive)
