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

from dgbench.estimators.base import builtin
from dgbench.estimators.reference import hard, probs
from dgbench.estimators.relaxed_core import ReinMaxGradient, RelaxedCore


@builtin
class ReinMax(RelaxedCore):
    id = "reinmax"
    paper = "Liu et al. (2023), Bridging Discrete and Backpropagation: Straight-Through and Beyond, NeurIPS"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, temperature: float = 1.0) -> None:
        super().__init__(node, samples)
        self.part = ReinMaxGradient(temperature)
        self.temperature = temperature


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    d = hard(node, logits, u)
    v = f.grad(d)

    def jt(pi):
        return pi * (1 - pi) * v if node == "bernoulli" else pi * (v - (pi * v).sum(-1, keepdim=True))

    pi1 = (d + probs(node, logits / est.temperature)) / 2
    return (2 * jt(pi1) - 0.5 * jt(probs(node, logits))).mean(0), f(d).mean(0)
