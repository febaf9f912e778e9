"""ReinMax: straight-through with second-order accuracy (Heun's method).

With the hard sample ``D ~ q``, ``pi0 = probs(logits)`` and
``pi1 = (D + probs(logits / tau)) / 2``, and ``J(pi)`` the Jacobian of the softmax
(sigmoid for Bernoulli) at probabilities pi, ``J(pi) v = pi * v - pi <pi, v>``
(``pi (1 - pi) v`` for Bernoulli):

    g = 2 J(pi1)^T df/dD - (1/2) J(pi0)^T df/dD

evaluated at the hard sample. Biased. For tau = 1 its expectation is exact for any f
that is quadratic in the one-hot sample (the trapezoid rule is exact for quadratics),
where straight-through is exact only for linear f. Default tau = 1, as the paper
recommends (tau >= 1). One evaluation of f and its gradient per sample.

Liu, Zhang, Gao, Rosenfeld & Yin (2023), Bridging Discrete and Backpropagation:
Straight-Through and Beyond, NeurIPS.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench.estimators.base import Estimator, Objective, builtin
from dgbench.estimators.reference import hard, probs


@builtin
class ReinMax(Estimator):
    id = "reinmax"
    family = "both"
    unbiased = False
    relaxed = True
    evals_per_sample = 1
    paper = "Liu et al. (2023), Bridging Discrete and Backpropagation: Straight-Through and Beyond, NeurIPS"
    group = "relaxed / straight-through"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, temperature: float = 1.0) -> None:
        super().__init__(node, samples)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def _jacobian_t(self, pi: Tensor, v: Tensor) -> Tensor:
        if self.node.event_dims == 1:
            return pi * (1 - pi) * v
        return pi * (v - (pi * v).sum(-1, keepdim=True))

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        d = self.node.sample(logits.detach(), self.samples, generator)
        with torch.enable_grad():
            z = d.clone().requires_grad_(True)
            fz = self.evaluate(f, z, logits)
            (v,) = torch.autograd.grad(fz.sum(), z, retain_graph=True)
        theta = logits.detach()
        pi0 = self.node.probs(theta)
        pi1 = (d + self.node.probs(theta / self.temperature)) / 2
        g = (2 * self._jacobian_t(pi1, v) - 0.5 * self._jacobian_t(pi0, v)).mean(0)
        return self.attach(fz.mean(0), logits, g)


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    d = hard(node, logits, u)
    v = f.grad(d)

    def jt(pi):
        return pi * (1 - pi) * v if node == "bernoulli" else pi * (v - (pi * v).sum(-1, keepdim=True))

    pi1 = (d + probs(node, logits / est.temperature)) / 2
    return (2 * jt(pi1) - 0.5 * jt(probs(node, logits))).mean(0), f(d).mean(0)
