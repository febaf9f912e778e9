"""Gumbel-Rao Monte Carlo: straight-through Gumbel-Softmax Rao-Blackwellised over the noise.

The hard sample ``b = H(z)`` is drawn from the perturbed logits ``z``; the gradient is the
straight-through Gumbel-Softmax gradient averaged over K draws of the perturbed logits
given b (the conditional reparameterisation of REBAR):

    g = [ (1/K) sum_k d soften(logits + G_k, tau)/d logits ]^T  d f(b)/d b,   G_k ~ p(G | b)

(the Jacobian of the unconditional reparameterisation with the noise G held fixed,
evaluated at noise drawn given b).

It has the expectation of ST Gumbel-Softmax (biased; the same bias for every K) and less
variance, decreasing with K. K = ``draws`` (default 10); ``temperature`` tau (default
0.5). One evaluation of f and of its gradient at the hard sample per sample.

Paulus, Maddison & Krause (2021), Rao-Blackwellizing the Straight-Through Gumbel-Softmax
Gradient Estimator, ICLR.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench import noise
from dgbench.estimators.base import Estimator, Objective, builtin
from dgbench.estimators.reference import conditional, d_dtheta, hard_of, perturbed, soft


@builtin
class GumbelRao(Estimator):
    id = "gumbel-rao"
    family = "both"
    unbiased = False
    relaxed = True
    evals_per_sample = 1
    paper = "Paulus, Maddison & Krause (2021), Gumbel-Rao Monte Carlo, ICLR"
    group = "relaxed / straight-through"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, draws: int = 10, temperature: float = 0.5) -> None:
        super().__init__(node, samples)
        if draws < 1:
            raise ValueError(f"draws must be >= 1, got {draws}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.draws, self.temperature = draws, temperature

    def noise_shape(self, logits_shape: torch.Size) -> tuple[int, ...]:
        return (1 + self.draws, self.samples, *logits_shape)  # the sample's noise, then K conditional draws

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        u = noise.uniform(self.noise_shape(logits.shape), generator, logits)
        b = self.node.harden_perturbed(self.node.perturb(logits.detach(), u[0]))
        with torch.enable_grad():
            z_hard = b.clone().requires_grad_(True)
            fb = self.evaluate(f, z_hard, logits)
            (df_db,) = torch.autograd.grad(fb.sum(), z_hard, retain_graph=True)
            theta = logits.detach().requires_grad_(True)
            # The noise G = z~ - logits is held fixed: the Jacobian is the unconditional
            # reparameterisation's, d soften(logits + G) / d logits, evaluated at G | b.
            perturbation = self.node.conditional_perturb(logits.detach(), b, u[1:]) - logits.detach()
            soft = self.node.soften(theta + perturbation, self.temperature).mean(0)
            (g,) = torch.autograd.grad(soft, theta, grad_outputs=df_db / self.samples)
        return self.attach(fb.mean(0), logits, g)


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    s = u.shape[1]
    b = hard_of(node, perturbed(node, logits, u[0]))
    v = f.grad(b)
    noise = conditional(node, logits, b, u[1:]) - logits  # held fixed
    grad = d_dtheta(lambda th: (soft(node, th + noise, est.temperature).mean(0) * v).sum(), logits) / s
    return grad, f(b).mean(0)
