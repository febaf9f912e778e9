"""Training-protocol schedules: formulas, suite validation, and their effect in a cell."""

from __future__ import annotations

import math

import pytest
import torch

from dgbench.harness import schedules
from dgbench.harness.cells import make_optimizer, run_cell
from dgbench.harness.suites import SuiteError, expand, parse_suite

BASE = """
name = "s"
seeds = 1
[budget]
samples = 1
[training]
steps = 12
lr = 0.1
log_every = 1
eval_every = 12
variance_every = 1000
{extra}
[[problems]]
id = "bernoulli-toy"
options = {{ dim = 3 }}
[estimators]
include = {estimators}
"""


def suite(extra: str = "", estimators: str = '["gumbel-softmax"]'):
    return parse_suite(BASE.format(extra=extra, estimators=estimators), "test")


def test_learning_rate_decays_in_steps():
    s = {"lr": 1.0, "lr_decay": 0.5, "lr_decay_every": 3}
    assert [schedules.learning_rate(s, t) for t in range(1, 8)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    assert schedules.learning_rate({"lr": 0.3}, 10_000) == 0.3


def test_temperature_follows_the_gumbel_softmax_papers_schedule():
    s = {"anneal_rate": 1e-3, "anneal_every": 100, "anneal_start": 1.0, "temperature_min": 0.5}
    assert schedules.temperature(s, 1) == 1.0 and schedules.temperature(s, 100) == 1.0
    assert schedules.temperature(s, 101) == pytest.approx(math.exp(-0.1))
    assert schedules.temperature(s, 250) == pytest.approx(math.exp(-0.2))
    assert schedules.temperature(s, 10_000) == 0.5  # floored at temperature_min
    assert schedules.temperature({}, 5) is None


@pytest.mark.parametrize("extra,message", [
    ("momentum = 0.9", "momentum needs optimizer"),
    ('optimizer = "sgd"\nmomentum = 1.5', r"momentum must be in \[0, 1\)"),
    ("lr_decay = 0", r"lr_decay must be in \(0, 1\]"),
    ("anneal_every = 0", "anneal_every must be an integer >= 1"),
    ("anneal_rate = -1.0", "anneal_rate must be >= 0"),
    ("anneal_start = 0.0", "anneal_start must be > 0"),
    ("compile = 1", 'compile must be true, false or "auto"'),
    ('compile = "yes"', 'compile must be true, false or "auto"'),
])
def test_suite_refuses_bad_protocol_keys(extra, message):
    with pytest.raises(SuiteError, match=message):
        suite(extra)


def test_protocol_keys_leave_other_suites_cells_unchanged():
    """Absent protocol keys are not filled into cell settings: existing results keep their keys."""
    (cell,) = expand(suite())
    assert not set(schedules.PROTOCOL_DEFAULTS) & set(cell.settings)


def test_sgd_with_momentum():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = make_optimizer("sgd", [p], 0.1, torch.device("cpu"), momentum=0.9)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9
    for _ in range(2):
        opt.zero_grad()
        p.grad = torch.ones(2)
        opt.step()
    # heavy ball: v1 = 1, v2 = 0.9 + 1; p = -0.1 * (1 + 1.9)
    torch.testing.assert_close(p.detach(), torch.full((2,), -0.29))


def _series(result, name):
    return [(step, value) for step, _, n, value in result["series"] if n == name]


def test_training_cell_anneals_the_relaxed_estimators_temperature():
    extra = "anneal_rate = 0.1\nanneal_every = 4\nanneal_start = 1.0\ntemperature_min = 0.7"
    (cell,) = expand(suite(extra))
    result = run_cell(cell)
    assert result["status"] == "done", result
    series = _series(result, "temperature")
    assert [t for t, _ in series] == list(range(1, 13))
    assert [v for _, v in series] == pytest.approx([max(0.7, math.exp(-0.1 * 4 * ((t - 1) // 4))) for t in range(1, 13)])


def test_annealing_leaves_an_estimator_without_temperature_alone():
    extra = "anneal_rate = 0.1\nanneal_every = 4"
    cells = expand(suite(extra, '["reinforce", "rebar"]'))
    for cell in cells:
        result = run_cell(cell)
        assert result["status"] == "done" and not _series(result, "temperature")


def test_decayed_learning_rate_changes_the_trajectory_only_after_the_first_decay():
    plain, decayed = (run_cell(c) for c in (*expand(suite()), *expand(suite("lr_decay = 0.1\nlr_decay_every = 6"))))
    a, b = _series(plain, "objective"), _series(decayed, "objective")
    assert a[:6] == b[:6]  # the same noise and data: identical until the decay applies
    assert a[6:] != b[6:]


def test_eval_splits_evaluate_only_what_is_named_and_train_full_is_one_draw_over_all():
    from tests.helpers import small_problem

    problem = small_problem("vae-bernoulli-digits", eval_splits="test,train_full", eval_examples=0)
    out = problem.evaluate()
    assert set(out) == {"test_elbo", "test_iwae", "train_full_elbo"}
    assert problem._train_full.shape[0] == problem.training_inputs().shape[0]  # the whole training set
    assert out["train_full_elbo"] == pytest.approx(problem.bounds(problem.training_inputs(), 1)[0])
    with pytest.raises(ValueError, match="eval_splits must name some of train, valid, test, train_full"):
        small_problem("vae-bernoulli-digits", eval_splits="dev")


def test_summed_batch_loss_scales_sgd_steps_by_the_batch_size():
    """With plain SGD, batch_loss = "sum" equals the mean loss at batch_size x the learning rate."""
    text = BASE.replace("lr = 0.1\n", "").replace('id = "bernoulli-toy"\noptions = {{ dim = 3 }}', 'id = "vae-bernoulli-digits"\noptions = {{ latents = 4, batch_size = 8, iw_samples = 2, eval_examples = 8 }}')
    summed = parse_suite(text.format(extra='optimizer = "sgd"\nbatch_loss = "sum"\nlr = 0.001', estimators='["reinforce"]'), "t")
    mean = parse_suite(text.format(extra='optimizer = "sgd"\nlr = 0.008', estimators='["reinforce"]'), "t")
    a, b = (_series(run_cell(expand(x)[0]), "objective") for x in (summed, mean))
    assert [v for _, v in a] == pytest.approx([v for _, v in b], rel=1e-4)
    with pytest.raises(SuiteError, match='batch_loss must be "mean" or "sum"'):
        suite('batch_loss = "total"')
