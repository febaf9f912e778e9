"""Straight-through (ST): hard samples forward, the mean's Jacobian backward (biased).

    z_st = z + (mu - stop_gradient(mu)),   mu = sigmoid(logits) or softmax(logits)
    g    = 1/S sum_s f'(z_s)^T d mu / d logits

The value is ``f`` at the hard sample; the gradient treats ``dz/dlogits`` as ``dmu/dlogits``.
Biased for non-linear ``f``; for linear ``f`` every single draw equals the exact
gradient, since then ``f'`` is constant and ``E f = f(mu)``.

Bengio, Y., Leonard, N. & Courville, A. (2013). Estimating or propagating
gradients through stochastic neurons for conditional computation. arXiv:1308.3432.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench.estimators.base import Estimator, Objective, builtin
from dgbench.estimators.reference import hard, mean_jacobian_t


@builtin
class StraightThrough(Estimator):
    id = "straight-through"
    family = "both"
    unbiased = False
    relaxed = True
    evals_per_sample = 1
    paper = "Bengio, Leonard & Courville (2013), arXiv:1308.3432"
    group = "relaxed / straight-through"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1) -> None:
        super().__init__(node, samples)

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        z = self.node.sample(logits.detach(), self.samples, generator)
        mu = self.node.probs(logits)
        return self.evaluate(f, z + (mu - mu.detach()), logits).mean(0)


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    z = hard(node, logits, u)
    return mean_jacobian_t(node, logits, f.grad(z)).mean(0), f(z).mean(0)
