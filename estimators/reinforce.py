"""REINFORCE: the score-function estimator with no baseline.

    g = 1/S sum_s f(z_s) d log q(z_s) / d logits,    z_s ~ q

Williams, R. J. (1992). Simple statistical gradient-following algorithms for
connectionist reinforcement learning. Machine Learning 8, 229-256.
Noise: one uniform draw ``u`` of shape ``(S, *logits.shape)`` mapped to hard samples
(``1[u < p]`` or Gumbel-max).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench.estimators.base import Estimator, Objective, builtin, score_function
from dgbench.estimators.reference import expand, hard, probs


@builtin
class Reinforce(Estimator):
    id = "reinforce"
    family = "both"
    unbiased = True
    relaxed = False
    evals_per_sample = 1
    paper = "Williams (1992), Machine Learning 8:229-256"
    group = "score function"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1) -> None:
        super().__init__(node, samples)

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        z = self.node.sample(logits.detach(), self.samples, generator)
        fz = self.evaluate(f, z, logits)
        grad = score_function(self.node, logits, z, fz)
        return self.attach(fz.mean(0), logits, grad)


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    z = hard(node, logits, u)
    return (expand(f(z), node) * (z - probs(node, logits))).mean(0), f(z).mean(0)
