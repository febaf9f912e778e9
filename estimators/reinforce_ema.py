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

from dgbench.estimators.base import builtin
from dgbench.estimators.reference import expand, hard, probs
from dgbench.estimators.score_core import MovingAverage, ScoreFunctionCore


@builtin
class ReinforceEMA(ScoreFunctionCore):
    id = "reinforce-ema"
    paper = "Williams (1992); moving-average baseline as in Mnih & Gregor (2014), ICML"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, decay: float = 0.9) -> None:
        super().__init__(node, samples)
        self.part = MovingAverage(decay)
        self.decay = decay


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    c = float(est.part.average) / (1 - est.part.decay ** int(est.part.updates))
    z = hard(node, logits, u)
    return (expand(f(z) - c, node) * (z - probs(node, logits))).mean(0), f(z).mean(0)
