"""The estimator contract, for every registered estimator and every family it supports.

A new estimator joins these tests by being registered.
"""

from __future__ import annotations

import json

import pytest
import torch

from dgbench.errors import NotApplicable
from dgbench.estimators import ESTIMATORS, Estimator
from dgbench.estimators.base import FAMILY_VALUES
from dgbench.estimators.plugin import validate_estimator
from dgbench.nodes import FAMILIES
from tests.helpers import DTYPE, LOGITS, CoupledQuadratic

PAIRS = [(eid, node) for eid, cls in ESTIMATORS.items() for node in FAMILIES if cls.supports(node)]


def test_registry_ids_match_classes():
    assert len(ESTIMATORS) >= 20 and len(set(ESTIMATORS)) == len(ESTIMATORS)
    for eid, cls in ESTIMATORS.items():
        assert cls.id == eid
        assert issubclass(cls, Estimator)


def test_every_estimator_module_is_registered():
    """A file in estimators/ defining an Estimator subclass is registered (no silent orphan)."""
    import importlib
    import pkgutil

    import dgbench.estimators as package

    registered = set(ESTIMATORS.values())
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"dgbench.estimators.{info.name}")
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, Estimator) and value is not Estimator
                    and value.__module__ == module.__name__ and value.id):
                assert value in registered, f"{value.__name__} ({value.id}) is not registered"


@pytest.mark.parametrize("eid", list(ESTIMATORS))
def test_declarations_are_valid_and_json_ready(eid):
    cls = ESTIMATORS[eid]
    caps = json.loads(json.dumps(cls.capabilities()))
    assert caps["family"] in FAMILY_VALUES
    assert isinstance(caps["unbiased"], bool) and isinstance(caps["relaxed"], bool)
    assert cls.paper, f"{eid} must cite its paper"
    assert cls.__module__ and (cls.__doc__ or __import__(cls.__module__).__doc__)


@pytest.mark.parametrize("eid", list(ESTIMATORS))
def test_validator_accepts_every_builtin(eid):
    """Shape, finiteness, gradient, determinism, no global RNG, relaxed guard (see plugin.py)."""
    assert validate_estimator(ESTIMATORS[eid]) is ESTIMATORS[eid]


@pytest.mark.parametrize("eid,node", PAIRS)
def test_output_shape_with_two_batch_dims(eid, node):
    est = ESTIMATORS[eid](node)
    logits = LOGITS[node].expand(4, 5, *LOGITS[node].shape).clone().requires_grad_(True)
    f = CoupledQuadratic(node)
    out = est(logits, f, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 5)
    out.sum().backward()
    assert logits.grad.shape == logits.shape and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("eid,node", PAIRS)
def test_determinism_and_independence_from_global_rng(eid, node):
    est = ESTIMATORS[eid](node).eval()  # eval: adaptive state (an EMA baseline) stays frozen
    f = CoupledQuadratic(node)
    results = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        logits = LOGITS[node].expand(6, *LOGITS[node].shape).clone().requires_grad_(True)
        out = est(logits, f, generator=torch.Generator().manual_seed(42))
        out.sum().backward()
        results.append((out.detach(), logits.grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    logits = LOGITS[node].expand(6, *LOGITS[node].shape).clone()
    other = est(logits, f, generator=torch.Generator().manual_seed(43))
    if eid != "exact":
        assert not torch.equal(other, results[0][0]), "a different seed should change the estimate"


@pytest.mark.parametrize("eid,node", [p for p in PAIRS if not ESTIMATORS[p[0]].relaxed])
def test_non_relaxed_estimators_never_differentiate_f(eid, node):
    seen = []

    def f(z):
        seen.append((z.requires_grad, bool(((z == 0) | (z == 1)).all())))
        return CoupledQuadratic(node)(z)

    logits = LOGITS[node].clone().requires_grad_(True)
    ESTIMATORS[eid](node)(logits, f, generator=torch.Generator().manual_seed(0)).backward()
    assert seen and all(not requires_grad and discrete for requires_grad, discrete in seen)


@pytest.mark.parametrize("eid,node", PAIRS)
def test_evals_per_estimate_counts_f_evaluations(eid, node):
    est = ESTIMATORS[eid](node)
    logits = LOGITS[node]
    evaluated = []

    def f(z):
        evaluated.append(z.shape[: z.dim() - len(logits.shape)].numel())
        return CoupledQuadratic(node)(z)

    est(logits.clone().requires_grad_(True), f, generator=torch.Generator().manual_seed(0))
    assert sum(evaluated) == est.evals_per_estimate(logits.shape)


@pytest.mark.parametrize("eid,node", PAIRS)
def test_pathwise_gradient_reaches_parameters_inside_f(eid, node):
    """Parameters of f get d value / d psi; for unbiased ones its mean matches the exact one."""
    psi = torch.zeros(LOGITS[node].shape, dtype=DTYPE, requires_grad=True)
    event_dims = LOGITS[node].dim()

    def f(z):
        return ((z - psi) ** 2).sum(tuple(range(-event_dims, 0)))

    logits = LOGITS[node].clone().requires_grad_(True)
    ESTIMATORS[eid](node)(logits, f, generator=torch.Generator().manual_seed(0)).backward()
    assert psi.grad is not None and torch.isfinite(psi.grad).all() and psi.grad.abs().sum() > 0


@pytest.mark.parametrize("eid", list(ESTIMATORS))
def test_constructor_rejects_bad_sample_counts(eid):
    cls = ESTIMATORS[eid]
    node = "bernoulli" if cls.supports("bernoulli") else "categorical"
    if "samples" not in cls.default_hyperparameters():
        pytest.skip(f"{eid} has no samples hyperparameter")
    with pytest.raises(ValueError):
        cls(node, samples=cls.min_samples - 1) if cls.min_samples > 1 else cls(node, samples=0)


def test_unsupported_family_is_rejected():
    with pytest.raises(ValueError, match="does not support 'categorical'"):
        ESTIMATORS["disarm"]("categorical")


def test_f_with_wrong_output_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="one value per sample and batch element"):
        ESTIMATORS["reinforce"]("bernoulli")(LOGITS["bernoulli"], lambda z: z, generator=torch.Generator())


def test_exact_refuses_above_its_state_limit():
    est = ESTIMATORS["exact"]("bernoulli", max_states=2**10)
    with pytest.raises(NotApplicable, match="2048 states, above max_states=1024"):
        est(torch.zeros(11, dtype=DTYPE), lambda z: z.sum(-1))
