"""REINFORCE with the variance-optimal constant baseline per coordinate.

For logit coordinate j with score ``s_j = d log q(z) / d logit_j`` (so ``E s_j = 0``),
the constant ``c_j`` minimising ``Var[(f - c_j) s_j]`` is

    c_j = Cov[f s_j, s_j] / Var[s_j] = E[f s_j^2] / E[s_j^2].

It is estimated from the current S >= 2 samples **leaving the sample out**:

    c_j^(-s) = sum_{r != s} f(z_r) s_j(z_r)^2 / sum_{r != s} s_j(z_r)^2,
    g_j = 1/S sum_s (f(z_s) - c_j^(-s)) s_j(z_s).

Because ``c_j^(-s)`` is a function of the other samples only, it is independent of
``z_s`` and ``E[c_j^(-s) s_j(z_s)] = E[c_j^(-s)] E[s_j(z_s)] = 0``: the estimator is
unbiased, unlike plugging in the estimate from all S samples. Where the other samples
carry no information (denominator 0) the baseline is 0. With S = 2 the leave-one-out
baseline is just the other sample's f, i.e. RLOO; the default ``samples = 4`` is the
smallest S at which the estimated baseline differs from RLOO's.

Weaver, L. & Tao, N. (2001). The optimal reward baseline for gradient-based
reinforcement learning. UAI. (Per-coordinate form as in Greensmith, Bartlett &
Baxter (2004), JMLR 5.)
"""

from __future__ import annotations

import torch

from dgbench.estimators.base import builtin
from dgbench.estimators.reference import hard, probs
from dgbench.estimators.score_core import OptimalConstant, ScoreFunctionCore


@builtin
class ReinforceOptimal(ScoreFunctionCore):
    id = "reinforce-optimal"
    min_samples = 2
    paper = "Weaver & Tao (2001), UAI; Greensmith, Bartlett & Baxter (2004), JMLR 5"

    def __init__(self, node: str = "bernoulli", *, samples: int = 4) -> None:
        super().__init__(node, samples)
        self.part = OptimalConstant()


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    z = hard(node, logits, u)
    fz, score = f(z), z - probs(node, logits)
    s = z.shape[0]
    grad = torch.zeros_like(logits)
    for j in range(s):
        others = [r for r in range(s) if r != j]
        num = sum(fz[r] * score[r] ** 2 for r in others)
        den = sum(score[r] ** 2 for r in others)
        grad += (fz[j] - num / den) * score[j]
    return grad / s, fz.mean(0)
