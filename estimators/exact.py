"""Exact expectation by enumerating every state of the node (the reference).

    E_q[f(z)] = sum_z q(z) f(z),    d/dlogits E_q[f] = sum_z f(z) d q(z)/dlogits

computed by autograd through ``q(z) = exp(log q(z))``. Bernoulli nodes have ``2^D``
states, categorical nodes ``K^D``; above ``max_states`` (default ``2**16 = 65536``)
the estimator refuses with :class:`NotApplicable` rather than exhaust memory, and likewise
when states times batch elements (which nesting multiplies) exceed ``max_evaluations``
(default ``2**22``). ``f`` is called
once on all states, shape ``(N, *batch, D[, K])``. On an autoregressive node it sums over
every sequence with ``q`` from the teacher-forced logits. On a Gaussian node it is the
product Gauss-Hermite rule with 32 points per unit, ``E f = sum_i w_i f(mu + sigma eps_i)``
and ``grad E f = sum_i w_i f(z_i) d log q(z_i) / d [mu, log sigma]`` (the score form, so f
is never differentiated in z): exact for polynomial f of degree below 62 in each unit and
accurate to rounding for the smooth objectives here.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor

from dgbench.domains import Integer
from dgbench.errors import NotApplicable
from dgbench.estimators.base import Estimator, Objective, builtin
from dgbench.estimators.reference import probs
from dgbench.nodes import log2_states
from dgbench.sequences import Autoregressive, is_sequence

DEFAULT_MAX_STATES = 2**16
DEFAULT_MAX_EVALUATIONS = 2**22


@builtin
class Exact(Estimator):
    id = "exact"
    hyperparameter_domains = {"max_states": Integer(1), "max_evaluations": Integer(1)}
    family = "any"
    unbiased = True
    relaxed = False
    evals_per_sample = None
    multi_sample = False
    paper = "Enumeration over all states (reference, not an estimator)"
    group = "reference"
    sequential = True
    # Enumeration is arithmetic: 8 stacked seeds cost 1.6-1.7x a seed's step each on the
    # digits VAEs (benchmarks.seed_batched_step, 2026-12-07).
    stacks_on_cpu = False

    def __init__(
        self, node: str = "bernoulli", *, max_states: int = DEFAULT_MAX_STATES,
        max_evaluations: int = DEFAULT_MAX_EVALUATIONS,
    ) -> None:
        super().__init__(node)
        self.max_states = max_states
        self.max_evaluations = max_evaluations

    def evals_per_estimate(self, event_shape: torch.Size) -> int:
        return self.node.num_states(event_shape)

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator | None = None) -> Tensor:
        if is_sequence(logits):
            return self._sequence(logits, f)
        if self.node.name == "gaussian":
            return self._quadrature(logits, f)
        self.node.check_logits(logits)
        event_shape = logits.shape[logits.dim() - self.node.event_dims :]
        self._check_size(event_shape, logits.shape[: logits.dim() - self.node.event_dims])
        states = self.node.states(event_shape, logits)
        n = states.shape[0]
        batch = logits.shape[: logits.dim() - self.node.event_dims]
        view = (n,) + (1,) * len(batch) + tuple(event_shape)
        z = states.reshape(view).expand(n, *logits.shape)
        weights = self.node.log_prob(z, logits).exp()
        return (weights * self.evaluate(f, z, logits)).sum(0)

    def _sequence(self, sequence: Autoregressive, f: Objective) -> Tensor:
        """``sum_z q(z) f(z)`` over every sequence, ``q(z)`` from the teacher-forced logits."""
        self._check_size(sequence.shape[sequence.unit_axis:], sequence.batch_shape)
        z = sequence.states()
        teacher_forced = sequence.teacher_forced(z)
        weights = self.node.log_prob(z, teacher_forced).exp()
        return (weights * self.evaluate(f, z, teacher_forced[0])).sum(0)

    def _quadrature(self, logits: Tensor, f: Objective) -> Tensor:
        self.node.check_logits(logits)
        event_shape = logits.shape[-1:]
        self._check_size(event_shape, logits.shape[:-1])
        eps, log_w = self.node.states(event_shape, logits)
        batch = logits.shape[:-1]
        eps = eps.reshape(eps.shape[0], *(1,) * len(batch), eps.shape[-1])
        mu, log_sigma = self.node.split(logits.detach())
        z = mu + torch.exp(log_sigma) * eps
        weights = log_w.reshape(-1, *(1,) * len(batch)).exp()
        fz = self.evaluate(f, z, logits)
        # The gradient in its score form, sum_i w_i f(z_i) d log q(z_i): f is never differentiated in z.
        grad = (self.node.per_sample(weights * fz.detach()) * self.node.score(z, logits.detach())).sum(0)
        return self.attach((weights * fz).sum(0), logits, grad)

    def _check_size(self, event_shape: torch.Size, batch: torch.Size) -> None:
        n = self.node.num_states(event_shape)
        if n > self.max_states:
            count = str(n) if n < 10**12 else f"2^{log2_states(self.node, event_shape):.4g}"
            raise NotApplicable(
                f"exact: a {self.node.name} node of event shape {tuple(event_shape)} has {count} states, "
                f"above max_states={self.max_states}; use a sampling estimator or raise max_states"
            )
        if n * batch.numel() > self.max_evaluations:
            raise NotApplicable(
                f"exact: {n} states x {batch.numel()} batch elements = {n * batch.numel()} evaluations of f "
                f"in one call, above max_evaluations={self.max_evaluations} (nested layers multiply)"
            )


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    shape = logits.shape
    p = probs(node, logits)
    grad, value = torch.zeros_like(logits), torch.zeros((), dtype=logits.dtype)
    if node == "bernoulli":
        configurations = [torch.tensor(bits, dtype=logits.dtype) for bits in itertools.product([0, 1], repeat=shape[0])]
    else:
        configurations = [F.one_hot(torch.tensor(ks), shape[1]).to(logits.dtype) for ks in itertools.product(range(shape[1]), repeat=shape[0])]
    for z in configurations:
        q = torch.exp((z * torch.log(p)).sum()) if node == "categorical" else torch.prod(p**z * (1 - p) ** (1 - z))
        value += q * f(z)
        grad += q * f(z) * (z - p)
    return grad, value
