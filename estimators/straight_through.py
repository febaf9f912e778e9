"""Straight-through (ST): hard samples forward, the mean's Jacobian backward (biased).

    z_st = z + (mu - stop_gradient(mu)),   mu = sigmoid(logits) or softmax(logits)
    g    = 1/S sum_s f'(z_s)^T d mu / d logits

The value is ``f`` at the hard sample; the gradient treats ``dz/dlogits`` as ``dmu/dlogits``.
With ``temperature = tau`` the backward pass uses ``mu = sigmoid(logits / tau)`` (or the
softmax): the slope-annealing form, which Jang et al. (2017, Table 1) call "Annealed ST"
when tau follows a schedule (``anneal_*`` training settings). Default tau = 1.
Biased for non-linear ``f``; for linear ``f`` every single draw equals the exact
gradient, since then ``f'`` is constant and ``E f = f(mu)``.

Bengio, Y., Leonard, N. & Courville, A. (2013). Estimating or propagating
gradients through stochastic neurons for conditional computation. arXiv:1308.3432.
"""

from __future__ import annotations

from dgbench.estimators.base import builtin
from dgbench.estimators.reference import hard, mean_jacobian_t
from dgbench.estimators.relaxed_core import RelaxedCore, ThroughMean


@builtin
class StraightThrough(RelaxedCore):
    id = "straight-through"
    paper = "Bengio, Leonard & Courville (2013), arXiv:1308.3432"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, temperature: float = 1.0) -> None:
        super().__init__(node, samples)
        self.part = ThroughMean(temperature)
        self.temperature = temperature


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    z = hard(node, logits, u)
    tau = est.temperature
    return mean_jacobian_t(node, logits / tau, f.grad(z)).mean(0) / tau, f(z).mean(0)
