"""Vectorised gradient statistics vs a Python loop of backward passes.

asv: ``time_vectorised`` / ``time_loop`` for R = 1000 on ``bernoulli-toy`` (dim 16).
As a script, ``python benchmarks/bench_gradstats.py`` prints both timings and the
speed-up for each estimator.
"""

from __future__ import annotations

import time

import torch

from benchmarks import grid
from dgbench.estimators import ESTIMATORS
from dgbench.harness.gradstats import replicated_gradients
from dgbench.harness.seeding import make_generator
from dgbench.problems import PROBLEMS

REPLICAS = 1000
SAMPLING = [eid for eid, cls in ESTIMATORS.items() if cls.supports("bernoulli") and cls.evals_per_sample]


def looped_gradients(problem, estimator, replicas, generator):
    """The naive way: one forward and one backward pass per replica."""
    rows = []
    for _ in range(replicas):
        problem.zero_grad()
        problem.loss(estimator, generator).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in problem.logit_parameters().values()]))
    return torch.stack(rows)


class GradStats:
    params = grid(SAMPLING)
    param_names = ["estimator"]

    def setup(self, estimator):
        self.problem = PROBLEMS["bernoulli-toy"](dim=16)
        self.est = ESTIMATORS[estimator]("bernoulli").eval()

    def time_vectorised(self, estimator):
        replicated_gradients(self.problem, self.est, REPLICAS, make_generator(0))

    def time_loop(self, estimator):
        looped_gradients(self.problem, self.est, REPLICAS, make_generator(0))


def main() -> None:
    torch.set_num_threads(1)
    print(f"R = {REPLICAS}, bernoulli-toy dim 16, float64, 1 thread")
    print(f"{'estimator':<20}{'vectorised s':>14}{'loop s':>10}{'speed-up':>10}")
    for eid in SAMPLING:
        problem, est = PROBLEMS["bernoulli-toy"](dim=16), ESTIMATORS[eid]("bernoulli").eval()
        times = []
        for fn in (replicated_gradients, looped_gradients):
            fn(problem, est, 50, make_generator(1))  # warm-up
            start = time.perf_counter()
            fn(problem, est, REPLICAS, make_generator(0))
            times.append(time.perf_counter() - start)
        print(f"{eid:<20}{times[0]:>14.4f}{times[1]:>10.3f}{times[1] / times[0]:>9.0f}x")


if __name__ == "__main__":
    main()
