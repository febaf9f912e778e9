"""The hand-written reference steps (benchmarks/reference_steps.py) compute dgbench's gradients.

The speed targets compare dgbench's training step with a hand-written one per estimator;
that comparison is honest only if both compute the same thing. Here both run from the
same parameters, minibatch and noise seed on the linear Bernoulli VAE of the bundled
digits (float64), for two consecutive steps (so running baselines and statistics enter),
with the learned parts set to random values, and every gradient must agree.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks import reference_steps
from dgbench.estimators import ESTIMATORS
from dgbench.harness.cells import _step_estimators, materialize, node_estimators
from dgbench.problems import PROBLEMS
from tests.test_exact_single_draw import randomize_learned_parts

# What runs on vae-bernoulli-linear with its default options: sampling estimators of
# Bernoulli nodes, except VIMCO (needs bound_samples > 1, its own benchmark problem).
APPLICABLE = sorted(
    eid for eid, cls in ESTIMATORS.items()
    if cls.supports("bernoulli") and cls.evals_per_sample is not None and not cls.multi_sample_bound
)


def test_references_exist_only_for_registered_estimators():
    """A reference step is optional (an estimator without one has no reference row in the
    benchmark); one for an unknown id is a stale leftover."""
    assert set(reference_steps.ESTIMATOR_IDS) <= set(APPLICABLE), set(reference_steps.ESTIMATOR_IDS) - set(APPLICABLE)


def _problem_and_estimators(eid: str):
    torch.manual_seed(0)
    problem = PROBLEMS["vae-bernoulli-digits"](dtype=torch.float64, eval_examples=1)
    estimators = node_estimators(problem, ESTIMATORS[eid], {}, torch.device("cpu"))
    materialize(problem, estimators, torch.Generator().manual_seed(99))
    randomize_learned_parts(estimators["z"], "bernoulli")
    estimators.train()
    return problem, estimators


@pytest.mark.parametrize("eid", [e for e in APPLICABLE if e in reference_steps.ESTIMATOR_IDS])
def test_reference_step_matches_dgbench_gradient(eid):
    problem, estimators = _problem_and_estimators(eid)
    model = reference_steps.LinearVAE(problem)
    reference, reference_params = reference_steps.make_reference(eid, model, estimators["z"])
    problem_params = [problem.encoder[0].weight, problem.encoder[0].bias, problem.decoder[0].weight,
                      problem.decoder[0].bias, problem.prior_logits]
    estimator_params = [p for p in estimators.parameters() if p.requires_grad]
    assert len(estimator_params) == len(reference_params)
    ours, theirs = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for step in range(2):
        for p in problem_params + estimator_params + model.parameters() + reference_params:
            p.grad = None
        (-problem.loss(estimators, ours)).backward()
        _step_estimators(estimators)
        reference(model, problem.x, theirs).backward()
        for name, a, b in zip(["enc_w", "enc_b", "dec_w", "dec_b", "prior"], problem_params, model.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-9, atol=1e-11, msg=f"step {step}: {name}")
        for i, (a, b) in enumerate(zip(estimator_params, reference_params)):
            torch.testing.assert_close(b.grad, a.grad.to(b.dtype), rtol=1e-9, atol=1e-11,
                                       msg=f"step {step}: estimator parameter {i}")


def test_plain_step_trains_decoder_and_kl_only():
    """The no-estimator floor: encoder gradient is the KL term's alone."""
    problem, _ = _problem_and_estimators("reinforce")
    model = reference_steps.LinearVAE(problem)
    reference_steps.plain(model, problem.x, torch.Generator().manual_seed(0)).backward()
    logits = model.logits(problem.x).detach().requires_grad_(True)
    (kl_grad,) = torch.autograd.grad(model.kl(logits).mean(), logits)
    torch.testing.assert_close(model.enc_b.grad, kl_grad.sum(0))
    assert model.dec_w.grad.abs().sum() > 0
