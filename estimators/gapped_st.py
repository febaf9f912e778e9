"""Gapped straight-through (GST): straight-through Gumbel-softmax with a deterministic
perturbation given the sample, so the backward pass draws no noise of its own (biased).

Forward: a hard sample ``z ~ q`` (exact). Backward: the gradient of a softmax of logits
moved by a perturbation ``m(z)`` that depends only on the sample and is held constant:

    m = (max_j theta_j - theta) * z  -  relu(theta - max_j theta_j + kappa) * (1 - z)
    y = softmax((theta + stop_gradient(m)) / tau),       z_st = z + (y - stop_gradient(y))

The first term lifts the sampled logit to the maximum, the second pushes every other logit
at least ``kappa`` (the gap) below it. So the perturbed logits keep the two properties of
straight-through Gumbel-softmax the paper identifies as essential, the argmax is the sample
and the sample leads by a margin, while the gradient given the sample is deterministic: the
conditional variance over the Gumbel noise of ST-Gumbel-softmax is gone. For Bernoulli units
(two logits ``(0, theta)``) the perturbed logit is ``max(theta, kappa)`` if ``z = 1`` and
``min(theta, -kappa)`` if ``z = 0``, and ``y = sigmoid(perturbed / tau)``. Defaults
``gap = 1.0`` (the paper's GST-1.0) and ``temperature = 1.0``.

Fan, T.-H., Chi, T.-C., Rudnicky, A. I. & Ramadge, P. J. (2022). Training discrete deep
generative models via gapped straight-through estimator. ICML. The perturbation is checked
against a public implementation citing the paper (``gapped_straight_through``, JAX); the
authors' own code was not found through our search tool.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dgbench.domains import Real
from dgbench.estimators.base import builtin
from dgbench.estimators.reference import hard
from dgbench.estimators.relaxed_core import RelaxedCore, RelaxedGradient, _positive


def gapped_logits(node_name: str, theta: Tensor, z: Tensor, gap: float) -> Tensor:
    """The perturbed logits ``theta + m(z)`` (no gradient through ``m``)."""
    if node_name == "bernoulli":
        return torch.where(z > 0.5, torch.clamp(theta, min=gap), torch.clamp(theta, max=-gap))
    top = theta.max(-1, keepdim=True).values
    return theta + (top - theta) * z - F.relu(theta - top + gap) * (1 - z)


class Gapped(RelaxedGradient):
    id = "gapped"
    default_temperature = 1.0

    def __init__(self, temperature: float = 1.0, gap: float = 1.0) -> None:
        super().__init__()
        self.temperature = _positive("temperature", temperature)
        self.gap = _positive("gap", gap)

    def relax_step(self, est, logits, u):
        z = est.node.hard(logits.detach(), u)
        shift = (gapped_logits(est.node.name, logits.detach(), z, self.gap) - logits.detach()).detach()
        y = est.node.soften(logits + shift, self.temperature)
        return z + (y - y.detach())


@builtin
class GappedST(RelaxedCore):
    id = "gst"
    hyperparameter_domains = {"gap": Real(0.0, low_open=True)}
    paper = "Fan, Chi, Rudnicky & Ramadge (2022), ICML"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, temperature: float = 1.0,
                 gap: float = 1.0) -> None:
        super().__init__(node, samples)
        self.part = Gapped(temperature, gap)
        self.temperature, self.gap = temperature, gap


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    z = hard(node, logits, u)
    tau, kappa = est.temperature, est.gap
    if node == "bernoulli":
        moved = torch.where(z == 1, torch.maximum(logits, torch.full_like(logits, kappa)),
                            torch.minimum(logits, torch.full_like(logits, -kappa)))
        y = torch.sigmoid(moved / tau)
        grad = f.grad(z) * y * (1 - y) / tau
    else:
        top = logits.max(-1, keepdim=True).values
        m1 = (top - logits) * z
        m2 = torch.clamp(logits - top + kappa, min=0) * (1 - z)
        y = torch.softmax((logits + m1 - m2) / tau, -1)
        v = f.grad(z)
        grad = y * (v - (y * v).sum(-1, keepdim=True)) / tau
    return grad.mean(0), f(z).mean(0)
