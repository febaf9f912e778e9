"""ARM: Augment-REINFORCE-Merge for Bernoulli units.

With one uniform draw ``u`` per unit and ``p = sigmoid(logits)``:

    g = 1/S sum_s [f(1[u_s > 1 - p]) - f(1[u_s < p])] (u_s - 1/2)

(``1[u > sigmoid(-logits)] = 1[u > 1 - p]``). Both arguments are exact samples from q,
so f is evaluated twice per sample (one antithetic pair); unbiased.
``samples`` counts pairs.

Yin, M. & Zhou, M. (2019). ARM: Augment-REINFORCE-Merge gradient for stochastic
binary networks. ICLR.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench import noise
from dgbench.estimators.base import Estimator, Objective, builtin
from dgbench.estimators.reference import expand


@builtin
class ARM(Estimator):
    id = "arm"
    family = "bernoulli"
    unbiased = True
    relaxed = False
    evals_per_sample = 2
    paper = "Yin & Zhou (2019), ICLR"
    group = "antithetic / coupled"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1) -> None:
        super().__init__(node, samples)

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        detached = logits.detach()
        u = noise.uniform((self.samples, *logits.shape), generator, logits)
        p = torch.sigmoid(detached)
        pair = torch.stack([(u > 1 - p).to(u.dtype), (u < p).to(u.dtype)])
        f1, f2 = self.evaluate(f, pair, logits, leading=2)
        grad = (self.node.per_sample((f1 - f2).detach()) * (u - 0.5)).mean(0)
        return self.attach(((f1 + f2) / 2).mean(0), logits, grad)


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    p = torch.sigmoid(logits)
    f1, f2 = f((u > 1 - p).to(logits.dtype)), f((u < p).to(logits.dtype))
    return (expand(f1 - f2, node) * (u - 0.5)).mean(0), ((f1 + f2) / 2).mean(0)
