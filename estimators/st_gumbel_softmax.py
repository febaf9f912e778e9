"""Straight-through Gumbel-Softmax (biased).

Forward: the hard sample ``z = H(logits + noise)`` (Gumbel-max, or ``1[logits + L > 0]``
for Bernoulli), which is an exact sample from q. Backward: the gradient of the
Gumbel-Softmax relaxation ``y`` with the same noise,

    z_st = z + (y - stop_gradient(y)),   g = 1/S sum_s f'(z_s)^T d y_s / d logits.

The value is ``f`` at the hard sample. Default ``temperature = 0.5``.

Jang, E., Gu, S. & Poole, B. (2017). Categorical reparameterization with
Gumbel-Softmax. ICLR (Section 2.2, "Straight-Through Gumbel-Softmax").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dgbench import noise
from dgbench.estimators.base import Estimator, Objective, builtin
from dgbench.estimators.reference import relaxed_jacobian_t, relaxed_sample


@builtin
class STGumbelSoftmax(Estimator):
    id = "st-gumbel-softmax"
    family = "both"
    unbiased = False
    relaxed = True
    evals_per_sample = 1
    paper = "Jang, Gu & Poole (2017), ICLR, Sec. 2.2"
    group = "relaxed / straight-through"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, temperature: float = 0.5) -> None:
        super().__init__(node, samples)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        u = noise.uniform((self.samples, *logits.shape), generator, logits)
        y = self.node.relaxed(logits, u, self.temperature)
        z = self.node.harden(y)
        return self.evaluate(f, z + (y - y.detach()), logits).mean(0)


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    y = relaxed_sample(node, logits, u, est.temperature)
    if node == "bernoulli":
        z = (logits + torch.log(u) - torch.log(1 - u) > 0).to(logits.dtype)
    else:
        z = F.one_hot((logits - torch.log(-torch.log(u))).argmax(-1), logits.shape[-1]).to(logits.dtype)
    return relaxed_jacobian_t(node, y, f.grad(z), est.temperature).mean(0), f(z).mean(0)
