"""Documented properties of the biased estimators."""

from __future__ import annotations

import pytest
import torch

from dgbench.estimators import ESTIMATORS
from dgbench.noise import uniform
from tests.helpers import (
    LOGITS,
    Linear,
    exact_logit_gradient,
    replicated_logit_gradients,
    z_critical,
    z_scores,
)


@pytest.mark.parametrize("node", ["bernoulli", "categorical"])
def test_straight_through_is_exact_on_every_draw_for_linear_f(node):
    f = Linear(node)
    exact = exact_logit_gradient(node, LOGITS[node], f)
    estimates = replicated_logit_gradients(ESTIMATORS["straight-through"](node), LOGITS[node], f, 50, seed=3)
    torch.testing.assert_close(estimates, exact.expand_as(estimates), rtol=1e-12, atol=1e-14)


def test_darn_is_unbiased_for_linear_f():
    f = Linear("bernoulli")
    exact = exact_logit_gradient("bernoulli", LOGITS["bernoulli"], f)
    estimates = replicated_logit_gradients(ESTIMATORS["darn"]("bernoulli"), LOGITS["bernoulli"], f, 20000, seed=3)
    assert (z_scores(estimates, exact) <= z_critical(1e-3, exact.numel())).all()


@pytest.mark.parametrize("node", ["bernoulli", "categorical"])
def test_gumbel_softmax_samples_approach_one_hot_as_temperature_falls(node):
    logits = LOGITS[node].expand(4000, *LOGITS[node].shape)
    u = uniform((1, *logits.shape), torch.Generator().manual_seed(0), logits)
    node_impl = ESTIMATORS["gumbel-softmax"](node).node
    distances = []
    for tau in (2.0, 0.5, 0.1, 0.01):
        y = node_impl.relaxed(logits, u, tau)
        distances.append(float((y - node_impl.harden(y)).abs().mean()))
    assert all(a > b for a, b in zip(distances, distances[1:])), distances
    assert distances[-1] < 1e-2
    y = node_impl.relaxed(logits, u, 0.001)
    assert float((y - node_impl.harden(y)).abs().max(-1).values.quantile(0.99)) < 1e-3


@pytest.mark.parametrize("node", ["bernoulli", "categorical"])
def test_st_gumbel_softmax_forward_samples_are_exact_draws_from_q(node):
    """Hard samples share the relaxation's noise but are distributed exactly as q."""
    est = ESTIMATORS["st-gumbel-softmax"](node)
    seen = []
    n = 40000
    logits = LOGITS[node].expand(n, *LOGITS[node].shape)
    est(logits, lambda z: seen.append(z.detach()) or z.sum(tuple(range(2, z.dim()))), generator=torch.Generator().manual_seed(1))
    z = seen[0][0]
    p = est.node.probs(LOGITS[node])
    frequency = z.mean(0)
    se = (p * (1 - p) / n).sqrt()
    assert ((frequency - p).abs() / se <= z_critical(1e-3, p.numel())).all()


def test_gumbel_softmax_bias_shrinks_with_temperature_on_linear_f():
    """For linear f the relaxed objective's gradient tends to the exact one as tau -> 0."""
    node = "categorical"
    f = Linear(node)
    exact = exact_logit_gradient(node, LOGITS[node], f)
    errors = []
    for tau in (2.0, 0.5):
        est = ESTIMATORS["gumbel-softmax"](node, temperature=tau)
        mean = replicated_logit_gradients(est, LOGITS[node], f, 40000, seed=2).mean(0)
        errors.append(float((mean - exact).norm()))
    assert errors[1] < errors[0]
