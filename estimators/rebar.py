"""REBAR: REINFORCE with a reparameterised, conditionally-marginalised relaxation as control variate.

With perturbed logits ``z = logits + noise`` (logistic for Bernoulli, Gumbel for
categorical), ``b = H(z)`` the hard sample, ``z~ ~ p(z | b)`` drawn by the conditional
reparameterisation, and ``s_lambda`` the relaxation at temperature lambda:

    g = [f(b) - eta f(s_lambda(z~))] d log q(b)/d logits
        + eta d f(s_lambda(z))/d logits - eta d f(s_lambda(z~))/d logits

Unbiased for every eta and lambda, because the last two terms have equal expectations up
to the score term they cancel. eta (a scalar) and the temperature (through its log) are
learned: in training mode the estimator records ``sum g^2`` (the estimate's second
moment per batch element, averaged) as its auxiliary loss, whose gradient w.r.t. eta and
lambda is the gradient of its variance. f is evaluated at hard samples and at two relaxed
points (3 evaluations per sample) and must be differentiable in z.

Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein (2017), REBAR: Low-variance, unbiased
gradient estimates for discrete latent variable models, NeurIPS.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dgbench import noise
from dgbench.domains import Real
from dgbench.estimators.base import Estimator, Objective, builtin
from dgbench.estimators.reference import conditional, d_dtheta, expand, hard_of, perturbed, probs, soft


def second_moment(node, g: Tensor) -> Tensor:
    """Mean over batch elements of the squared norm of per-element gradients."""
    return node.sum_event(g**2).mean()


@builtin
class REBAR(Estimator):
    id = "rebar"
    hyperparameter_domains = {"eta": Real()}
    family = "both"
    unbiased = True
    relaxed = True
    evals_per_sample = 3
    paper = "Tucker et al. (2017), REBAR, NeurIPS"
    group = "control variates"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, eta: float = 1.0, temperature: float = 0.5,
                 learn: bool = True) -> None:
        super().__init__(node, samples)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.learn = learn
        self.eta_parameter = torch.nn.Parameter(torch.tensor(float(eta), dtype=torch.float64), requires_grad=learn)
        self.log_temperature = torch.nn.Parameter(torch.tensor(math.log(temperature), dtype=torch.float64),
                                                  requires_grad=learn)

    @property
    def eta(self) -> float:
        return float(self.eta_parameter.detach())

    @property
    def temperature(self) -> float:
        return float(self.log_temperature.detach().exp())

    def noise_shape(self, logits_shape: torch.Size) -> tuple[int, ...]:
        return (2, self.samples, *logits_shape)  # the sample's noise, then the conditional draw

    def randomize_state(self, generator: torch.Generator) -> None:
        """A scale and temperature away from their initial values (both constrained)."""
        with torch.no_grad():
            self.eta_parameter.fill_(0.63)
            self.log_temperature.fill_(-0.4)

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        u = noise.uniform(self.noise_shape(logits.shape), generator, logits)
        record = self.training and self.learn
        with torch.enable_grad():
            theta = logits.detach().requires_grad_(True)
            eta = self.eta_parameter.to(logits.dtype)
            temperature = self.log_temperature.exp().to(logits.dtype)
            z = self.node.perturb(theta, u[0])
            b = self.node.harden_perturbed(z.detach())
            z_cond = self.node.conditional_perturb(theta, b, u[1])
            fb = self.evaluate(f, b, logits)
            f_relaxed = self.evaluate(f, self.node.soften(z, temperature), logits)
            f_cond = self.evaluate(f, self.node.soften(z_cond, temperature), logits)
            (pathwise,) = torch.autograd.grad((f_relaxed - f_cond).sum(), theta, create_graph=record)
            signal = fb.detach() - eta * (f_cond if record else f_cond.detach())
            score = self.node.score(b, theta.detach())
            g = (self.node.per_sample(signal) * score).mean(0) + eta * pathwise / self.samples
        if record:
            self.add_auxiliary_loss(second_moment(self.node, g))
        return self.attach(fb.mean(0), logits, g.detach())


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    eta, lam, s = est.eta, est.temperature, u.shape[1]
    b = hard_of(node, perturbed(node, logits, u[0]))
    f_cond = f(soft(node, conditional(node, logits, b, u[1]), lam))
    pathwise = d_dtheta(lambda th: (f(soft(node, perturbed(node, th, u[0]), lam))
                                    - f(soft(node, conditional(node, th, b, u[1]), lam))).sum(), logits)
    grad = (expand(f(b) - eta * f_cond, node) * (b - probs(node, logits))).mean(0) + eta * pathwise / s
    return grad, f(b).mean(0)
