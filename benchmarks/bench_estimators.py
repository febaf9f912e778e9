"""asv benchmarks: one estimator call (forward + backward) on the Bernoulli toy.

See README, "Speed benchmarks".
"""

import torch

from benchmarks import grid
from dgbench.estimators import ESTIMATORS


class EstimatorStep:
    # Sampling estimators only: `exact` would enumerate 2^200 states.
    params = grid(eid for eid, cls in ESTIMATORS.items() if cls.supports("bernoulli") and cls.evals_per_sample)
    param_names = ["estimator"]

    def setup(self, estimator):
        self.est = ESTIMATORS[estimator]("bernoulli")
        self.logits = torch.zeros(50, 200, requires_grad=True)
        self.target = torch.full((200,), 0.45)
        self.generator = torch.Generator().manual_seed(0)

    def f(self, z):
        return ((z - self.target) ** 2).sum(-1)

    def time_forward_backward(self, estimator):
        out = self.est(self.logits, self.f, generator=self.generator)
        out.sum().backward()
