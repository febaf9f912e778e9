"""The relaxed-sampler core: one uniform draw, then a surrogate gradient through f.

:class:`RelaxedCore` draws the call's noise ``u`` (shape :meth:`RelaxedGradient.noise_shape`)
and hands it to a :class:`RelaxedGradient`, the part that says how a sample is formed
from ``u`` and how the gradient passes through it:

``soft``      f at the Gumbel-softmax sample ``y = soften(logits + G(u), tau)``; the
              gradient is the reparameterised one (Jang et al., 2017; Maddison et al., 2017)
``st``        f at the hard sample ``H(y)``, the gradient through ``y``: straight-through
              Gumbel-softmax (Jang et al., 2017, Sec. 2.2)
``rao``       ``st`` with the Jacobian averaged over ``draws`` conditional draws of the
              perturbation given the hard sample (Paulus et al., 2021)
``mean``      f at the hard sample, the gradient through its mean ``probs(logits)``
              (Bengio et al., 2013)
``reinmax``   f at the hard sample, Heun's second-order correction of ``mean``
              (Liu et al., 2023)

The published estimators (``gumbel-softmax``, ``st-gumbel-softmax``, ``gumbel-rao``,
``straight-through``, ``reinmax``) are the core with one part and its paper's defaults;
``relaxed`` takes the part as a hyperparameter, so a suite crosses them as ``variants``.
All are biased and evaluate or differentiate f at points the problem must accept.

On an autoregressive node (:mod:`dgbench.sequences`) each part forms unit t from its
logits and noise with :meth:`RelaxedGradient.relax_step`, a value (relaxed or hard) whose
gradient with respect to the unit's logits is the part's, and that value is fed to step
t + 1: the gradient flows through the recurrence, as in the Gumbel-softmax sequence GANs
(Kusner & Hernandez-Lobato, 2016). On a one-unit node ``relax_step`` followed by f gives
the part's factorised estimate; a test pins this.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from dgbench import noise
from dgbench.errors import NotApplicable
from dgbench.estimators.base import Estimator, Objective
from dgbench.sequences import is_sequence


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


class RelaxedGradient(torch.nn.Module):
    """How a relaxed estimator forms its sample from the noise and passes the gradient."""

    id: ClassVar[str] = ""
    default_temperature: ClassVar[float | None] = 0.5

    def noise_shape(self, samples: int, logits_shape: torch.Size) -> tuple[int, ...]:
        return (samples, *logits_shape)

    def estimate(self, est: Estimator, logits: Tensor, f: Objective, u: Tensor) -> Tensor:
        """The estimate: by default f at :meth:`relax_step`'s sample, averaged over samples."""
        return est.evaluate(f, self.relax_step(est, logits, u), logits).mean(0)

    def relax_step(self, est: Estimator, logits: Tensor, u: Tensor) -> Tensor:
        """The sample formed from ``u`` (relaxed or hard), carrying the part's gradient to
        ``logits``; on an autoregressive node, one unit's."""
        raise NotApplicable(f"{est.id}: the {self.id!r} gradient has no per-unit form for autoregressive nodes")


class Soft(RelaxedGradient):
    id = "soft"

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        self.temperature = _positive("temperature", temperature)

    def relax_step(self, est, logits, u):
        return est.node.relaxed(logits, u, self.temperature)


class StraightThroughSoft(RelaxedGradient):
    id = "st"

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        self.temperature = _positive("temperature", temperature)

    def relax_step(self, est, logits, u):
        y = est.node.relaxed(logits, u, self.temperature)
        return est.node.harden(y) + (y - y.detach())


class RaoBlackwellised(RelaxedGradient):
    id = "rao"

    def __init__(self, temperature: float = 0.5, draws: int = 10) -> None:
        super().__init__()
        if draws < 1:
            raise ValueError(f"draws must be >= 1, got {draws}")
        self.temperature, self.draws = _positive("temperature", temperature), draws

    def noise_shape(self, samples, logits_shape):
        return (1 + self.draws, samples, *logits_shape)  # the sample's noise, then K conditional draws

    def estimate(self, est, logits, f, u):
        node = est.node
        b = node.harden_perturbed(node.perturb(logits.detach(), u[0]))
        with torch.enable_grad():
            z_hard = b.clone().requires_grad_(True)
            fb = est.evaluate(f, z_hard, logits)
            (df_db,) = torch.autograd.grad(fb.sum(), z_hard, retain_graph=True)
            theta = logits.detach().requires_grad_(True)
            # The noise G = z~ - logits is held fixed: the Jacobian is the unconditional
            # reparameterisation's, d soften(logits + G) / d logits, evaluated at G | b.
            perturbation = node.conditional_perturb(logits.detach(), b, u[1:]) - logits.detach()
            soft = node.soften(theta + perturbation, self.temperature).mean(0)
            (g,) = torch.autograd.grad(soft, theta, grad_outputs=df_db / u.shape[1])
        return est.attach(fb.mean(0), logits, g)

    def relax_step(self, est, logits, u):
        node = est.node
        b = node.harden_perturbed(node.perturb(logits.detach(), u[0]))
        perturbation = node.conditional_perturb(logits.detach(), b, u[1:]) - logits.detach()
        soft = node.soften(logits + perturbation, self.temperature).mean(0)
        return b + (soft - soft.detach())


class ThroughMean(RelaxedGradient):
    """Straight-through: the Jacobian of ``probs(logits / temperature)`` (1: the mean's)."""

    id = "mean"
    default_temperature = 1.0

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = _positive("temperature", temperature)

    def relax_step(self, est, logits, u):
        z = est.node.hard(logits.detach(), u)
        mu = est.node.probs(logits / self.temperature) if self.temperature != 1.0 else est.node.probs(logits)
        return z + (mu - mu.detach())


class ReinMaxGradient(RelaxedGradient):
    id = "reinmax"
    default_temperature = 1.0

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = _positive("temperature", temperature)

    def _jacobian_t(self, est: Estimator, pi: Tensor, v: Tensor) -> Tensor:
        if est.node.event_dims == 1:
            return pi * (1 - pi) * v
        return pi * (v - (pi * v).sum(-1, keepdim=True))

    def estimate(self, est, logits, f, u):
        d = est.node.hard(logits.detach(), u)
        with torch.enable_grad():
            z = d.clone().requires_grad_(True)
            fz = est.evaluate(f, z, logits)
            (v,) = torch.autograd.grad(fz.sum(), z, retain_graph=True)
        theta = logits.detach()
        pi0 = est.node.probs(theta)
        pi1 = (d + est.node.probs(theta / self.temperature)) / 2
        g = (2 * self._jacobian_t(est, pi1, v) - 0.5 * self._jacobian_t(est, pi0, v)).mean(0)
        return est.attach(fz.mean(0), logits, g)

    def relax_step(self, est, logits, u):
        # The Jacobians are symmetric and linear in their argument, so h's vector-Jacobian
        # product with v is ReinMax's 2 J(pi1) v - J(pi0) v / 2.
        d = est.node.hard(logits.detach(), u)
        theta = logits.detach()
        pi0, pi1 = est.node.probs(theta), (d + est.node.probs(theta / self.temperature)) / 2
        h = 2 * self._jacobian_t(est, pi1, logits) - 0.5 * self._jacobian_t(est, pi0, logits)
        return d + (h - h.detach())


GRADIENTS: dict[str, type[RelaxedGradient]] = {
    cls.id: cls for cls in (Soft, StraightThroughSoft, RaoBlackwellised, ThroughMean, ReinMaxGradient)
}


class RelaxedCore(Estimator):
    """A relaxed estimator made of ``self.part``, a :class:`RelaxedGradient` the subclass builds."""

    family = "both"
    unbiased = False
    relaxed = True
    evals_per_sample = 1
    group = "relaxed / straight-through"
    sequential = True
    part: RelaxedGradient

    def noise_shape(self, logits_shape: torch.Size) -> tuple[int, ...]:
        return self.part.noise_shape(self.samples, logits_shape)

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        if is_sequence(logits):
            like = torch.empty((), dtype=logits.dtype, device=logits.device)
            u = noise.uniform(self.noise_shape(logits.shape), generator, like)
            y = logits.rollout(lambda logits_t, u_t: self.part.relax_step(self, logits_t, u_t), u, self.samples)
            return self.evaluate(f, y, y[0]).mean(0)
        u = noise.uniform(self.noise_shape(logits.shape), generator, logits)
        return self.part.estimate(self, logits, f, u)
