"""Gumbel-Rao Monte Carlo: straight-through Gumbel-Softmax Rao-Blackwellised over the noise.

The hard sample ``b = H(z)`` is drawn from the perturbed logits ``z``; the gradient is the
straight-through Gumbel-Softmax gradient averaged over K draws of the perturbed logits
given b (the conditional reparameterisation of REBAR):

    g = [ (1/K) sum_k d soften(logits + G_k, tau)/d logits ]^T  d f(b)/d b,   G_k ~ p(G | b)

(the Jacobian of the unconditional reparameterisation with the noise G held fixed,
evaluated at noise drawn given b).

It has the expectation of ST Gumbel-Softmax (biased; the same bias for every K) and less
variance, decreasing with K. K = ``draws`` (default 10); ``temperature`` tau (default
0.5). One evaluation of f and of its gradient at the hard sample per sample.

Paulus, Maddison & Krause (2021), Rao-Blackwellizing the Straight-Through Gumbel-Softmax
Gradient Estimator, ICLR.
"""

from __future__ import annotations

from dgbench.estimators.base import builtin
from dgbench.estimators.reference import conditional, d_dtheta, hard_of, perturbed, soft
from dgbench.estimators.relaxed_core import RaoBlackwellised, RelaxedCore


@builtin
class GumbelRao(RelaxedCore):
    id = "gumbel-rao"
    paper = "Paulus, Maddison & Krause (2021), Gumbel-Rao Monte Carlo, ICLR"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, draws: int = 10, temperature: float = 0.5) -> None:
        super().__init__(node, samples)
        self.part = RaoBlackwellised(temperature, draws)
        self.draws, self.temperature = draws, temperature


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    s = u.shape[1]
    b = hard_of(node, perturbed(node, logits, u[0]))
    v = f.grad(b)
    noise = conditional(node, logits, b, u[1:]) - logits  # held fixed
    grad = d_dtheta(lambda th: (soft(node, th + noise, est.temperature).mean(0) * v).sum(), logits) / s
    return grad, f(b).mean(0)
