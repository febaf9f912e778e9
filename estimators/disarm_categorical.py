"""DisARM for categorical units through the stick-breaking representation.

A categorical unit with logits theta and K classes is a deterministic function of K - 1
independent Bernoulli variables (stick breaking): ``b_j ~ Bernoulli(sigmoid(a_j))`` with

    a_j = theta_j - logsumexp(theta_{j+1..K}),      z = first j with b_j = 1 (else K),

since ``P(z = j) = sigmoid(a_j) prod_{i<j} sigmoid(-a_i) = softmax(theta)_j``. So
``E f(z) = E_b f(z(b))`` over independent Bernoullis, DisARM (one antithetic pair
``b = 1[u < sigmoid(a)]``, ``b~ = 1[1 - u < sigmoid(a)]`` per sample, over all D (K-1)
Bernoullis of the node jointly) gives an unbiased gradient w.r.t. ``a``,

    g_a = 1/2 (f(z(b)) - f(z(b~))) (-1)^{b~} 1[b != b~] sigmoid(|a|),

and the exact vector-Jacobian product of ``a(theta)`` maps it to the logits. Unbiased;
two evaluations per pair (``samples`` counts pairs). The stick is broken in the classes'
given order; another order changes the variance, not the mean.

Stick-breaking coupling of DisARM: Dong, Mnih & Tucker (2021), Coupled Gradient
Estimators for Discrete Latent Variables, NeurIPS; DisARM: Dong, Mnih & Tucker (2020),
NeurIPS.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from dgbench import noise
from dgbench.estimators.base import Estimator, Objective, builtin
from dgbench.estimators.reference import d_dtheta, expand


def stick_breaking_logits(theta: Tensor) -> Tensor:
    """``a_j = theta_j - logsumexp(theta_{j+1..K})`` for j < K: ``(..., K) -> (..., K - 1)``."""
    tail = torch.logcumsumexp(theta.flip(-1), -1).flip(-1)  # logsumexp(theta_{j..K})
    return theta[..., :-1] - tail[..., 1:]


def one_hot_from_sticks(b: Tensor) -> Tensor:
    """The one-hot class ``(..., K)`` chosen by stick-breaking decisions ``b`` ``(..., K - 1)``."""
    survive = torch.cumprod(1 - b, -1)  # no 1 among b_1..b_j
    before = torch.cat([torch.ones_like(b[..., :1]), survive[..., :-1]], -1)
    return torch.cat([b * before, survive[..., -1:]], -1)


@builtin
class DisARMCategorical(Estimator):
    id = "disarm-categorical"
    family = "categorical"
    unbiased = True
    relaxed = False
    evals_per_sample = 2
    paper = "Dong, Mnih & Tucker (2021), Coupled Gradient Estimators for Discrete Latent Variables, NeurIPS"
    group = "antithetic / coupled"

    def __init__(self, node: str = "categorical", *, samples: int = 1) -> None:
        super().__init__(node, samples)

    def noise_shape(self, logits_shape: torch.Size) -> tuple[int, ...]:
        return (self.samples, *logits_shape[:-1], logits_shape[-1] - 1)  # one uniform per stick

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        with torch.enable_grad():
            theta = logits.detach().requires_grad_(True)
            a = stick_breaking_logits(theta)
        a_value = a.detach()
        u = noise.uniform(self.noise_shape(logits.shape), generator, logits)
        p = torch.sigmoid(a_value)
        b, b_anti = (u < p).to(u.dtype), (1 - u < p).to(u.dtype)
        z = torch.stack([one_hot_from_sticks(b), one_hot_from_sticks(b_anti)])
        f1, f2 = self.evaluate(f, z, logits, leading=2)
        weight = (1 - 2 * b_anti) * (b != b_anti).to(u.dtype) * torch.sigmoid(a_value.abs())
        grad_a = (0.5 * self.node.per_sample((f1 - f2).detach()) * weight).mean(0)
        (grad,) = torch.autograd.grad(a, theta, grad_outputs=grad_a)
        return self.attach(((f1 + f2) / 2).mean(0), logits, grad)


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    k = logits.shape[-1]
    # stick-breaking logits a_j = theta_j - log sum_{i>j} exp(theta_i), and their Jacobian
    def sticks(th):
        return torch.stack([th[..., j] - torch.log(torch.exp(th[..., j + 1:]).sum(-1)) for j in range(k - 1)], -1)

    a = sticks(logits)
    p = torch.sigmoid(a)
    b, bt = (u < p).to(logits.dtype), (1 - u < p).to(logits.dtype)

    def cls(bits):  # first stick that breaks, else the last class
        out = torch.zeros(*bits.shape[:-1], k, dtype=logits.dtype)
        for index in itertools.product(*[range(n) for n in bits.shape[:-1]]):
            ones = [j for j in range(k - 1) if bits[index][j] == 1]
            out[index][ones[0] if ones else k - 1] = 1
        return out

    fb, fbt = f(cls(b)), f(cls(bt))
    weight = (-1.0) ** bt * (b != bt).to(logits.dtype) * torch.sigmoid(a.abs())
    grad_a = (0.5 * expand(fb - fbt, node) * weight).mean(0)
    grad = d_dtheta(lambda th: (sticks(th) * grad_a).sum(), logits)
    return grad, ((fb + fbt) / 2).mean(0)
