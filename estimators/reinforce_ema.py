"""REINFORCE with an exponential-moving-average baseline.

    g = 1/S sum_s (f(z_s) - c) d log q(z_s) / d logits,
    c = m_t / (1 - decay^t),  m_t = decay m_{t-1} + (1 - decay) mean f   (bias-corrected EMA)

The baseline ``c`` is computed from *earlier* calls only, so it is independent of the
current samples and the estimator stays unbiased for any baseline value. It is updated
after each call in training mode (``module.train()``) and frozen in eval mode. Default
``decay = 0.9``; before the first update ``c = 0`` (plain REINFORCE).

Williams (1992); the moving-average baseline as used e.g. by Mnih & Gregor (2014),
Neural Variational Inference and Learning in Belief Networks, ICML.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench.estimators.base import Estimator, Objective, builtin, score_function
from dgbench.estimators.reference import expand, hard, probs


@builtin
class ReinforceEMA(Estimator):
    id = "reinforce-ema"
    family = "both"
    unbiased = True
    relaxed = False
    evals_per_sample = 1
    paper = "Williams (1992); moving-average baseline as in Mnih & Gregor (2014), ICML"
    group = "score function"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, decay: float = 0.9) -> None:
        super().__init__(node, samples)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.register_buffer("average", torch.zeros((), dtype=torch.float64))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def baseline(self) -> Tensor:
        """The current bias-corrected moving average (0 before the first update)."""
        if int(self.updates) == 0:
            return torch.zeros((), dtype=self.average.dtype, device=self.average.device)
        return self.average / (1.0 - self.decay ** int(self.updates))

    def randomize_state(self, generator: torch.Generator) -> None:
        """A non-trivial baseline, as after three updates."""
        self.average.fill_(0.37)
        self.updates.fill_(3)

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        z = self.node.sample(logits.detach(), self.samples, generator)
        fz = self.evaluate(f, z, logits)
        c = self.baseline().to(fz.dtype)
        grad = score_function(self.node, logits, z, fz.detach() - c)
        if self.training:
            with torch.no_grad():
                self.average.mul_(self.decay).add_((1.0 - self.decay) * fz.detach().mean().to(self.average.dtype))
                self.updates += 1
        return self.attach(fz.mean(0), logits, grad)


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    c = float(est.average) / (1 - est.decay ** int(est.updates))
    z = hard(node, logits, u)
    return (expand(f(z) - c, node) * (z - probs(node, logits))).mean(0), f(z).mean(0)
