"""Antithetic REINFORCE: a worked example of a user's estimator for ``dgbench compare``.

For Bernoulli units, one uniform u per sample gives an antithetic pair b = 1[u < p] and
b' = 1[1 - u < p]; each sample's score is baselined by the other sample's value:

    g = 1/2 [ (f(b) - f(b')) (b - p) + (f(b') - f(b)) (b' - p) ] = 1/2 (f(b) - f(b')) (b - b')

Each sample alone is Bernoulli(p), but the two are dependent, so the other's value is
not a valid baseline: for one unit, E g = p (f(1) - f(0)) where the gradient is
p (1 - p) (f(1) - f(0)). The class declares ``unbiased = False``; the comparison report
shows how it ranks and how large its bias is where exact gradients exist.

Run:  dgbench compare examples/antithetic_reinforce.py --suite smoke
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench import noise
from dgbench.estimators.base import Estimator, Objective


class AntitheticReinforce(Estimator):
    id = "antithetic-reinforce"
    family = "bernoulli"
    unbiased = False
    relaxed = False
    group = "antithetic / coupled"  # for the report's colours and legend
    evals_per_sample = 2
    paper = "Worked example for dgbench compare (an antithetic pair as mutual baselines)"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1) -> None:
        super().__init__(node, samples)

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        u = noise.uniform((self.samples, *logits.shape), generator, logits)
        p = torch.sigmoid(logits.detach())
        b, b_anti = (u < p).to(u.dtype), (1 - u < p).to(u.dtype)
        f1, f2 = self.evaluate(f, torch.stack([b, b_anti]), logits, leading=2)
        diff = self.node.per_sample((f1 - f2).detach())
        grad = (0.5 * (diff * (b - p) - diff * (b_anti - p))).mean(0)
        return self.attach(((f1 + f2) / 2).mean(0), logits, grad)
