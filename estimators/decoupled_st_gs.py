"""Decoupled straight-through Gumbel-softmax: separate forward and backward temperatures (biased).

With Gumbel noise ``G`` (logistic noise ``L`` for Bernoulli units), shared by both passes:

    forward:   z = one_hot(argmax(theta / tau_f + G))       (Bernoulli: 1[theta / tau_f + L > 0])
    backward:  y = softmax(theta / tau_b + G)               (Bernoulli: sigmoid(theta / tau_b + L))
    z_st = z + (y - stop_gradient(y))

The forward temperature sets how random the forward samples are (they are exact samples
from q only at ``tau_f = 1``; otherwise from ``softmax(theta / tau_f)``, so the value
estimates that tempered objective), the backward one how the gradient spreads over the
categories. With ``tau_f = tau_b = 1`` it is straight-through Gumbel-softmax at temperature 1.
Defaults ``forward_temperature = 1.6``, ``backward_temperature = 1.3``: the configuration
the paper analyses for bias and variance on its categorical VAE (its best temperatures
differ by task).

Shah, R., Yan, M., Mozer, M. C. & Liu, D. (2024). Improving discrete optimisation via
decoupled straight-through Gumbel-softmax. arXiv:2410.13331. The temperature placement,
``softmax(theta / tau + G)`` rather than ``softmax((theta + G) / tau)``, follows the paper's
own footnote as quoted in its public reviews; the paper's Algorithm 1 itself could not be
read through our search tool.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dgbench.domains import Real
from dgbench.estimators.base import builtin
from dgbench.estimators.relaxed_core import RelaxedCore, RelaxedGradient, _positive


class Decoupled(RelaxedGradient):
    id = "decoupled"
    default_temperature = None

    def __init__(self, forward_temperature: float = 1.6, backward_temperature: float = 1.3) -> None:
        super().__init__()
        self.forward_temperature = _positive("forward_temperature", forward_temperature)
        self.backward_temperature = _positive("backward_temperature", backward_temperature)

    def relax_step(self, est, logits, u):
        node = est.node
        z = node.harden_perturbed(node.perturb(logits.detach() / self.forward_temperature, u))
        y = node.soften(node.perturb(logits / self.backward_temperature, u), 1.0)
        return z + (y - y.detach())


@builtin
class DecoupledSTGumbelSoftmax(RelaxedCore):
    id = "decoupled-st-gs"
    hyperparameter_domains = {"forward_temperature": Real(0.0, low_open=True),
                              "backward_temperature": Real(0.0, low_open=True)}
    paper = "Shah, Yan, Mozer & Liu (2024), arXiv:2410.13331"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, forward_temperature: float = 1.6,
                 backward_temperature: float = 1.3) -> None:
        super().__init__(node, samples)
        self.part = Decoupled(forward_temperature, backward_temperature)
        self.forward_temperature, self.backward_temperature = forward_temperature, backward_temperature


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    tf, tb = est.forward_temperature, est.backward_temperature
    if node == "bernoulli":
        eps = torch.log(u) - torch.log(1 - u)
        z = (logits / tf + eps > 0).to(logits.dtype)
        y = torch.sigmoid(logits / tb + eps)
        grad = f.grad(z) * y * (1 - y) / tb
    else:
        g = -torch.log(-torch.log(u))
        z = F.one_hot((logits / tf + g).argmax(-1), logits.shape[-1]).to(logits.dtype)
        y = torch.softmax(logits / tb + g, -1)
        v = f.grad(z)
        grad = y * (v - (y * v).sum(-1, keepdim=True)) / tb
    return grad.mean(0), f(z).mean(0)
