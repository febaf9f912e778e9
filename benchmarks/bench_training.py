"""asv benchmarks of whole training steps and gradient-statistics cells, and tracked statistics.

``time_``/``peakmem_``: one training step (objective estimate, backward, the estimators'
auxiliary step, optimiser step) per estimator on ``bernoulli-toy`` (dim 200),
``vae-bernoulli-linear`` (batch 50) and ``vae-categorical``; one vectorised R = 1000
gradient-statistics cell on ``bernoulli-toy``. MNIST problems read
``$DGBENCH_DATA_DIR`` (skipped when the data is missing).

``track_``: fixed-seed bias and variance of each estimator at fixed parameters on
``bernoulli-toy`` and ``vae-bernoulli-tiny``: a change that breaks an estimator's
statistics shows in asv like a slowdown.
"""

from __future__ import annotations

import torch

from estimators import ESTIMATORS
from harness.cells import _step_estimators, node_estimators
from harness.gradstats import replicated_gradients, summarise
from harness.enumeration import exact_objective_and_gradient
from harness.seeding import make_generator
from problems import PROBLEMS
from problems.data import DataUnavailable

STEP_PROBLEMS = {
    "bernoulli-toy": {"dim": 200},
    "vae-bernoulli-linear": {"eval_examples": 1},
    "vae-categorical": {"eval_examples": 1},
}


def _sampling(family: str) -> list[str]:
    return [e for e, c in ESTIMATORS.items() if c.supports(family) and c.evals_per_sample is not None
            and not c.multi_sample_bound and not c.evals_scale_with_event]


class TrainingStep:
    params = (list(STEP_PROBLEMS), sorted(set(_sampling("bernoulli")) | set(_sampling("categorical"))))
    param_names = ["problem", "estimator"]
    timeout = 300

    def setup(self, problem, estimator):
        cls = PROBLEMS[problem]
        if not ESTIMATORS[estimator].supports(cls.family):
            raise NotImplementedError("estimator does not support this family")
        torch.set_num_threads(1)
        torch.manual_seed(0)
        try:
            self.problem = cls(**STEP_PROBLEMS[problem], dtype=torch.float32)
        except DataUnavailable as err:
            raise NotImplementedError(str(err)) from None
        self.estimators = node_estimators(self.problem, ESTIMATORS[estimator], {}, torch.device("cpu"))
        self.generator = make_generator(0)
        self.problem.loss(self.estimators, self.generator)  # size lazy parts
        for est in self.estimators.values():
            est.auxiliary_loss()
        self.optimizer = torch.optim.Adam(list(self.problem.parameters()) + list(self.estimators.parameters()), lr=1e-4)
        self.sign = 1.0 if self.problem.minimize else -1.0

    def _step(self):
        self.optimizer.zero_grad(set_to_none=True)
        (self.sign * self.problem.loss(self.estimators, self.generator)).backward()
        _step_estimators(self.estimators)
        self.optimizer.step()

    def time_step(self, problem, estimator):
        self._step()

    def peakmem_step(self, problem, estimator):
        self._step()


class GradientStatisticsCell:
    params = [_sampling("bernoulli")]
    param_names = ["estimator"]
    timeout = 300

    def setup(self, estimator):
        torch.set_num_threads(1)
        self.problem = PROBLEMS["bernoulli-toy"](dim=16, target=0.499)
        self.estimators = node_estimators(self.problem, ESTIMATORS[estimator], {}, torch.device("cpu"))

    def time_replicated_1000(self, estimator):
        replicated_gradients(self.problem, self.estimators, 1000, make_generator(0))

    def peakmem_replicated_1000(self, estimator):
        replicated_gradients(self.problem, self.estimators, 1000, make_generator(0))


class TrackedStatistics:
    """Fixed seeds and parameters: these numbers change only when an estimator's maths does."""

    params = (["bernoulli-toy", "vae-bernoulli-tiny"], _sampling("bernoulli"))
    param_names = ["problem", "estimator"]
    timeout = 300

    def _stats(self, problem, estimator):
        torch.manual_seed(0)
        options = {"dim": 3, "init": 0.7} if problem == "bernoulli-toy" else {"batch_size": 4}
        p = PROBLEMS[problem](**options)
        exact = torch.cat([g.reshape(-1) for g in exact_objective_and_gradient(p)[1].values()])
        estimators = node_estimators(p, ESTIMATORS[estimator], {}, torch.device("cpu"))
        return summarise(replicated_gradients(p, estimators, 2000, make_generator(0)), exact)

    def track_log10_variance(self, problem, estimator):
        return float(torch.tensor(self._stats(problem, estimator).variance_mean).log10())

    def track_bias_norm(self, problem, estimator):
        return self._stats(problem, estimator).bias_norm
