"""REINFORCE leave-one-out (RLOO): S samples, each baselined by the mean of the others.

    g = 1/S sum_s (f(z_s) - 1/(S-1) sum_{r != s} f(z_r)) d log q(z_s) / d logits
      = 1/(S-1) sum_s (f(z_s) - fbar) d log q(z_s) / d logits

Unbiased since the baseline of sample s does not depend on z_s. Needs S >= 2
(default 2).

Kool, W., van Hoof, H. & Welling, M. (2019). Buy 4 REINFORCE samples, get a
baseline for free! ICLR Workshop on Deep RL Meets Structured Prediction.
"""

from __future__ import annotations

from dgbench.estimators.base import builtin
from dgbench.estimators.reference import hard, probs
from dgbench.estimators.score_core import LeaveOneOut, ScoreFunctionCore


@builtin
class RLOO(ScoreFunctionCore):
    id = "rloo"
    min_samples = 2
    paper = "Kool, van Hoof & Welling (2019), ICLR DeepRLStructPred workshop"
    group = "multi-sample"

    def __init__(self, node: str = "bernoulli", *, samples: int = 2) -> None:
        super().__init__(node, samples)
        self.part = LeaveOneOut()


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    z = hard(node, logits, u)
    fz, s = f(z), z.shape[0]
    grad = sum((fz[j] - (fz.sum() - fz[j]) / (s - 1)) * (z[j] - probs(node, logits)) for j in range(s))
    return grad / s, fz.mean(0)
