"""The DARN estimator: a per-unit first-order Taylor learning signal around 1/2 (biased).

For Bernoulli units with ``p = sigmoid(logits)``, DARN replaces the learning signal of
unit ``i`` by the first-order Taylor term of ``f`` around ``b_i = 1/2``, with the
derivative taken at the sample (one backward pass through the sampled network):

    g_i = 1/S sum_s f'_i(b_s) (b_{s,i} - 1/2) (b_{s,i} - p_i)

and, unlike MuProp, adds no correction for the Taylor remainder, so it is **biased**
in general. Because the expansion point 1/2 is the midpoint of {0, 1}, the Taylor term
reproduces ``f(b_i = 1) - f(b_i = 0)`` exactly whenever ``f`` is at most quadratic in
each unit, so DARN is unbiased for such ``f`` (linear ones, and the quadratic
``bernoulli-toy``); its bias shows on objectives with higher-order terms.

Gregor, K., Danihelka, I., Mnih, A., Blundell, C. & Wierstra, D. (2014). Deep
AutoRegressive Networks. ICML. (As characterised in Gu et al. (2016), MuProp, ICLR.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench.estimators.base import Estimator, Objective, builtin
from dgbench.estimators.reference import hard


@builtin
class DARN(Estimator):
    id = "darn"
    family = "bernoulli"
    unbiased = False
    relaxed = True
    evals_per_sample = 1
    paper = "Gregor, Danihelka, Mnih, Blundell & Wierstra (2014), ICML"
    group = "relaxed / straight-through"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1) -> None:
        super().__init__(node, samples)

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        detached = logits.detach()
        b = self.node.sample(detached, self.samples, generator).requires_grad_(True)
        with torch.enable_grad():
            fb = self.evaluate(f, b, logits)
            (df,) = torch.autograd.grad(fb.sum(), b, retain_graph=True, allow_unused=True)
        if df is None:
            df = torch.zeros_like(b)
        b = b.detach()
        grad = (df * (b - 0.5) * (b - torch.sigmoid(detached))).mean(0)
        return self.attach(fb.mean(0), logits, grad)


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    b = hard(node, logits, u)
    return (f.grad(b) * (b - 0.5) * (b - torch.sigmoid(logits))).mean(0), f(b).mean(0)
