"""REINFORCE: the score-function estimator with no baseline.

    g = 1/S sum_s f(z_s) d log q(z_s) / d logits,    z_s ~ q

Williams, R. J. (1992). Simple statistical gradient-following algorithms for
connectionist reinforcement learning. Machine Learning 8, 229-256.
Noise: one uniform draw ``u`` of shape ``(S, *logits.shape)`` mapped to hard samples
(``1[u < p]`` or Gumbel-max).
"""

from __future__ import annotations

from dgbench.estimators.base import builtin
from dgbench.estimators.reference import expand, hard, probs
from dgbench.estimators.score_core import NoBaseline, ScoreFunctionCore


@builtin
class Reinforce(ScoreFunctionCore):
    id = "reinforce"
    paper = "Williams (1992), Machine Learning 8:229-256"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1) -> None:
        super().__init__(node, samples)
        self.part = NoBaseline()


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    z = hard(node, logits, u)
    return (expand(f(z), node) * (z - probs(node, logits))).mean(0), f(z).mean(0)
