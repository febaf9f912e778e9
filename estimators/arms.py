"""ARMS: antithetic REINFORCE with K correlated samples of Bernoulli units (Dirichlet copula).

Per unit, one Dirichlet(1, ..., 1) vector ``d`` over the K samples (from K exponentials,
``d_k = e_k / sum_j e_j``) gives uniforms ``u_k = (1 - d_k)^(K-1)`` that are marginally
U(0, 1) and negatively correlated; for K = 2, ``u_2 = 1 - u_1``. With ``p = sigmoid(logit)``
the samples are ``b_k = 1[u_k < p]`` for p < 1/2 and ``b_k = 1[1 - u_k < p]`` otherwise.

The leave-one-out REINFORCE estimator on these samples is scaled back to unbiasedness by
the pairwise correlation of the samples:

    g = 1/K sum_k (f(b_k) - 1/(K-1) sum_{j != k} f(b_j)) (b_k - p) * p (1 - p) / (m - C(m, m))

with ``m = min(p, 1 - p)`` and ``C(s, t) = max(s^(1/(K-1)) + t^(1/(K-1)) - 1, 0)^(K-1)`` the
copula's bivariate CDF, so that ``m - C(m, m) = P(b_i = 1, b_j = 0) = p(1-p) - Cov(b_i, b_j)``.
Why it is unbiased: units are coupled only across samples, so for j != k and a unit i,
E[f(b_j)(b_{k,i} - p_i)] = Cov(b_{j,i}, b_{k,i}) E[f(b_j; b_{j,i}=1) - f(b_j; b_{j,i}=0)], and the
leave-one-out estimator has mean (1 - rho_i) times the gradient, rho_i the correlation that
the factor divides out. For K = 2 ARMS is DisARM exactly. ``samples`` is K (one f evaluation each, K >= 2).

Dimitriev, A. & Zhou, M. (2021). ARMS: Antithetic-REINFORCE-Multi-Sample gradient for
binary variables. ICML. The p >= 1/2 flip and the bivariate CDF follow the authors' code
(github.com/alekdimi/arms, as reused in github.com/thjashin/rodeo, ``grad_type='arms'``),
which adds 1e-6 to the denominator; here it is exact (it is positive for 0 < p < 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench import noise
from dgbench.estimators.base import Estimator, Objective, builtin


def dirichlet_copula(u: Tensor) -> Tensor:
    """K uniforms per unit (leading dim) -> K marginally uniform, antithetically coupled ones."""
    e = -torch.log(u)
    return (1 - e / e.sum(0, keepdim=True)).pow(u.shape[0] - 1)


def correlation_correction(p: Tensor, k: int) -> Tensor:
    """``p (1 - p) / P(b_i = 1, b_j = 0)`` for two of the K coupled samples."""
    m = torch.minimum(p, 1 - p)
    both = (2 * m.pow(1.0 / (k - 1)) - 1).clamp_min(0).pow(k - 1)
    apart = m - both
    safe = apart > 0
    return torch.where(safe, p * (1 - p) / torch.where(safe, apart, torch.ones_like(apart)), torch.ones_like(p))


@builtin
class ARMS(Estimator):
    id = "arms"
    family = "bernoulli"
    unbiased = True
    relaxed = False
    evals_per_sample = 1
    min_samples = 2
    paper = "Dimitriev & Zhou (2021), ARMS, ICML"
    group = "antithetic / coupled"

    def __init__(self, node: str = "bernoulli", *, samples: int | None = None) -> None:
        super().__init__(node, samples)

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        k = self.samples
        u = dirichlet_copula(noise.uniform((k, *logits.shape), generator, logits))
        p = torch.sigmoid(logits.detach())
        b = (torch.where(p < 0.5, u, 1 - u) < p).to(u.dtype)
        fb = self.evaluate(f, b, logits)
        values = fb.detach()
        loo = values - (values.sum(0, keepdim=True) - values) / (k - 1)
        grad = (self.node.per_sample(loo) * (b - p)).mean(0) * correlation_correction(p, k)
        return self.attach(fb.mean(0), logits, grad)


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    k = u.shape[0]
    e = -torch.log(u)
    d = e / e.sum(0)
    copula = (1 - d) ** (k - 1)
    p = torch.sigmoid(logits)
    b = torch.where(p < 0.5, (copula < p).to(p.dtype), (1 - copula < p).to(p.dtype))
    fb = f(b)
    # P(b_i = 1, b_j = 1) from the copula's bivariate CDF, on each side of p = 1/2.
    cdf = torch.clamp(2 * p ** (1 / (k - 1)) - 1, min=0) ** (k - 1)
    cdf_flip = torch.clamp(2 * (1 - p) ** (1 / (k - 1)) - 1, min=0) ** (k - 1)
    joint = torch.where(p < 0.5, cdf, 2 * p - 1 + cdf_flip)
    grad = torch.zeros_like(logits)
    for i in range(k):
        others = sum(fb[j] for j in range(k) if j != i) / (k - 1)
        grad = grad + (fb[i] - others) * (b[i] - p)
    return grad / k * p * (1 - p) / (p - joint), fb.mean(0)
