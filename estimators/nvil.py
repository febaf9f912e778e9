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

from dgbench.domains import Integer
from dgbench.estimators.base import builtin
from dgbench.estimators.reference import expand, flat, hard, mlp, probs
from dgbench.estimators.score_core import LearnedNetwork, ScoreFunctionCore


@builtin
class NVIL(ScoreFunctionCore):
    id = "nvil"
    hyperparameter_domains = {"hidden": Integer(0)}
    paper = "Mnih & Gregor (2014), NVIL, ICML"
    group = "control variates"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, hidden: int = 16, decay: float = 0.8,
                 normalize: bool = False) -> None:
        super().__init__(node, samples)
        self.part = LearnedNetwork(hidden, decay, normalize)
        self.hidden, self.decay, self.normalize = hidden, decay, normalize


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    z = hard(node, logits, u)
    b = mlp(est.part.network, flat(node, logits))
    signal = f(z) - float(est.part.mean) - b
    return (expand(signal, node) * (z - probs(node, logits))).mean(0), f(z).mean(0)
