"""NVIL: REINFORCE with a learned input-dependent baseline and a running constant baseline.

    g = (1/S) sum_s l_s d log q(z_s)/d logits,   l_s = f(z_s) - b(x) - c

The input x of the baseline is the node's logits (detached): the context every problem
hands any estimator, a deterministic function of the data for an encoder (and of the
parent layer's sample for a deeper layer of a belief network). b is a network with one
tanh hidden layer of ``hidden`` units (``hidden = 0``: linear; output starting at zero)
trained by minimising
``E (f(z) - c - b(x))^2`` (recorded as the auxiliary loss); c is a moving average of
``f - b(x)`` with ``decay`` 0.8, updated in training mode. Unbiased for any b and c.

With ``normalize=True``, l is further divided by ``max(1, sqrt(v))`` with v a moving
average of its variance, as in the paper. That rescales the gradient (a per-step change
of learning rate), so the estimator is unbiased only with the default ``normalize=False``.

Mnih & Gregor (2014), Neural Variational Inference and Learning in Belief Networks, ICML.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench.estimators.base import Estimator, Objective, builtin, score_function
from dgbench.estimators.networks import control_network
from dgbench.estimators.reference import expand, flat, hard, mlp, probs


@builtin
class NVIL(Estimator):
    id = "nvil"
    family = "both"
    unbiased = True
    relaxed = False
    evals_per_sample = 1
    paper = "Mnih & Gregor (2014), NVIL, ICML"
    group = "control variates"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, hidden: int = 16, decay: float = 0.8,
                 normalize: bool = False) -> None:
        super().__init__(node, samples)
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0, got {hidden}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.hidden, self.decay, self.normalize = hidden, decay, normalize
        self.baseline = control_network(hidden)
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("variance", torch.ones((), dtype=torch.float64))

    def input_baseline(self, logits: Tensor) -> Tensor:
        """``b(x)`` per batch element from the detached logits."""
        x = logits.detach()
        if self.node.event_dims == 2:
            x = x.flatten(-2)
        return self.baseline(x.to(torch.float64)).squeeze(-1)

    def randomize_state(self, generator: torch.Generator) -> None:
        """Random baseline weights and a non-zero running mean of the learning signal."""
        super().randomize_state(generator)
        self.mean.fill_(0.21)

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        z = self.node.sample(logits.detach(), self.samples, generator)
        fz = self.evaluate(f, z, logits)
        with torch.enable_grad():
            b = self.input_baseline(logits)
        centred = fz.detach().to(torch.float64) - self.mean
        signal = centred - b.detach()
        if self.normalize:
            signal = signal / self.variance.sqrt().clamp_min(1.0)
        grad = score_function(self.node, logits, z, signal.to(fz.dtype))
        if self.training:
            self.add_auxiliary_loss(((centred - b) ** 2).mean())
            with torch.no_grad():
                residual = fz.detach().to(torch.float64) - b
                self.mean.mul_(self.decay).add_((1 - self.decay) * residual.mean())
                self.variance.mul_(self.decay).add_((1 - self.decay) * residual.var(unbiased=False))
        return self.attach(fz.mean(0), logits, grad)


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    z = hard(node, logits, u)
    b = mlp(est.baseline, flat(node, logits))
    signal = f(z) - float(est.mean) - b
    return (expand(signal, node) * (z - probs(node, logits))).mean(0), f(z).mean(0)
