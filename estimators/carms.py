"""CARMS: antithetic multi-sample REINFORCE for categorical units (Dirichlet copula).

Per categorical unit, K samples share one draw of the Dirichlet copula of :mod:`arms`
(``u_k = (1 - d_k)^(K-1)``, marginally uniform, antithetically coupled) and one ordering
``pi`` of the categories, drawn uniformly from a fixed set of orderings. Sample k is the
category whose interval contains ``u_k`` when [0, 1] is cut into intervals of lengths
``p_pi(1), p_pi(2), ...`` in that order (inverse-CDF sampling), so each ``z_k ~ q`` exactly
while pairs of samples are negatively dependent. Their joint law is known in closed form,

    P(z_i = a, z_j = b) = mean_pi [C(R_a, R_b) + C(L_a, L_b) - C(L_a, R_b) - C(R_a, L_b)],

with ``[L_a, R_a)`` the interval of category a under ``pi`` and
``C(s, t) = max(s^(1/(K-1)) + t^(1/(K-1)) - 1, 0)^(K-1)`` the copula's bivariate CDF, and the
leave-one-out estimator is importance-weighted pair by pair back to independent pairs:

    g = 1/K sum_k (z_k - p) 1/(K-1) sum_{j != k} w(z_k, z_j) (f(z_k) - f(z_j)),
    w(a, b) = p_a p_b / P(z_i = a, z_j = b)   (per unit).

Unbiased: each pair term has the expectation it would have for independent samples, and
every pair of distinct categories has positive joint probability under some ordering (the
set holds, for each pair, an ordering that puts them at the two ends); pairs with equal
categories contribute zero in expectation. ``samples`` is K (one f evaluation each, K >= 2).
Noise: ``u`` of shape ``(K + 1, *batch, D)``: K copula uniforms, then the one that picks the
ordering of each unit.

Dimitriev, A. & Zhou, M. (2021). CARMS: Categorical-antithetic-REINFORCE multi-sample
gradient estimator. NeurIPS. Sampling, the set of orderings and the pairwise weights follow
the authors' code (github.com/alekdimi/carms, ``grad_type='carms'``: ``InverseCategorical``
with the Dirichlet copula, uniform over its orderings). The authors' code clips the
weights to [0.01, 10] after adding 1e-3 to both sides of the ratio, a numerical safeguard
that biases the estimate; here the weights are exact (0 where the joint probability is 0,
a pair that is never drawn).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from dgbench import noise
from dgbench.estimators.arms import dirichlet_copula
from dgbench.estimators.base import Estimator, Objective, builtin


@functools.cache
def orderings(categories: int) -> tuple[tuple[int, ...], ...]:
    """The authors' orderings: category ``-i mod C`` first, the others in cyclic order rotated
    by j after it, kept when the first category's index is below the last's."""
    out = []
    for i in range(categories):
        base = [(r - i) % categories for r in range(categories)]
        rest = base[1:]
        for j in range(categories - 1):
            order = [base[0]] + [rest[(s - j) % (categories - 1)] for s in range(categories - 1)]
            if order[0] < order[-1]:
                out.append(tuple(order))
    return tuple(out)


def intervals(p: Tensor, order: Tensor) -> tuple[Tensor, Tensor]:
    """Left and right ends, in category order, of the intervals laid out in ``order``
    (the last right end is exactly 1, so every uniform falls in some interval)."""
    laid = torch.gather(p, -1, order)
    right = laid.cumsum(-1)
    right = torch.cat([right[..., :-1], torch.ones_like(right[..., -1:])], -1)
    left = torch.cat([torch.zeros_like(right[..., :1]), right[..., :-1]], -1)
    inverse = torch.argsort(order, dim=-1)
    return torch.gather(left, -1, inverse), torch.gather(right, -1, inverse)


def ordering_tensor(categories: int, device: torch.device) -> Tensor:
    """:func:`orderings` as a ``(M, C)`` index tensor."""
    return torch.tensor(orderings(categories), device=device)


def pair_probabilities(p: Tensor, k: int, orders: Tensor | None = None) -> Tensor:
    """``P(z_i = a, z_j = b)`` per unit, ``(*batch, D, C, C)``, averaged over the orderings."""
    orders = ordering_tensor(p.shape[-1], p.device) if orders is None else orders  # (M, C)
    expanded = p.unsqueeze(-2).expand(*p.shape[:-1], orders.shape[0], p.shape[-1])
    left, right = intervals(expanded, orders.expand_as(expanded))                # (*batch, D, M, C)
    # C(s, t) = max(s' + t' - 1, 0)^(K-1) with s' = s^(1/(K-1)): the roots once per end.
    lo, hi = left.pow(1.0 / (k - 1)), right.pow(1.0 / (k - 1))

    def cdf(s: Tensor, t: Tensor) -> Tensor:
        return (s.unsqueeze(-1) + t.unsqueeze(-2) - 1).clamp_min(0).pow(k - 1)

    joint = cdf(hi, hi) + cdf(lo, lo) - cdf(lo, hi) - cdf(hi, lo)
    return joint.clamp_min(0).mean(-3)


@builtin
class CARMS(Estimator):
    id = "carms"
    family = "categorical"
    unbiased = True
    relaxed = False
    evals_per_sample = 1
    min_samples = 2
    paper = "Dimitriev & Zhou (2021), CARMS, NeurIPS"
    group = "antithetic / coupled"

    def __init__(self, node: str = "categorical", *, samples: int | None = None) -> None:
        super().__init__(node, samples)

    def noise_shape(self, logits_shape: torch.Size) -> tuple[int, ...]:
        return (self.samples + 1, *logits_shape[:-1])

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        k = self.samples
        u = noise.uniform(self.noise_shape(logits.shape), generator, logits)
        p = torch.softmax(logits.detach(), -1)
        orders = ordering_tensor(p.shape[-1], p.device)
        pick = (u[k] * orders.shape[0]).long().clamp_max(orders.shape[0] - 1)
        left, right = intervals(p, orders[pick])
        v = dirichlet_copula(u[:k]).unsqueeze(-1)
        z = ((left < v) & (v <= right)).to(p.dtype)                             # (K, *batch, D, C)
        fz = self.evaluate(f, z, logits)
        joint = pair_probabilities(p, k, orders)
        independent = p.unsqueeze(-1) * p.unsqueeze(-2)
        ratio = torch.where(joint > 0, independent / torch.where(joint > 0, joint, torch.ones_like(joint)), 0.0)
        # w[i, j] = ratio[z_i, z_j] per unit: (K, K, *batch, D)
        weights = torch.einsum("i...a,...ab,j...b->ij...", z, ratio, z)
        values = fz.detach()
        diff = values.unsqueeze(1) - values.unsqueeze(0)                         # f_i - f_j, (K, K, *batch)
        per_unit = (weights * diff.unsqueeze(-1)).sum(1) / (k - 1)              # diagonal: f_i - f_i = 0
        grad = (per_unit.unsqueeze(-1) * (z - p)).mean(0)
        return self.attach(fz.mean(0), logits, grad)


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    k = u.shape[0] - 1
    d, c = logits.shape
    p = torch.softmax(logits, -1)
    orders = orderings(c)
    e = -torch.log(u[:k])
    cop = (1 - e / e.sum(0)) ** (k - 1)                                        # (K, D)

    def ends(unit, order):
        lo, hi, acc = {}, {}, 0.0
        for position, cat in enumerate(order):
            lo[cat] = acc
            acc = acc + p[unit, cat]
            hi[cat] = 1.0 if position == c - 1 else acc
        return lo, hi

    def cdf(s, t):
        return max(float(s) ** (1 / (k - 1)) + float(t) ** (1 / (k - 1)) - 1, 0.0) ** (k - 1)

    z = torch.zeros((k, d, c), dtype=logits.dtype)
    ratio = torch.zeros((d, c, c), dtype=logits.dtype)
    for unit in range(d):
        order = orders[min(int(u[k, unit] * len(orders)), len(orders) - 1)]
        lo, hi = ends(unit, order)
        for s in range(k):
            for cat in range(c):
                if lo[cat] < cop[s, unit] <= hi[cat]:
                    z[s, unit, cat] = 1.0
        for a in range(c):
            for b in range(c):
                joint = 0.0
                for o in orders:
                    la, ha = ends(unit, o)
                    joint += (cdf(ha[a], ha[b]) + cdf(la[a], la[b]) - cdf(la[a], ha[b]) - cdf(ha[a], la[b]))
                joint /= len(orders)
                ratio[unit, a, b] = p[unit, a] * p[unit, b] / joint if joint > 0 else 0.0
    fz = f(z)
    grad = torch.zeros_like(logits)
    for i in range(k):
        for j in range(k):
            if i != j:
                w = torch.stack([ratio[unit, z[i, unit].argmax(), z[j, unit].argmax()] for unit in range(d)])
                grad = grad + (w * (fz[i] - fz[j])).unsqueeze(-1) * (z[i] - p)
    return grad / (k * (k - 1)), fz.mean(0)
