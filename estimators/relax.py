"""RELAX: REBAR's construction with a learned control variate c_psi in place of f.

With perturbed logits ``z``, the hard sample ``b = H(z)`` and ``z~ ~ p(z | b)`` as in
REBAR:

    g = [f(b) - c(z~)] d log q(b)/d logits + d c(z)/d logits - d c(z~)/d logits

Unbiased for every c. Here ``c(z) = MLP(soften(z, temperature))`` (default temperature 1), a
network with one ``activation`` (tanh by default; the authors' toy uses ReLU) hidden
layer of ``hidden`` units on the flattened relaxed sample of each batch element (its
output starts at zero), so f is
only evaluated at hard samples (1 evaluation per sample) and need not be differentiable.
In training mode the estimator records ``sum g^2`` (mean over batch elements) as its
auxiliary loss; its gradient w.r.t. psi (double backpropagation through the pathwise
terms) is the gradient of the estimate's variance.

Grathwohl, Choi, Wu, Roeder & Duvenaud (2018), Backpropagation through the Void:
Optimizing control variates for black-box gradient estimation, ICLR.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench import noise
from dgbench.domains import Choice
from dgbench.estimators.base import Estimator, Objective, builtin
from dgbench.estimators.networks import ACTIVATIONS, control_network
from dgbench.estimators.rebar import second_moment
from dgbench.estimators.reference import conditional, d_dtheta, expand, flat, hard_of, mlp, perturbed, probs, soft


@builtin
class RELAX(Estimator):
    id = "relax"
    hyperparameter_domains = {"activation": Choice(tuple(ACTIVATIONS))}
    family = "both"
    unbiased = True
    relaxed = False
    evals_per_sample = 1
    paper = "Grathwohl et al. (2018), Backpropagation through the Void, ICLR"
    group = "control variates"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, hidden: int = 10, learn: bool = True,
                 activation: str = "tanh", temperature: float = 1.0) -> None:
        super().__init__(node, samples)
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.hidden, self.learn, self.activation = hidden, learn, activation
        self.control = control_network(hidden, activation)
        self.control_temperature = float(temperature)  # the control variate's input; not an annealed temperature

    @property
    def temperature(self) -> float:
        return self.control_temperature

    def control_variate(self, z: Tensor) -> Tensor:
        """``c(z)`` per sample and batch element: ``(S, *batch, event) -> (S, *batch)``."""
        x = self.node.soften(z, self.control_temperature)
        if self.node.event_dims == 2:
            x = x.flatten(-2)
        return self.control(x.to(torch.float64)).squeeze(-1).to(z.dtype)

    def noise_shape(self, logits_shape: torch.Size) -> tuple[int, ...]:
        return (2, self.samples, *logits_shape)  # the sample's noise, then the conditional draw

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        u = noise.uniform(self.noise_shape(logits.shape), generator, logits)
        record = self.training and self.learn  # learn=False: c stays at its initial value
        with torch.enable_grad():
            theta = logits.detach().requires_grad_(True)
            z = self.node.perturb(theta, u[0])
            b = self.node.harden_perturbed(z.detach())
            z_cond = self.node.conditional_perturb(theta, b, u[1])
            fb = self.evaluate(f, b, logits)
            c_cond = self.control_variate(z_cond)
            (pathwise,) = torch.autograd.grad((self.control_variate(z) - c_cond).sum(), theta, create_graph=record)
            signal = fb.detach() - (c_cond if record else c_cond.detach())
            score = self.node.score(b, theta.detach())
            g = (self.node.per_sample(signal) * score).mean(0) + pathwise / self.samples
        if record:
            self.add_auxiliary_loss(second_moment(self.node, g))
        return self.attach(fb.mean(0), logits, g.detach())


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    s = u.shape[1]
    b = hard_of(node, perturbed(node, logits, u[0]))

    def c(y):
        return mlp(est.control, flat(node, soft(node, y, est.control_temperature)))

    c_cond = c(conditional(node, logits, b, u[1]))
    pathwise = d_dtheta(lambda th: (c(perturbed(node, th, u[0])) - c(conditional(node, th, b, u[1]))).sum(), logits)
    grad = (expand(f(b) - c_cond, node) * (b - probs(node, logits))).mean(0) + pathwise / s
    return grad, f(b).mean(0)
