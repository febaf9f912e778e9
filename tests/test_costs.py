"""The cost model: dry runs compute and write nothing, cells go to workers longest first,
measured durations beat predictions."""

from __future__ import annotations

import pytest
import torch

from dgbench.harness.cli import main
from dgbench.harness.costs import Calibration, estimate, longest_first, predicted_seconds
from dgbench.harness.suites import expand, parse_suite
from tests.test_harness_run import TINY


def cells():
    return [c for c in expand(parse_suite(TINY, "tiny")) if not c.skip_reason]


def test_predictions_grow_with_steps_replicas_and_evaluations():
    calibration = Calibration(step_seconds=1e-3, evaluation_seconds=1e-2, replica_seconds=1e-4)
    by = {(c.kind, c.problem, c.estimator, c.seed): c for c in cells()}
    train = by[("train", "bernoulli-toy", "reinforce", 0)]
    assert predicted_seconds(train, calibration) > 0
    longer = type(train)(**{**train.__dict__, "settings": {**train.settings, "steps": 10 * train.settings["steps"]}})
    assert predicted_seconds(longer, calibration) > 5 * predicted_seconds(train, calibration)
    # the budget gives rloo and disarm the same evaluations, reinforce as many samples
    assert predicted_seconds(by[("gradstats", "bernoulli-toy", "disarm", 0)], calibration) == \
        predicted_seconds(by[("gradstats", "bernoulli-toy", "rloo", 0)], calibration)


def test_measured_durations_replace_predictions_and_order_the_cells():
    todo = cells()
    measured = {todo[0].key: 1000.0, todo[1].key: 500.0}
    seconds = estimate(todo, torch.device("cpu"), measured)
    assert seconds[todo[0].key] == 1000.0 and set(seconds) == {c.key for c in todo}
    ordered = longest_first(todo, seconds)
    assert ordered[:2] == todo[:2]
    assert [seconds[c.key] for c in ordered] == sorted(seconds.values(), reverse=True)


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    out = tmp_path / "never"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--dry-run", "--workers", "2"]) == 0
    line = capsys.readouterr().out.strip()
    all_cells = expand(parse_suite(TINY, "tiny"))
    skipped = sum(1 for c in all_cells if c.skip_reason)
    assert line.startswith(f"tiny: {len(all_cells)} cells ({skipped} skipped, 0 already finished), "
                           f"{len(all_cells) - skipped} to run")
    assert "stacked group(s)): about " in line  # the toys stack on the CPU by default
    assert "with 2 worker(s)" in line and "longest:" in line
    assert not out.exists()


def test_calibration_times_a_bound_evaluation_on_a_few_examples_and_scales_it(monkeypatch):
    """A 1000-sample bound over whole splits takes minutes; calibration must not run it."""
    from dgbench.harness import costs
    from dgbench.problems.lvm import LatentVariableModel

    sizes = []
    original = LatentVariableModel.evaluate

    def recording(self):
        sizes.append(self.evaluation_examples())
        return original(self)

    monkeypatch.setattr(LatentVariableModel, "evaluate", recording)
    options = {"latents": 4, "batch_size": 8, "iw_samples": 5}
    full = costs.make_problem("vae-bernoulli-digits", options, 0, costs.torch.device("cpu")).evaluation_examples()
    assert full > costs.CALIBRATION_EXAMPLES * 3
    costs.calibrate("vae-bernoulli-digits", options, costs.torch.device("cpu"))
    assert sizes and max(sizes) <= costs.CALIBRATION_EXAMPLES * 3  # at most the three capped splits


@pytest.mark.parametrize("steps, eval_every", [(20, 10), (25, 10), (7, 100)])
def test_the_model_counts_the_evaluations_training_runs(steps, eval_every, monkeypatch):
    """At every multiple of eval_every and at the last step, never at step 0."""
    from dgbench.harness import costs
    from dgbench.harness.cells import run_cell
    from dgbench.problems.registry import PROBLEMS

    calls = []
    cls = PROBLEMS["bernoulli-toy"]
    original = cls.evaluate
    monkeypatch.setattr(cls, "evaluate", lambda self: calls.append(1) or original(self))
    cell = next(c for c in cells() if c.kind == "train")
    cell = type(cell)(**{**cell.__dict__, "settings": {**cell.settings, "steps": steps, "eval_every": eval_every}})
    assert run_cell(cell)["status"] == "done"
    assert len(calls) == costs.evaluations_along(steps, eval_every)


def test_a_cheaper_validation_bound_weighs_less_in_the_cost_of_a_deferred_grid():
    from dgbench.harness import costs

    calibration = costs.calibrate("vae-bernoulli-digits", {"iw_samples": 50, "valid_iw_samples": 5}, torch.device("cpu"))
    assert calibration.split_seconds is not None and set(calibration.split_seconds) == {"train", "valid", "test"}
    cell = next(c for c in cells() if c.kind == "train")
    cell = type(cell)(**{**cell.__dict__, "problem": "vae-bernoulli-digits",
                         "options": {"eval_splits": "valid,test"},
                         "settings": {**cell.settings, "defer_splits": "test", "eval_along": "valid"}})
    along, later = costs.evaluation_shares(cell, {"valid": 1.0, "test": 10.0})
    assert along == pytest.approx(1 / 11) and later == pytest.approx(10 / 11)
    assert costs.evaluation_shares(cell) == (0.5, 0.5)  # without a calibration: splits alike


def test_an_enumeration_is_priced_by_a_timed_exact_step(monkeypatch):
    """`exact`'s cost grows with the states, not the samples: its training cells are priced
    by a timed step of `exact` itself, where it applies."""
    from dgbench.harness import costs

    suite = parse_suite(TINY.replace('include = ["reinforce",', 'include = ["exact", "reinforce",'), "tiny")
    todo = [c for c in expand(suite) if c.kind == "train" and not c.skip_reason and c.estimator in ("exact", "reinforce")]
    assert {c.estimator for c in todo} == {"exact", "reinforce"}
    monkeypatch.setattr(costs, "calibrate", lambda *args: Calibration(1e-3, 0.0, 0.0))
    monkeypatch.setattr(costs, "calibrate_enumeration", lambda *args: 0.5)
    seconds = estimate(todo, torch.device("cpu"))
    for cell in todo:
        step = 0.5 if cell.estimator == "exact" else 1e-3 * costs.evaluations(cell)
        assert seconds[cell.key] == pytest.approx(costs.UNIT_OVERHEAD + cell.settings["steps"] * step)
    monkeypatch.undo()
    assert 0 < costs.calibrate_enumeration("bernoulli-toy", {"dim": 3}, "exact", torch.device("cpu")) < 1
    assert costs.calibrate_enumeration("bernoulli-toy", {"dim": 40}, "exact", torch.device("cpu")) is None  # 2^40 states
