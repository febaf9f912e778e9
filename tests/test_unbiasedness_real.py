"""Unbiasedness on real models whose latent space is enumerable, the same z-test as on the toys.

The exact gradient of each problem's objective w.r.t. the parameters producing its first
node's logits comes from enumeration (nested over layers for the SBN); the mean of R
vectorised estimates is z-tested coordinate by coordinate at family-wise level 1e-3
(Bonferroni over the coordinates). Float64, fixed seeds. Learned baselines and control
variates are set to random values first: unbiasedness must not depend on them.
"""

from __future__ import annotations

import pytest
import torch

from dgbench.estimators import ESTIMATORS
from dgbench.harness.cells import node_estimators
from dgbench.harness.enumeration import exact_objective_and_gradient
from dgbench.harness.gradstats import flatten, replicated_gradients, summarise
from dgbench.harness.seeding import make_generator
from dgbench.problems import PROBLEMS
from tests.helpers import small_problem, z_critical
from tests.test_exact_single_draw import randomize_learned_parts
from tests.test_unbiasedness import ALPHA, UNBIASED

REPLICAS = 20000
REAL = {
    "bernoulli": [("vae-bernoulli-tiny", {}), ("vae-bernoulli-tiny", {"latents": 4, "bound_samples": 3}),
                  ("sbn-two-layer", {}), ("sbn-two-layer", {"bound_samples": 2}), ("hard-attention", {}),
                  ("sbn-structured", {}), ("darn-vae", {"autoregressive_init": 0.5})],
    "categorical": [("vae-categorical-digits", {}), ("vae-categorical-digits", {"bound_samples": 2}),
                    ("hard-attention-categorical", {}), ("gmm-cavi", {}), ("gmm-cavi", {"amortized": True}),
                    ("sbn-structured-categorical", {}), ("sequence-generation", {}),
                    ("sequence-generation", {"reward": "likelihood"})],
}
MULTI_SAMPLE_BOUND = [eid for eid, cls in ESTIMATORS.items() if cls.multi_sample_bound]
VIMCO_HOSTS = {"vae-bernoulli-tiny", "vae-categorical-digits", "sbn-two-layer"}


def applicable(eid, pid, options):
    if PROBLEMS[pid].sequential and not ESTIMATORS[eid].sequential:  # needs factorised units
        return False
    if ESTIMATORS[eid].multi_sample_bound:
        return pid in VIMCO_HOSTS and options.get("bound_samples", 1) > 1
    return True


CASES = [(eid, pid, options) for family, problems in REAL.items() for pid, options in problems
         for eid in UNBIASED + MULTI_SAMPLE_BOUND if ESTIMATORS[eid].supports(family) and applicable(eid, pid, options)]


@pytest.mark.slow
@pytest.mark.parametrize("eid,pid,options", CASES, ids=[f"{e}-{p}-{o}" for e, p, o in CASES])
def test_unbiased_on_enumerable_real_problem(eid, pid, options):
    problem = small_problem(pid, **options)
    exact = flatten(exact_objective_and_gradient(problem)[1])
    hyper = {"samples": options["bound_samples"]} if ESTIMATORS[eid].multi_sample_bound else {}
    estimators = node_estimators(problem, ESTIMATORS[eid], hyper, torch.device("cpu")).eval()
    with torch.no_grad():  # size any lazily-shaped learned parts, then make them random
        problem.objective(estimators, problem.logits(), make_generator(0))
    for i, estimator in enumerate(estimators.values()):
        randomize_learned_parts(estimator, problem.family, seed=i)
    # IndeCateR costs units x values evaluations per estimate (and has little variance):
    # fewer replicas keep the test's time bounded; the false-alarm rate is unchanged.
    replicas = REPLICAS // 8 if ESTIMATORS[eid].evals_scale_with_event else REPLICAS
    estimates = replicated_gradients(problem, estimators, replicas, make_generator(13))
    stats = summarise(estimates, exact)
    assert stats.bias_z_max <= z_critical(ALPHA, exact.numel()), f"{eid} on {pid} {options}: max z {stats.bias_z_max}"


@pytest.mark.slow
@pytest.mark.parametrize("pid", ["vae-bernoulli-tiny", "hard-attention", "sbn-structured", "darn-vae",
                                 "sequence-generation"])
def test_negative_control_straight_through_rejected_on_real_problem(pid):
    problem = small_problem(pid)
    exact = flatten(exact_objective_and_gradient(problem)[1])
    estimators = node_estimators(problem, ESTIMATORS["straight-through"], {}, torch.device("cpu"))
    stats = summarise(replicated_gradients(problem, estimators, REPLICAS, make_generator(13)), exact)
    assert stats.bias_z_max > z_critical(ALPHA, exact.numel())


@pytest.mark.slow
def test_vimco_on_the_sbn_is_unbiased_for_every_recognition_layer():
    """VIMCO's leave-one-out signals reach the second layer's recognition parameters too:
    the mean of R full training gradients (a loop: these parameters sit inside f) matches
    the enumerated gradient of the 2-sample bound w.r.t. both layers."""
    from dgbench.estimators.exact import Exact

    problem = small_problem("sbn-two-layer", units=2, bound_samples=2)
    params = [p for layer in problem.recognition for p in layer.parameters()]
    exact_value = problem.loss({name: Exact("bernoulli") for name in problem.node_names()}, None)
    exact = torch.cat([g.reshape(-1) for g in torch.autograd.grad(exact_value, params)])
    vimco = ESTIMATORS["vimco"]("bernoulli", samples=2)
    estimators = {name: vimco for name in problem.node_names()}
    generator = make_generator(17)
    rows = []
    for _ in range(4000):
        loss = problem.loss(estimators, generator)
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    stats = summarise(torch.stack(rows), exact)
    assert stats.bias_z_max <= z_critical(ALPHA, exact.numel()), stats.bias_z_max
