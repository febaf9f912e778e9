"""Estimators from parts: the score-function core with pluggable baselines.

``score-function`` with each baseline is, bit for bit, the published estimator built on
the same part; a suite crosses baselines as ``variants`` without new code, and a variant's
cells equal the published estimator's on the same seeds."""

from __future__ import annotations

import sqlite3

import pytest
import torch

from dgbench.estimators import ESTIMATORS
from dgbench.estimators.score_function_estimator import CHOICES
from dgbench.harness.cli import main
from dgbench.harness.suites import SuiteError, expand, parse_suite

PUBLISHED = {"none": ("reinforce", {}), "ema": ("reinforce-ema", {}), "loo": ("rloo", {}),
             "optimal": ("reinforce-optimal", {}), "network": ("nvil", {"decay": 0.8})}


def objective(node):
    if node == "bernoulli":
        return lambda z: ((z - 0.45) ** 2).sum(-1) + z[..., 0] * z[..., 1]
    return lambda z: ((z - torch.tensor([0.2, 0.3, 0.5], dtype=z.dtype)) ** 2).sum((-1, -2)) + z[..., 0, 0] * z[..., 1, 2]


def test_every_choice_has_a_published_counterpart():
    assert set(PUBLISHED) == set(CHOICES)


@pytest.mark.parametrize("node", ["bernoulli", "categorical"])
@pytest.mark.parametrize("baseline", CHOICES)
def test_score_function_with_each_baseline_is_its_published_estimator(node, baseline):
    eid, extra = PUBLISHED[baseline]
    shape = (2, 5) if node == "bernoulli" else (2, 2, 3)
    samples = 3
    published = ESTIMATORS[eid](node, samples=samples)
    generic = ESTIMATORS["score-function"](node, samples=samples, baseline=baseline, **extra)
    f = objective(node)
    for est in (published, generic):
        logits = torch.zeros(shape, dtype=torch.float64)
        with torch.no_grad():
            est(logits, f, generator=torch.Generator().manual_seed(0))  # gives lazy parameters their shapes
        est.randomize_state(torch.Generator().manual_seed(1))
    results = []
    for est in (published, generic):
        est.train()
        calls, generator = [], torch.Generator().manual_seed(2)
        for _ in range(3):  # state updates (moving averages, the learned network's loss) included
            logits = torch.linspace(-1, 1, torch.Size(shape).numel(), dtype=torch.float64).reshape(shape).requires_grad_(True)
            value = est(logits, f, generator=generator)
            (grad,) = torch.autograd.grad(value.sum(), logits)
            aux = est.auxiliary_loss()
            calls.append((value.detach(), grad, None if aux is None else aux.detach()))
        results.append((calls, {k: v.clone() for k, v in est.state_dict().items()}))
    (calls_a, state_a), (calls_b, state_b) = results
    for (va, ga, la), (vb, gb, lb) in zip(calls_a, calls_b):
        assert torch.equal(va, vb) and torch.equal(ga, gb) and (la is None) == (lb is None)
        assert la is None or torch.equal(la, lb)
    assert state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_bad_baselines_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="baseline must be one of none, ema, loo, optimal, network"):
        ESTIMATORS["score-function"]("bernoulli", baseline="taylor")
    with pytest.raises(ValueError, match="baseline 'loo' needs samples >= 2"):
        ESTIMATORS["score-function"]("bernoulli", samples=1, baseline="loo")


VARIANTS = """
name = "crossed"
seeds = 2
[budget]
evals = 3
[gradstats]
replicas = 40
[training]
steps = 15
eval_every = 5
variance_every = 5
variance_replicas = 8
[[problems]]
id = "bernoulli-toy"
options = { dim = 3 }
[[problems]]
id = "categorical-toy"
[estimators]
include = ["reinforce", "rloo"]
variants = { sf-none = { estimator = "score-function", baseline = "none" }, sf-loo = { estimator = "score-function" }, sf-ema = { estimator = "score-function", baseline = "ema", decay = 0.5 } }
"""


def test_a_suite_crosses_baselines_as_variants_and_their_cells_equal_the_published_ones(tmp_path):
    suite = parse_suite(VARIANTS, "crossed")
    assert suite.estimators == ["reinforce", "rloo", "sf-none", "sf-loo", "sf-ema"]
    cells = expand(suite)
    assert {c.estimator: c.variant_of for c in cells}["sf-ema"] == "score-function"
    assert all(c.hyperparameters["samples"] == 3 for c in cells)  # the budget sets every variant's samples
    path = tmp_path / "crossed.toml"
    path.write_text(VARIANTS)
    out = tmp_path / "out"
    assert main(["run", "--suite", str(path), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    with sqlite3.connect(out / "results.db") as db:
        metrics = {}
        for estimator, kind, problem, seed, name, value in db.execute(
                "SELECT c.estimator, c.kind, c.problem, c.seed, m.name, m.value FROM cells c JOIN metrics m "
                "ON m.cell_key = c.key WHERE m.name NOT LIKE 'seconds%'"):
            metrics.setdefault(estimator, {})[(kind, problem, seed, name)] = value
        catalog = dict(db.execute("SELECT id, info FROM catalog WHERE kind = 'estimator'"))
    assert metrics["sf-none"] == metrics["reinforce"] and metrics["sf-loo"] == metrics["rloo"]
    assert metrics["sf-ema"] != metrics["reinforce"]
    assert '"variant_of": "score-function"' in catalog["sf-ema"] and '"decay": 0.5' in catalog["sf-ema"]
    from dgbench.reports.build import build_report

    build_report(out, ["md"])
    markdown = (out / "report" / "summary.md").read_text()
    assert "variant of score-function (baseline=ema, decay=0.5)" in markdown


@pytest.mark.parametrize("variants, message", [
    ('{ rloo = { estimator = "score-function" } }', "variants.rloo: a variant needs an id of its own"),
    ('{ x = { estimator = "nope" } }', "variants.x.estimator: unknown estimator 'nope'"),
    ('{ x = { estimator = "score-function", colour = 1 } }', "variants.x: unknown key 'colour'"),
    ('{ x = { estimator = "score-function", baseline = "bogus" } }', "variants.x: baseline must be one of"),
])
def test_malformed_variants_name_the_key(variants, message):
    text = VARIANTS.replace(VARIANTS.splitlines()[-1], f"variants = {variants}")
    with pytest.raises(SuiteError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_suite(text, "crossed")


RELAXED = {"soft": "gumbel-softmax", "st": "st-gumbel-softmax", "rao": "gumbel-rao", "mean": "straight-through",
           "reinmax": "reinmax"}


def test_every_relaxed_part_has_a_published_counterpart():
    from dgbench.estimators.relaxed_estimator import CHOICES as RELAXED_CHOICES

    assert set(RELAXED) == set(RELAXED_CHOICES)


@pytest.mark.parametrize("node", ["bernoulli", "categorical"])
@pytest.mark.parametrize("gradient", list(RELAXED))
def test_relaxed_with_each_part_is_its_published_estimator(node, gradient):
    shape = (2, 5) if node == "bernoulli" else (2, 2, 3)
    f = objective(node)
    out = []
    for est in (ESTIMATORS[RELAXED[gradient]](node, samples=3), ESTIMATORS["relaxed"](node, samples=3, gradient=gradient)):
        assert est.noise_shape(torch.Size(shape)) == ESTIMATORS[RELAXED[gradient]](node, samples=3).noise_shape(torch.Size(shape))
        logits = torch.linspace(-1, 1, torch.Size(shape).numel(), dtype=torch.float64).reshape(shape).requires_grad_(True)
        value = est(logits, f, generator=torch.Generator().manual_seed(4))
        out.append((value.detach(), torch.autograd.grad(value.sum(), logits)[0]))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])


def test_relaxed_refuses_unknown_parts():
    with pytest.raises(ValueError, match="gradient must be one of soft, st, rao, mean, reinmax"):
        ESTIMATORS["relaxed"]("bernoulli", gradient="bogus")


@pytest.mark.parametrize("node,shape", [("bernoulli", (2, 3)), ("categorical", (2, 3, 4))])
def test_straight_through_temperature_scales_the_backward_slope(node, shape):
    """ST at temperature tau backpropagates through probs(logits / tau): the same hard
    samples and value, the gradient of the mean at logits / tau divided by tau; the
    ``relaxed`` core with ``gradient = "mean"`` takes the same temperature."""
    event = 1 if node == "bernoulli" else 2

    def f(z):  # linear in z: (S, 2, 3[, 4]) -> (S, 2)
        return (z * torch.arange(1.0, 1.0 + z.shape[-1], dtype=z.dtype)).flatten(-event).sum(-1)

    logits = torch.linspace(-1, 1, torch.Size(shape).numel(), dtype=torch.float64).reshape(shape).requires_grad_(True)
    grads = []
    for est in (ESTIMATORS["straight-through"](node, temperature=0.5),
                ESTIMATORS["relaxed"](node, gradient="mean", temperature=0.5)):
        value = est(logits, f, generator=torch.Generator().manual_seed(3))
        grads.append(torch.autograd.grad(value.sum(), logits)[0])
    assert torch.equal(grads[0], grads[1])
    scaled = (logits / 0.5).detach().requires_grad_(True)
    mean = torch.sigmoid(scaled) if node == "bernoulli" else torch.softmax(scaled, -1)
    expected = torch.autograd.grad(f(mean.unsqueeze(0)).sum(), scaled)[0] / 0.5
    # f is linear: every draw's straight-through gradient is f' through the mean's Jacobian
    torch.testing.assert_close(grads[0], expected)
    assert not torch.allclose(grads[0], torch.autograd.grad(
        ESTIMATORS["straight-through"](node)(logits, f, generator=torch.Generator().manual_seed(3)).sum(), logits)[0])
