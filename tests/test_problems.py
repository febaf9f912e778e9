"""Toy problems: closed forms agree with generic enumeration; options are validated."""

from __future__ import annotations

import pytest
import torch

from dgbench.harness.enumeration import exact_objective_and_gradient
from dgbench.nodes import NODE_FAMILIES
from dgbench.problems import PROBLEMS, Problem


def test_registry_ids():
    assert {"bernoulli-toy", "categorical-toy"} <= set(PROBLEMS)
    for pid, cls in PROBLEMS.items():
        assert cls.id == pid and issubclass(cls, Problem)
        assert cls.family in NODE_FAMILIES


CONFIGS = [
    ("bernoulli-toy", {}),
    ("bernoulli-toy", {"dim": 4, "target": 0.499, "init": -0.8}),
    ("bernoulli-toy", {"dim": 3, "target": 0.1, "init": 2.0}),
    ("categorical-toy", {}),
    ("categorical-toy", {"dim": 3, "categories": 4}),
    ("categorical-toy", {"dim": 2, "categories": 3, "target": "0.2,0.7,0.1", "init": "1,-1,0.5"}),
]


@pytest.mark.parametrize("pid,options", CONFIGS)
def test_closed_form_matches_enumeration(pid, options):
    problem = PROBLEMS[pid](**options)
    value, grads = exact_objective_and_gradient(problem)
    torch.testing.assert_close(value, problem.exact_objective().detach(), rtol=1e-12, atol=1e-14)
    closed = problem.exact_gradient()
    assert closed.keys() == grads.keys()
    for name in closed:
        torch.testing.assert_close(grads[name], closed[name], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("pid,options", CONFIGS)
def test_closed_form_gradient_matches_autograd_of_closed_form_objective(pid, options):
    problem = PROBLEMS[pid](**options)
    (grad,) = torch.autograd.grad(problem.exact_objective(), problem.theta)
    torch.testing.assert_close(grad, problem.exact_gradient()["theta"], rtol=1e-12, atol=1e-14)


def test_bernoulli_toy_default_gradient_value():
    # p = 1/2, t = 0.45: p (1 - p) (1 - 2t) = 0.25 * 0.1
    assert float(PROBLEMS["bernoulli-toy"]().exact_gradient()["theta"]) == pytest.approx(0.025, abs=1e-15)


def test_categorical_toy_default_target_is_documented_vector():
    torch.testing.assert_close(PROBLEMS["categorical-toy"]().t[0], torch.tensor([1 / 6, 1 / 3, 1 / 2], dtype=torch.float64))


@pytest.mark.parametrize(
    "pid,options,message",
    [
        ("bernoulli-toy", {"dim": 0}, "dim must be >= 1"),
        ("categorical-toy", {"categories": 1}, "categories must be >= 2"),
        ("categorical-toy", {"target": "0.5,0.5"}, "target needs 3 comma-separated values"),
    ],
)
def test_bad_options_are_clear_errors(pid, options, message):
    with pytest.raises(ValueError, match=message):
        PROBLEMS[pid](**options)


def test_enumeration_refuses_large_nodes():
    with pytest.raises(ValueError, match="above max_states"):
        exact_objective_and_gradient(PROBLEMS["bernoulli-toy"](dim=20), max_states=2**16)


def test_the_validation_bound_may_take_its_own_number_of_samples(monkeypatch):
    """``valid_iw_samples``: the bound a grid selects on, cheaper than the test bound."""
    import torch

    from dgbench.problems.lvm import LatentVariableModel

    drawn = []
    original = LatentVariableModel.bounds
    monkeypatch.setattr(LatentVariableModel, "bounds",
                        lambda self, x, samples: drawn.append((x.shape[0], samples)) or original(self, x, samples))
    options = {"latents": 4, "batch_size": 8, "iw_samples": 20, "valid_iw_samples": 4, "eval_examples": 10,
               "eval_splits": "valid,test"}
    problem = PROBLEMS["vae-bernoulli-digits"](**options, generator=torch.Generator().manual_seed(0))
    metrics = problem.evaluate()
    assert sorted(drawn) == [(10, 4), (10, 20)] and {"valid_iwae", "test_iwae"} <= set(metrics)
    assert problem.evaluation_examples() == pytest.approx(10 * 4 / 20 + 10)
    assert problem.evaluation_examples("valid") == pytest.approx(2.0)
    assert problem.options()["valid_iw_samples"] == 4
    with pytest.raises(ValueError, match="valid_iw_samples"):
        PROBLEMS["vae-bernoulli-digits"](**{**options, "valid_iw_samples": -1})
