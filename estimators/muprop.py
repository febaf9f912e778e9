"""MuProp: score function with a first-order Taylor control variate at the mean.

With ``mu = E_q[z]`` (``sigmoid(logits)`` or ``softmax(logits)``, held fixed as
``mu_bar``) and the linearisation ``h(z) = f(mu_bar) + f'(mu_bar)^T (z - mu_bar)``:

    g = 1/S sum_s (f(z_s) - h(z_s)) d log q(z_s)/d logits  +  f'(mu_bar)^T d mu / d logits

The second term is the exact gradient of ``E_q[h(z)] = f(mu_bar) + f'(mu_bar)^T (mu - mu_bar)``,
so the estimator is unbiased. ``f`` is evaluated and differentiated once at the
continuous point ``mu_bar`` (hence ``relaxed``: f must accept points in the hull),
plus once per sample.

Gu, S., Levine, S., Sutskever, I. & Mnih, A. (2016). MuProp: Unbiased
backpropagation for stochastic neural networks. ICLR.
"""

from __future__ import annotations

from dgbench.estimators.base import builtin
from dgbench.estimators.reference import expand, hard, mean_jacobian_t, probs
from dgbench.estimators.score_core import ScoreFunctionCore, Taylor


@builtin
class MuProp(ScoreFunctionCore):
    id = "muprop"
    family = "both"  # its Taylor term differentiates through the mean of a discrete node
    sequential = False  # its Taylor baseline needs E[z], which an autoregressive node lacks in closed form
    relaxed = True
    extra_evals = 1
    paper = "Gu, Levine, Sutskever & Mnih (2016), ICLR"
    group = "control variates"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1) -> None:
        super().__init__(node, samples)
        self.part = Taylor()


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    mu = probs(node, logits)
    z = hard(node, logits, u)
    taylor = f(mu) + (f.grad(mu) * (z - mu)).sum(tuple(range(1, z.dim())))
    grad = (expand(f(z) - taylor, node) * (z - mu)).mean(0) + mean_jacobian_t(node, logits, f.grad(mu))
    return grad, f(z).mean(0)
