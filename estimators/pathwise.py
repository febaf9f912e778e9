"""The pathwise (reparameterisation) gradient of a Gaussian node: the reference point for
how far discrete estimators are from the low-variance gradient of continuous latents.

    z_s = mu + sigma * eps_s,   eps_s ~ N(0, I),
    g   = 1/S sum_s d f(mu + sigma * eps_s) / d [mu, log sigma]

Unbiased for differentiable ``f``; it differentiates f in z, so it declares ``relaxed``
and applies only where the problem's objective is differentiable. Defined for Gaussian
nodes only (a discrete sample has no path from its parameters).

Kingma, D. P. & Welling, M. (2014). Auto-Encoding Variational Bayes. ICLR.
Rezende, D. J., Mohamed, S. & Wierstra, D. (2014). Stochastic Backpropagation and
Approximate Inference in Deep Generative Models. ICML.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench import noise
from dgbench.estimators.base import Estimator, Objective, builtin


@builtin
class Pathwise(Estimator):
    id = "pathwise"
    family = "gaussian"
    unbiased = True
    relaxed = True
    evals_per_sample = 1
    paper = "Kingma & Welling (2014), ICLR; Rezende, Mohamed & Wierstra (2014), ICML"
    group = "other"

    def __init__(self, node: str = "gaussian", *, samples: int = 1) -> None:
        super().__init__(node, samples)

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        u = noise.uniform(self.noise_shape(logits.shape), generator, logits)
        z = self.node.reparameterize(logits, u)
        return self.evaluate(f, z, logits).mean(0)


# The hand-written reference for the exact single-draw test of Gaussian nodes
# (tests/test_gaussian.py): the chain rule written out, dz/dmu = 1, dz/dlog sigma = sigma eps.
def reference_draw(node, logits, u, f, est):
    d = logits.shape[-1] // 2
    mu, log_sigma = logits[..., :d], logits[..., d:]
    eps = torch.sqrt(-2 * torch.log(u[..., :d])) * torch.cos(2 * torch.pi * u[..., d:])
    z = mu + torch.exp(log_sigma) * eps
    df = f.grad(z)
    return torch.cat([df, df * torch.exp(log_sigma) * eps], -1).mean(0), f(z).mean(0)
