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

import torch
from torch import Tensor

from dgbench.estimators.base import Estimator, Objective, builtin, score_function
from dgbench.estimators.reference import expand, hard, mean_jacobian_t, probs


@builtin
class MuProp(Estimator):
    id = "muprop"
    family = "both"
    unbiased = True
    relaxed = True
    evals_per_sample = 1
    extra_evals = 1
    paper = "Gu, Levine, Sutskever & Mnih (2016), ICLR"
    group = "control variates"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1) -> None:
        super().__init__(node, samples)

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        detached = logits.detach()
        mu = self.node.probs(detached).requires_grad_(True)
        with torch.enable_grad():
            f_mu = self.evaluate(f, mu, logits, leading=0)
            (df_mu,) = torch.autograd.grad(f_mu.sum(), mu, allow_unused=True)
        if df_mu is None:
            df_mu = torch.zeros_like(mu)
        mu, f_mu = mu.detach(), f_mu.detach()

        z = self.node.sample(detached, self.samples, generator)
        fz = self.evaluate(f, z, logits)
        taylor = f_mu + self.node.sum_event(df_mu * (z - mu))
        grad = score_function(self.node, logits, z, fz.detach() - taylor)
        grad = grad + self.node.mean_vjp(detached, df_mu)
        return self.attach(fz.mean(0), logits, grad)


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    mu = probs(node, logits)
    z = hard(node, logits, u)
    taylor = f(mu) + (f.grad(mu) * (z - mu)).sum(tuple(range(1, z.dim())))
    grad = (expand(f(z) - taylor, node) * (z - mu)).mean(0) + mean_jacobian_t(node, logits, f.grad(mu))
    return grad, f(z).mean(0)
