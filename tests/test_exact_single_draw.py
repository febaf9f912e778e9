"""With fixed noise, each estimator's gradient (and value) equals its hand-written formula.

Each estimator's module holds ``reference_draw``: the estimator written from its paper with
plain tensor operations (see :mod:`dgbench.estimators.reference`), sharing nothing with the
estimator's code except the noise convention (one uniform draw ``u`` of shape
``est.noise_shape(logits.shape)`` from the generator). A new estimator joins this test by
being registered; until its module has a reference, its case fails.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from dgbench.estimators import ESTIMATORS
from dgbench.noise import uniform
from tests.helpers import LOGITS, CoupledQuadratic

SEED = 1234
TAU = 0.7
PAIRS = [(eid, node) for eid, cls in ESTIMATORS.items() for node in ("bernoulli", "categorical") if cls.supports(node)]


def reference_draw(eid):
    module = importlib.import_module(ESTIMATORS[eid].__module__)
    formula = getattr(module, "reference_draw", None)
    assert formula is not None, f"{module.__name__} has no reference_draw: write the hand formula beside {eid}"
    return formula


def build(eid, node):
    cls = ESTIMATORS[eid]
    hp = cls.default_hyperparameters()
    kwargs = {}
    if "samples" in hp and cls.multi_sample:
        kwargs["samples"] = max(3, cls.min_samples)
    if "temperature" in hp:
        kwargs["temperature"] = TAU
    est = cls(node, **kwargs)
    randomize_learned_parts(est, node)
    return est.eval()


def randomize_learned_parts(est, node, seed=0):
    """Give learned baselines/control variates and adaptive state random (not initial)
    values, as each estimator declares (:meth:`Estimator.randomize_state`)."""
    if any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in est.parameters()):
        est.eval()(LOGITS[node].clone(), CoupledQuadratic(node), generator=torch.Generator().manual_seed(99))
    est.randomize_state(torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("eid,node", PAIRS)
def test_single_draw_matches_hand_formula(eid, node):
    est = build(eid, node)
    f = CoupledQuadratic(node)
    logits = LOGITS[node].clone().requires_grad_(True)
    generator = torch.Generator().manual_seed(SEED)
    state = generator.get_state()
    out = est(logits, f, generator=generator)
    (grad,) = torch.autograd.grad(out, logits)

    generator.set_state(state)
    u = uniform(est.noise_shape(logits.shape), generator, logits)
    expected_grad, expected_value = reference_draw(eid)(node, logits.detach(), u, f, est)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.detach(), expected_value, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("node", ["bernoulli", "categorical"])
def test_relax_with_the_authors_relu_control_variate_matches_hand_formula(node):
    est = ESTIMATORS["relax"](node, samples=3, activation="relu", temperature=0.5)
    randomize_learned_parts(est, node)
    est.eval()
    f = CoupledQuadratic(node)
    logits = LOGITS[node].clone().requires_grad_(True)
    generator = torch.Generator().manual_seed(SEED)
    state = generator.get_state()
    (grad,) = torch.autograd.grad(est(logits, f, generator=generator), logits)
    generator.set_state(state)
    u = uniform(est.noise_shape(logits.shape), generator, logits)
    expected, _ = reference_draw("relax")(node, logits.detach(), u, f, est)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
    assert isinstance(est.control[1], torch.nn.ReLU)
