"""The Gaussian node, the pathwise estimator and the Gaussian problems: the reference
point of the reparameterisation gradient.

Float64, fixed seeds; z-tests at family-wise level 1e-3 (Bonferroni over coordinates).
"""

from __future__ import annotations

import math

import pytest
import torch

from dgbench.estimators import ESTIMATORS
from dgbench.estimators.pathwise import reference_draw
from dgbench.harness.enumeration import exact_objective_and_gradient
from dgbench.harness.gradstats import flatten, replicated_gradients, summarise
from dgbench.harness.seeding import make_generator
from dgbench.harness.suites import incompatibility
from dgbench.nodes import GAUSSIAN
from dgbench.noise import uniform
from dgbench.problems import PROBLEMS
from tests.helpers import DTYPE, small_problem, z_critical

ALPHA = 1e-3
LOGITS = torch.tensor([[0.3, -1.2, 0.8, -0.4, 0.2, 0.1]], dtype=DTYPE)  # [mu (3), log sigma (3)]
GAUSSIAN_ESTIMATORS = [eid for eid, cls in ESTIMATORS.items() if cls.supports("gaussian")]
UNBIASED = [eid for eid in GAUSSIAN_ESTIMATORS if ESTIMATORS[eid].unbiased and ESTIMATORS[eid].evals_per_sample]


class Quartic:
    """f(z) = sum_i a_i z_i^2 + (w . z)^2 / 4 + b . z, with its gradient in z."""

    def __init__(self) -> None:
        self.a = torch.tensor([0.5, -1.0, 2.0], dtype=DTYPE)
        self.w = torch.tensor([1.0, 0.5, -0.7], dtype=DTYPE)
        self.b = torch.tensor([0.3, 0.0, -1.1], dtype=DTYPE)

    def __call__(self, z):
        return (self.a * z**2).sum(-1) + (z @ self.w) ** 2 / 4 + z @ self.b

    def grad(self, z):
        return 2 * self.a * z + (z @ self.w).unsqueeze(-1) * self.w / 2 + self.b


def test_the_expected_estimators_run_on_gaussian_nodes():
    assert {"pathwise", "reinforce", "rloo", "grpo", "nvil", "exact"} <= set(GAUSSIAN_ESTIMATORS)
    for eid in ("disarm", "gumbel-softmax", "muprop", "relax", "straight-through"):
        assert not ESTIMATORS[eid].supports("gaussian"), eid


def test_pathwise_single_draw_matches_the_chain_rule_by_hand():
    est = ESTIMATORS["pathwise"]("gaussian", samples=3)
    f = Quartic()
    logits = LOGITS.clone().requires_grad_(True)
    generator = torch.Generator().manual_seed(8)
    state = generator.get_state()
    out = est(logits, f, generator=generator)
    (grad,) = torch.autograd.grad(out.sum(), logits)
    generator.set_state(state)
    u = uniform(est.noise_shape(logits.shape), generator, logits)
    expected_grad, expected_value = reference_draw("gaussian", LOGITS, u, f, est)
    torch.testing.assert_close(out, expected_value)
    torch.testing.assert_close(grad, expected_grad)


def test_node_samples_have_the_stated_mean_and_variance():
    z = GAUSSIAN.sample(LOGITS, 200_000, torch.Generator().manual_seed(1))
    mu, log_sigma = GAUSSIAN.split(LOGITS)
    sigma = log_sigma.exp()
    crit = z_critical(ALPHA, 2 * mu.numel())
    assert float(((z.mean(0) - mu) / (sigma / math.sqrt(z.shape[0]))).abs().max()) < crit
    # the sample variance's standard error is about sigma^2 sqrt(2 / n)
    assert float(((z.var(0) - sigma**2) / (sigma**2 * math.sqrt(2 / z.shape[0]))).abs().max()) < crit


def test_node_log_prob_score_and_kl_match_torch_distributions():
    z = GAUSSIAN.sample(LOGITS, 5, torch.Generator().manual_seed(2))
    mu, log_sigma = GAUSSIAN.split(LOGITS)
    normal = torch.distributions.Normal(mu, log_sigma.exp())
    torch.testing.assert_close(GAUSSIAN.log_prob(z, LOGITS), normal.log_prob(z).sum(-1))
    logits = LOGITS.clone().requires_grad_(True)
    (score,) = torch.autograd.grad(GAUSSIAN.log_prob(z, logits).sum(), logits)
    torch.testing.assert_close(GAUSSIAN.score(z, LOGITS).sum(0), score)
    prior = torch.tensor([[0.1, 0.0, -0.2, 0.3, -0.1, 0.0]], dtype=DTYPE)
    m, log_s = GAUSSIAN.split(prior)
    expected = torch.distributions.kl_divergence(normal, torch.distributions.Normal(m, log_s.exp())).sum(-1)
    torch.testing.assert_close(GAUSSIAN.kl_divergence(LOGITS, prior), expected)


def test_quadrature_gives_the_closed_form_on_the_toy():
    problem = small_problem("gaussian-toy", dim=3)
    value, grads = exact_objective_and_gradient(problem)
    torch.testing.assert_close(value, problem.exact_objective().detach())
    torch.testing.assert_close(grads["theta"], problem.exact_gradient()["theta"])


def test_vae_gaussian_quadrature_agrees_with_a_many_sample_pathwise_mean():
    """Gauss-Hermite on the VAE's ELBO gradient against 200,000 pathwise draws (z-test)."""
    problem = small_problem("vae-gaussian")
    exact = flatten(exact_objective_and_gradient(problem)[1])
    ests = torch.nn.ModuleDict({"z": ESTIMATORS["pathwise"]("gaussian", samples=100)})
    stats = summarise(replicated_gradients(problem, ests, 2000, make_generator(5)), exact)
    assert stats.bias_z_max < z_critical(ALPHA, exact.numel())


CASES = [(eid, pid) for eid in UNBIASED for pid in ("gaussian-toy", "vae-gaussian")]


@pytest.mark.slow
@pytest.mark.parametrize("eid,pid", CASES)
def test_unbiased_on_gaussian_problems(eid, pid):
    problem = small_problem(pid)
    exact = flatten(exact_objective_and_gradient(problem)[1])
    cls = ESTIMATORS[eid]
    ests = torch.nn.ModuleDict({"z": cls("gaussian", **({"samples": 4} if cls.multi_sample else {}))}).eval()
    with torch.no_grad():
        problem.objective(ests, problem.logits(), make_generator(0))  # size lazy parts
    ests["z"].randomize_state(torch.Generator().manual_seed(3))
    if hasattr(ests["z"], "part"):
        ests["z"].part.randomize(torch.Generator().manual_seed(3))
    stats = summarise(replicated_gradients(problem, ests, 20000, make_generator(13)), exact)
    assert stats.bias_z_max <= z_critical(ALPHA, exact.numel()), f"{eid} on {pid}: max z {stats.bias_z_max}"


def test_grpo_bias_is_detected_on_the_gaussian_toy():
    problem = small_problem("gaussian-toy")
    exact = flatten(exact_objective_and_gradient(problem)[1])
    ests = torch.nn.ModuleDict({"z": ESTIMATORS["grpo"]("gaussian", samples=4)})
    stats = summarise(replicated_gradients(problem, ests, 4000, make_generator(13)), exact)
    assert stats.bias_z_max > z_critical(ALPHA, exact.numel())


def test_pathwise_has_less_variance_than_rloo_on_the_vae():
    """The reparameterisation gap, at 4 samples each."""
    problem = small_problem("vae-gaussian")
    variances = {}
    for eid in ("pathwise", "rloo"):
        ests = torch.nn.ModuleDict({"z": ESTIMATORS[eid]("gaussian", samples=4)})
        variances[eid] = summarise(replicated_gradients(problem, ests, 1000, make_generator(2)),
                                   flatten(exact_objective_and_gradient(problem)[1])).variance_total
    assert variances["pathwise"] < variances["rloo"] / 2, variances


@pytest.mark.parametrize("pid", ["gaussian-toy", "vae-gaussian", "vae-gaussian-mnist"])
def test_discrete_only_estimators_are_skipped_with_the_reason(pid):
    for eid in ("disarm", "gumbel-softmax", "muprop", "vimco"):
        reason = incompatibility(PROBLEMS[pid], ESTIMATORS[eid], PROBLEMS[pid].default_options())
        assert reason and "Gaussian" in reason, (eid, reason)
    assert incompatibility(PROBLEMS[pid], ESTIMATORS["pathwise"], PROBLEMS[pid].default_options()) is None


def test_pathwise_refuses_discrete_nodes():
    with pytest.raises(ValueError, match="does not support"):
        ESTIMATORS["pathwise"]("bernoulli")
