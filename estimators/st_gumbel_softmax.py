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

from dgbench.estimators.base import builtin
from dgbench.estimators.reference import relaxed_jacobian_t, relaxed_sample
from dgbench.estimators.relaxed_core import RelaxedCore, StraightThroughSoft


@builtin
class STGumbelSoftmax(RelaxedCore):
    id = "st-gumbel-softmax"
    paper = "Jang, Gu & Poole (2017), ICLR, Sec. 2.2"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, temperature: float = 0.5) -> None:
        super().__init__(node, samples)
        self.part = StraightThroughSoft(temperature)
        self.temperature = temperature


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    y = relaxed_sample(node, logits, u, est.temperature)
    if node == "bernoulli":
        z = (logits + torch.log(u) - torch.log(1 - u) > 0).to(logits.dtype)
    else:
        z = F.one_hot((logits - torch.log(-torch.log(u))).argmax(-1), logits.shape[-1]).to(logits.dtype)
    return relaxed_jacobian_t(node, y, f.grad(z), est.temperature).mean(0), f(z).mean(0)
