"""asv benchmarks of whole training steps and gradient-statistics cells, and tracked statistics.

``time_``/``peakmem_``: one training step (objective estimate, backward, the estimators'
auxiliary step, optimiser step) per estimator on ``bernoulli-toy`` (dim 200),
``vae-bernoulli-linear`` (batch 50) and ``vae-categorical``, exactly as ``dgbench run`` times
it (:func:`dgbench.harness.cells.train_step`); the hand-written reference steps of
:mod:`benchmarks.reference_steps` on ``vae-bernoulli-linear``; one vectorised R = 1000
gradient-statistics cell on ``bernoulli-toy``. MNIST problems read
``$DGBENCH_DATA_DIR`` (skipped when the data is missing).

``track_``: fixed-seed bias and variance of each estimator at fixed parameters on
``bernoulli-toy`` and ``vae-bernoulli-tiny``: a change that breaks an estimator's
statistics shows in asv like a slowdown.
"""

from __future__ import annotations

import torch

from benchmarks import grid, reference_steps
from benchmarks.step_overhead import build_dgbench_step, build_problem, build_reference_step
from dgbench.estimators import ESTIMATORS
from dgbench.harness.cells import node_estimators
from dgbench.harness.enumeration import exact_objective_and_gradient
from dgbench.harness.gradstats import replicated_gradients, summarise
from dgbench.harness.seeding import make_generator
from dgbench.problems import PROBLEMS
from dgbench.problems.data import DataUnavailable, load_binarized_mnist

try:  # asv forks every benchmark from a server that imported this module: read MNIST once, there
    load_binarized_mnist(download=False)
except DataUnavailable:
    pass

# Small enough for exact gradients (closed form, enumeration of 2^12 states).
TRACKED_PROBLEMS = {"bernoulli-toy": {"dim": 3, "init": 0.7}, "vae-bernoulli-tiny": {"batch_size": 4}}
STEP_PROBLEMS = {
    "bernoulli-toy": {"dim": 200},
    "vae-bernoulli-linear": {"eval_examples": 1},
    "vae-categorical": {"eval_examples": 1},
}


def _sampling(family: str) -> list[str]:
    return [e for e, c in ESTIMATORS.items() if c.supports(family) and c.evals_per_sample is not None
            and not c.multi_sample_bound and not c.evals_scale_with_event]


class TrainingStep:
    params = (list(STEP_PROBLEMS), grid(sorted(set(_sampling("bernoulli")) | set(_sampling("categorical")))))
    param_names = ["problem", "estimator"]
    timeout = 300

    def setup(self, problem, estimator):
        if not ESTIMATORS[estimator].supports(PROBLEMS[problem].family):
            raise NotImplementedError("estimator does not support this family")
        torch.set_num_threads(1)
        try:
            self.step, _ = build_dgbench_step(problem, estimator, {**STEP_PROBLEMS[problem], "dtype": torch.float32})
        except DataUnavailable as err:
            raise NotImplementedError(str(err)) from None
        self.step()

    def time_step(self, problem, estimator):
        self.step()

    def peakmem_step(self, problem, estimator):
        self.step()


class HandWrittenStep:
    """The hand-written reference steps on ``vae-bernoulli-linear`` (``plain``: no estimator)."""

    params = [[reference_steps.PLAIN, *grid(reference_steps.ESTIMATOR_IDS)]]
    param_names = ["estimator"]
    timeout = 300

    def setup(self, estimator):
        torch.set_num_threads(1)
        try:
            problem = build_problem("vae-bernoulli-linear", STEP_PROBLEMS["vae-bernoulli-linear"])
        except DataUnavailable as err:
            raise NotImplementedError(str(err)) from None
        self.step = build_reference_step(problem, estimator)
        self.step()

    def time_step(self, estimator):
        self.step()

    def peakmem_step(self, estimator):
        self.step()


class GradientStatisticsCell:
    params = [grid(_sampling("bernoulli"))]
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

    params = (list(TRACKED_PROBLEMS), grid(_sampling("bernoulli")))
    param_names = ["problem", "estimator"]
    timeout = 300

    def _stats(self, problem, estimator):
        p = PROBLEMS[problem](**TRACKED_PROBLEMS[problem], generator=torch.Generator().manual_seed(0))
        exact = torch.cat([g.reshape(-1) for g in exact_objective_and_gradient(p)[1].values()])
        estimators = node_estimators(p, ESTIMATORS[estimator], {}, torch.device("cpu"))
        return summarise(replicated_gradients(p, estimators, 2000, make_generator(0)), exact)

    def track_log10_variance(self, problem, estimator):
        return float(torch.tensor(self._stats(problem, estimator).variance_mean).log10())

    def track_bias_norm(self, problem, estimator):
        return self._stats(problem, estimator).bias_norm
