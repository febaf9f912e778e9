"""References that work: on every registered problem where the exact estimator applies, a
short training run with the exact gradient improves the problem's true score (issue 28,
item 6: hard-attention's exact reference once ended at chance)."""

from __future__ import annotations

import pytest
import torch

from dgbench.errors import NotApplicable
from dgbench.estimators import ESTIMATORS
from dgbench.harness.cells import make_optimizer, make_problem, node_estimators, train_step
from dgbench.harness.seeding import make_generator
from dgbench.harness.suites import incompatibility
from dgbench.problems import PROBLEMS
from tests.helpers import MNIST_PROBLEMS, SMALL_OPTIONS

STEPS = 400
LR = 0.01


def true_score(problem) -> tuple[str, float, bool]:
    """The problem's first declared score that its evaluation reports (name, value, higher is better)."""
    values = problem.evaluate()
    for score in problem.declared_scores():
        if score.metric in values:
            return score.metric, values[score.metric], score.higher_is_better
    pytest.skip(f"{problem.id}: evaluation reports none of its declared scores")


@pytest.mark.slow
@pytest.mark.parametrize("pid", [p for p in PROBLEMS if p not in MNIST_PROBLEMS])
def test_a_short_run_with_the_exact_gradient_improves_the_true_score(pid):
    cls = PROBLEMS[pid]
    options = SMALL_OPTIONS[pid]
    why = incompatibility(cls, ESTIMATORS["exact"], options)
    if why:
        pytest.skip(why)
    device = torch.device("cpu")
    problem = make_problem(pid, options, 0, device)
    estimators = node_estimators(problem, ESTIMATORS["exact"], {}, device)
    generator, data = make_generator(1), torch.Generator().manual_seed(2)
    try:
        problem.loss(estimators, generator)
    except NotApplicable as err:
        pytest.skip(f"exact does not apply at the test options: {err}")
    metric, before, higher = true_score(problem)
    optimizer = make_optimizer("adam", [p for p in problem.parameters() if p.requires_grad], LR, device)
    for _ in range(STEPS):
        _, _, finite = train_step(problem, estimators, optimizer, generator, data)
        assert bool(finite)
    after = problem.evaluate()[metric]
    gained = after - before if higher else before - after
    assert gained > 0, f"{pid}: {metric} {before:.4g} -> {after:.4g} after {STEPS} steps with the exact gradient"
