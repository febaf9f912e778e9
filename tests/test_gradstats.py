"""Vectorised gradient statistics: the batched VJP and the summary numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dgbench.estimators import ESTIMATORS
from dgbench.harness.gradstats import replicated_gradients, summarise
from dgbench.harness.seeding import derive_seed, make_generator
from dgbench.problems.base import Problem


class LinearLogits(Problem):
    """logits = W x (so the gradient w.r.t. W needs the Jacobian), f = sum (z - 0.3)^2."""

    id = "test-linear-logits"
    family = "bernoulli"

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W = torch.nn.Parameter(torch.randn(3, 2, generator=g, dtype=torch.float64))
        self.register_buffer("x", torch.tensor([0.7, -1.1], dtype=torch.float64))

    def logits(self):
        return self.W @ self.x

    def f(self, z):
        return ((z - 0.3) ** 2).sum(-1)


def test_replicated_gradients_apply_the_jacobian_per_replica():
    problem = LinearLogits()
    est = ESTIMATORS["reinforce"]("bernoulli")
    grads = replicated_gradients(problem, est, 64, make_generator(1))
    assert grads.shape == (64, 6)
    # Same noise, gradients w.r.t. the replicated logits directly:
    logits = problem.logits().detach().expand(64, 3).clone().requires_grad_(True)
    out = est(logits, problem.f, generator=make_generator(1))
    (g_logits,) = torch.autograd.grad(out.sum(), logits)
    expected = torch.einsum("ri,j->rij", g_logits, problem.x).reshape(64, 6)
    torch.testing.assert_close(grads, expected, rtol=1e-12, atol=1e-14)


def test_chunking_does_not_change_the_distribution_shape():
    problem = LinearLogits()
    grads = replicated_gradients(problem, ESTIMATORS["disarm"]("bernoulli"), 100, make_generator(2), chunk=7)
    assert grads.shape == (100, 6) and torch.isfinite(grads).all()


def test_replicated_gradients_leave_estimator_mode_and_state_alone():
    est = ESTIMATORS["reinforce-ema"]("bernoulli").train()
    replicated_gradients(LinearLogits(), est, 10, make_generator(0))
    assert est.training and int(est.part.updates) == 0


def test_summary_matches_numpy():
    rng = np.random.default_rng(0)
    estimates = rng.normal(size=(500, 3)) + np.array([1.0, -2.0, 0.5])
    exact = np.array([1.1, -2.0, 0.4])
    stats = summarise(torch.tensor(estimates), torch.tensor(exact))
    mean, var = estimates.mean(0), estimates.var(0, ddof=1)
    assert stats.mean_gradient == pytest.approx(mean.tolist())
    assert stats.standard_error == pytest.approx(np.sqrt(var / 500).tolist())
    assert stats.bias_norm == pytest.approx(np.linalg.norm(mean - exact))
    assert stats.variance_mean == pytest.approx(var.mean())
    assert stats.variance_total == pytest.approx(var.sum())
    assert stats.mse == pytest.approx(((estimates - exact) ** 2).sum(1).mean())
    assert stats.cosine == pytest.approx(mean @ exact / np.linalg.norm(mean) / np.linalg.norm(exact))
    assert stats.snr_mean == pytest.approx((np.abs(mean) / np.sqrt(var)).mean())
    # MSE decomposes into squared bias plus total variance (up to the R-1 vs R factor).
    assert stats.mse == pytest.approx(stats.bias_norm**2 + stats.variance_total * 499 / 500)


def test_zero_variance_estimates_get_no_spurious_bias_z():
    exact = torch.tensor([0.025], dtype=torch.float64)
    estimates = exact.expand(100, 1) + torch.randn(100, 1, dtype=torch.float64) * 1e-19
    stats = summarise(estimates, exact)
    assert stats.bias_z_max < 1.0
    assert math.isfinite(stats.cosine)


def test_round_off_floor_follows_the_precision_of_the_computation():
    """A zero-variance float32 estimate of a float32 gradient differs from its float64
    value by float32 round-off only: no spurious bias z (it was 2e7 on hard attention)."""
    exact = torch.tensor([0.3, -1.7, 2.5e-3, 11.0], dtype=torch.float64)
    estimates = exact.to(torch.float32).expand(100, 4)
    assert summarise(estimates, exact.to(torch.float32)).bias_z_max < 1.0
    assert summarise(estimates, exact).bias_z_max < 1.0
    # A real bias of 1e-3 relative stays far above that floor.
    assert summarise(estimates * (1 + 1e-3), exact).bias_z_max > 5.0


def test_seeds_depend_on_problem_config_and_index_only():
    a = derive_seed("bernoulli-toy", {"dim": 1}, 0)
    assert a == derive_seed("bernoulli-toy", {"dim": 1}, 0)
    assert a != derive_seed("bernoulli-toy", {"dim": 2}, 0)
    assert a != derive_seed("bernoulli-toy", {"dim": 1}, 1)
    assert 0 <= a < 2**63


def test_sampled_reference_standard_error_enters_the_bias_z_score():
    """z = |bias| / sqrt(se^2 + se_ref^2): the difference of two independent means."""
    estimates = torch.tensor([[1.0], [3.0], [1.0], [3.0]], dtype=torch.float64)  # mean 2, se = sqrt(4/3 / 4)
    se = (torch.tensor(4.0 / 3.0, dtype=torch.float64) / 4).sqrt()
    exact = torch.tensor([2.0 - 3 * float(se)], dtype=torch.float64)
    assert summarise(estimates, exact).bias_z_max == pytest.approx(3.0)
    assert summarise(estimates, exact, se.reshape(1)).bias_z_max == pytest.approx(3.0 / 2**0.5)
