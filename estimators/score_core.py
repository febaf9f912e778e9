"""The score-function core and its baselines: the parts REINFORCE-family estimators share.

    g = 1/S sum_s l_s d log q(z_s) / d logits  [+ c(logits)],    z_s ~ q

where the learning signal ``l_s`` is ``f(z_s)`` minus a baseline, and ``c`` is the exact
gradient of the baseline's expectation where that is not zero (MuProp's Taylor term).
:class:`ScoreFunctionCore` draws the samples, evaluates f and applies a
:class:`Baseline`; each published estimator (``reinforce``, ``reinforce-ema``,
``reinforce-optimal``, ``rloo``, ``nvil``, ``muprop``) is the core with one baseline and
its paper's defaults, and ``score-function`` takes the baseline as a hyperparameter, so
that a suite can cross baselines without new code (suite ``variants``).

Baselines (``BASELINES``; the first five leave the estimator's declared capabilities
unchanged, so ``score-function`` accepts them):

``none``      l_s = f(z_s)                                     (Williams, 1992)
``ema``       l_s = f(z_s) - m_t / (1 - decay^t), m a moving average of f over earlier
              calls (bias-corrected; 0 before the first update)
``loo``       l_s = f(z_s) - 1/(S-1) sum_{r != s} f(z_r)        (Kool et al., 2019)
``optimal``   l_s = f(z_s) - c_{-s}, per coordinate c_{-s} = sum_{r!=s} f(z_r) s_r^2 / sum_{r!=s} s_r^2
              with s_r the score: the variance-optimal constant estimated from the other
              samples (Weaver & Tao, 2001; Greensmith et al., 2004)
``network``   l_s = f(z_s) - c - b(x): a learned input-dependent network b on the detached
              logits plus a running mean c of f - b (Mnih & Gregor, 2014)
``taylor``    l_s = f(z_s) - h(z_s), h the first-order Taylor expansion of f at mu = E[z],
              plus the exact gradient of E_q[h] (Gu et al., 2016); needs a differentiable
              f and one more evaluation, so it is MuProp's own estimator

Every baseline here is independent of the sample it is subtracted from, or corrected
exactly, so every combination is unbiased (``network`` with ``normalize = True`` rescales
the gradient and is not).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from dgbench.errors import NotApplicable
from dgbench.estimators.base import Estimator, Objective, score_function
from dgbench.estimators.networks import control_network
from dgbench.nodes import Node
from dgbench.sequences import Autoregressive, is_sequence


class Baseline(torch.nn.Module):
    """Turns the sampled values ``f(z_s)`` into learning signals (and may learn)."""

    id: ClassVar[str] = ""
    min_samples: ClassVar[int] = 1
    sequential: ClassVar[bool] = True  # defined on autoregressive nodes (dgbench.sequences)

    def sequence_signal(self, est: Estimator, sequence: Autoregressive, logits: Tensor, z: Tensor,
                        fz: Tensor) -> Tensor:
        """The learning signal on an autoregressive node; ``logits`` are the samples'
        teacher-forced logits ``(S, *batch, T[, V])``. Default: :meth:`signal` with them."""
        return self.signal(est, logits, z, fz, None)

    def prepare(self, est: Estimator, logits: Tensor, f: Objective) -> Any:
        """Work done before the samples are drawn (MuProp's evaluation at the mean)."""
        return None

    def signal(self, est: Estimator, logits: Tensor, z: Tensor, fz: Tensor, prepared: Any) -> Tensor:
        """The learning signal, ``(S, *batch)`` or per coordinate; updates state in training mode."""
        raise NotImplementedError

    def correction(self, est: Estimator, logits: Tensor, prepared: Any) -> Tensor | None:
        """The exact gradient of the baseline's expectation, where it is not zero."""
        return None

    def randomize(self, generator: torch.Generator) -> None:
        """A non-trivial state, for the exact single-draw tests."""


class NoBaseline(Baseline):
    id = "none"

    def signal(self, est, logits, z, fz, prepared):
        return fz.detach()


class MovingAverage(Baseline):
    id = "ema"

    def __init__(self, decay: float = 0.9) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.register_buffer("average", torch.zeros((), dtype=torch.float64))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def value(self) -> Tensor:
        """The current bias-corrected moving average (0 before the first update)."""
        if int(self.updates) == 0:
            return torch.zeros((), dtype=self.average.dtype, device=self.average.device)
        return self.average / (1.0 - self.decay ** int(self.updates))

    def signal(self, est, logits, z, fz, prepared):
        out = fz.detach() - self.value().to(fz.dtype)
        if est.training:
            with torch.no_grad():
                self.average.mul_(self.decay).add_((1.0 - self.decay) * fz.detach().mean().to(self.average.dtype))
                self.updates += 1
        return out

    def randomize(self, generator):
        self.average.fill_(0.37)  # as after three updates
        self.updates.fill_(3)


class LeaveOneOut(Baseline):
    id = "loo"
    min_samples = 2

    def signal(self, est, logits, z, fz, prepared):
        signal = fz.detach()
        return signal - (signal.sum(0, keepdim=True) - signal) / (signal.shape[0] - 1)


class OptimalConstant(Baseline):
    id = "optimal"
    min_samples = 2

    def signal(self, est, logits, z, fz, prepared):
        node: Node = est.node
        s2 = node.score(z, logits.detach()) ** 2
        weighted = node.per_sample(fz.detach()) * s2
        numerator = weighted.sum(0, keepdim=True) - weighted
        denominator = s2.sum(0, keepdim=True) - s2
        safe = denominator > 0
        c = torch.where(safe, numerator / torch.where(safe, denominator, torch.ones_like(denominator)), 0.0)
        return node.per_sample(fz.detach()) - c


class LearnedNetwork(Baseline):
    id = "network"

    def __init__(self, hidden: int = 16, decay: float = 0.8, normalize: bool = False) -> None:
        super().__init__()
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0, got {hidden}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.hidden, self.decay, self.normalize = hidden, decay, normalize
        self.network = control_network(hidden)
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("variance", torch.ones((), dtype=torch.float64))

    def sequence_signal(self, est, sequence, logits, z, fz):
        # b(x) must not depend on the sample: its input is what the node is conditioned on.
        context = sequence.context()
        if est.node.event_dims == 2:
            context = context.unsqueeze(-2)  # input_baseline flattens a categorical event
        return self.signal(est, context, z, fz, None)

    def input_baseline(self, node: Node, logits: Tensor) -> Tensor:
        """``b(x)`` per batch element from the detached logits."""
        x = logits.detach()
        if node.event_dims == 2:
            x = x.flatten(-2)
        return self.network(x.to(torch.float64)).squeeze(-1)

    def signal(self, est, logits, z, fz, prepared):
        with torch.enable_grad():
            b = self.input_baseline(est.node, logits)
        centred = fz.detach().to(torch.float64) - self.mean
        signal = centred - b.detach()
        if self.normalize:
            signal = signal / self.variance.sqrt().clamp_min(1.0)
        if est.training:
            est.add_auxiliary_loss(((centred - b) ** 2).mean())
            with torch.no_grad():
                residual = fz.detach().to(torch.float64) - b
                self.mean.mul_(self.decay).add_((1 - self.decay) * residual.mean())
                self.variance.mul_(self.decay).add_((1 - self.decay) * residual.var(unbiased=False))
        return signal.to(fz.dtype)

    def randomize(self, generator):
        self.mean.fill_(0.21)  # a non-zero running mean; the estimator randomises the weights


class Taylor(Baseline):
    id = "taylor"
    sequential = False  # E[z] of an autoregressive node has no closed form

    def prepare(self, est, logits, f):
        mu = est.node.probs(logits.detach()).requires_grad_(True)
        with torch.enable_grad():
            f_mu = est.evaluate(f, mu, logits, leading=0)
            (df_mu,) = torch.autograd.grad(f_mu.sum(), mu, allow_unused=True)
        if df_mu is None:
            df_mu = torch.zeros_like(mu)
        return mu.detach(), f_mu.detach(), df_mu

    def signal(self, est, logits, z, fz, prepared):
        mu, f_mu, df_mu = prepared
        return fz.detach() - (f_mu + est.node.sum_event(df_mu * (z - mu)))

    def correction(self, est, logits, prepared):
        return est.node.mean_vjp(logits.detach(), prepared[2])


BASELINES: dict[str, type[Baseline]] = {
    cls.id: cls for cls in (NoBaseline, MovingAverage, LeaveOneOut, OptimalConstant, LearnedNetwork, Taylor)
}


class ScoreFunctionCore(Estimator):
    """REINFORCE with ``self.part``, a :class:`Baseline` the subclass builds. Any node
    family: it needs only samples and the score (Gaussian nodes included)."""

    family = "any"
    unbiased = True
    relaxed = False
    evals_per_sample = 1
    group = "score function"
    sequential = True
    part: Baseline

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        if is_sequence(logits):
            if not self.part.sequential:
                raise NotApplicable(f"{self.id}: the {self.part.id!r} baseline needs factorised units")
            return self.score_function_sequence(
                logits, f, generator, lambda tf, z, fz: self.part.sequence_signal(self, logits, tf, z, fz))
        prepared = self.part.prepare(self, logits, f)
        z = self.node.sample(logits.detach(), self.samples, generator)
        fz = self.evaluate(f, z, logits)
        grad = score_function(self.node, logits, z, self.part.signal(self, logits, z, fz, prepared))
        correction = self.part.correction(self, logits, prepared)
        if correction is not None:
            grad = grad + correction
        return self.attach(fz.mean(0), logits, grad)

    def randomize_state(self, generator: torch.Generator) -> None:
        super().randomize_state(generator)
        self.part.randomize(generator)
