"""Gumbel-Softmax / Concrete relaxation (biased).

Categorical: ``y = softmax((logits + G) / tau)``, ``G = -log(-log u)`` Gumbel noise.
Bernoulli (binary Concrete): ``y = sigmoid((logits + L) / tau)``, ``L = log u - log(1-u)``.

    g = 1/S sum_s d f(y_s) / d logits       (reparameterised gradient of the relaxation)

The value is ``f`` at the relaxed point, an estimate of the *relaxed* objective, so f
must accept points in the hull. As ``tau -> 0`` the samples approach one-hot samples
from q (and the gradient variance grows); default ``temperature = 0.5``.

Jang, E., Gu, S. & Poole, B. (2017). Categorical reparameterization with
Gumbel-Softmax. ICLR.  Maddison, C. J., Mnih, A. & Teh, Y. W. (2017). The Concrete
distribution: a continuous relaxation of discrete random variables. ICLR.
"""

from __future__ import annotations

from dgbench.estimators.base import builtin
from dgbench.estimators.reference import relaxed_jacobian_t, relaxed_sample
from dgbench.estimators.relaxed_core import RelaxedCore, Soft


@builtin
class GumbelSoftmax(RelaxedCore):
    id = "gumbel-softmax"
    paper = "Jang, Gu & Poole (2017), ICLR; Maddison, Mnih & Teh (2017), ICLR"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, temperature: float = 0.5) -> None:
        super().__init__(node, samples)
        self.part = Soft(temperature)
        self.temperature = temperature


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    y = relaxed_sample(node, logits, u, est.temperature)
    return relaxed_jacobian_t(node, y, f.grad(y), est.temperature).mean(0), f(y).mean(0)
