"""Exact expectation and gradient of any problem whose node is small enough to enumerate.

Runs the ``exact`` estimator (a sum over all states, at every node) through the problem's own loss and
differentiates with autograd, so it applies to every problem that follows the contract,
not only those with closed forms. The state limit is the ``exact`` estimator's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench.estimators.exact import DEFAULT_MAX_STATES, Exact
from dgbench.problems.base import Problem


def exact_objective_and_gradient(
    problem: Problem, max_states: int = DEFAULT_MAX_STATES
) -> tuple[Tensor, dict[str, Tensor]]:
    """``(E_q[objective], {name: d E_q / d param})`` over ``problem.logit_parameters()``."""
    estimators = {name: Exact(problem.family, max_states=max_states) for name in problem.node_names()}
    params = problem.logit_parameters()
    with torch.enable_grad():
        value = problem.loss(estimators, generator=None)
        grads = torch.autograd.grad(value, list(params.values()), allow_unused=True)
    return value.detach(), {
        name: (torch.zeros_like(p) if g is None else g) for (name, p), g in zip(params.items(), grads)
    }
