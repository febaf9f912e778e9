"""Double control variates: leave-one-out REINFORCE plus a learned global linear control variate.

With K samples ``z_k ~ q``, ``G_k = df/dz (z_k)`` the gradient of f at each hard sample,
``G_{-k} = 1/(K-1) sum_{j != k} G_j``, the global control variate of sample k is linear in
its score, ``h_k = alpha G_{-k}^T (z_k - p)``, and the local one is leave-one-out:

    g = 1/K sum_k [f(z_k) + h_k - 1/(K-1) sum_{j != k} (f(z_j) + h_j)] (z_k - p)
        - alpha Cov_q(z) G_bar,          G_bar = 1/K sum_k G_k

The last term is the exact mean of the ``h_k`` terms: E[(z - p)(z - p)^T] = Cov_q(z), which
is ``diag(p(1-p))`` for Bernoulli units and ``diag(p) - p p^T`` per categorical unit, the
Jacobian ``d p / d logits`` (:meth:`Node.mean_vjp`); the ``h_j`` subtracted from sample k
have mean zero because ``z_j`` is independent of ``z_k``. So the estimator is unbiased for
every alpha. The scalar alpha is learned by minimising the estimate's second moment (the
auxiliary loss), starting at 0, where the estimator is RLOO. f must be differentiable in z
at the hard samples (one backward pass, no extra evaluation).

Titsias, M. K. & Shi, J. (2022). Double control variates for gradient estimation in
discrete latent variable models. AISTATS. The formula and the learning of alpha by the
estimate's squared norm follow the authors' code (github.com/thjashin/rodeo,
``grad_type='double_cv'``), written for Bernoulli units; the categorical form, with the
categorical covariance, is this module's extension of the same derivation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench.estimators.base import Estimator, Objective, builtin
from dgbench.estimators.rebar import second_moment
from dgbench.estimators.reference import hard, mean_jacobian_t, probs


def gradients_at_samples(est: Estimator, f: Objective, z: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
    """``f(z_k)`` and ``df/dz (z_k)`` for hard samples ``z`` of shape ``(K, *logits.shape)``."""
    with torch.enable_grad():
        points = z.detach().clone().requires_grad_(True)
        fz = est.evaluate(f, points, logits)
        (grad,) = torch.autograd.grad(fz.sum(), points, retain_graph=fz.requires_grad)
    return fz, grad.detach()


def leave_one_out_mean(x: Tensor) -> Tensor:
    """``1/(K-1) sum_{j != k} x_j`` along the leading dim."""
    return (x.sum(0, keepdim=True) - x) / (x.shape[0] - 1)


@builtin
class DoubleCV(Estimator):
    id = "double-cv"
    family = "both"
    unbiased = True
    relaxed = True
    evals_per_sample = 1
    min_samples = 2
    paper = "Titsias & Shi (2022), AISTATS"
    group = "control variates"

    def __init__(self, node: str = "bernoulli", *, samples: int | None = None, learn: bool = True) -> None:
        super().__init__(node, samples)
        self.learn = learn
        self.alpha = torch.nn.Parameter(torch.zeros((), dtype=torch.float64), requires_grad=learn)

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        node = self.node
        z = node.sample(logits.detach(), self.samples, generator)
        fz, grad_f = gradients_at_samples(self, f, z, logits)
        record = self.training and self.learn
        score = node.score(z, logits.detach())
        others = leave_one_out_mean(grad_f)
        alpha = self.alpha.to(logits.dtype)
        if not record:
            alpha = alpha.detach()
        h = alpha * node.sum_event(others * score)
        signal = fz.detach() + h - leave_one_out_mean(fz.detach() + h)
        g = (node.per_sample(signal) * score).mean(0) - alpha * node.mean_vjp(logits.detach(), grad_f.mean(0))
        if record:
            self.add_auxiliary_loss(second_moment(node, g))
        return self.attach(fz.mean(0), logits, g.detach())


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    z = hard(node, logits, u)
    k, p, alpha = z.shape[0], probs(node, logits), float(est.alpha.detach())
    grads = [f.grad(z[i]) for i in range(k)]
    fz = f(z)

    def cv(i):  # alpha <mean of the other samples' gradients, score of sample i>
        others = sum(grads[j] for j in range(k) if j != i) / (k - 1)
        return alpha * (others * (z[i] - p)).sum()

    total = torch.zeros_like(logits)
    for i in range(k):
        rest = sum(fz[j] + cv(j) for j in range(k) if j != i) / (k - 1)
        total = total + (fz[i] + cv(i) - rest) * (z[i] - p)
    return total / k - alpha * mean_jacobian_t(node, logits, sum(grads) / k), fz.mean(0)
