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
    monkeypatch.setattr(costs, "estimator_overhead", lambda *args: costs.Overhead())
    seconds = estimate(todo, torch.device("cpu"))
    for cell in todo:
        step = 0.5 if cell.estimator == "exact" else 1e-3 * costs.evaluations(cell)
        assert seconds[cell.key] == pytest.approx(costs.UNIT_OVERHEAD["train"] + cell.settings["steps"] * step)
    monkeypatch.undo()
    assert 0 < costs.calibrate_enumeration("bernoulli-toy", {"dim": 3}, "exact", torch.device("cpu")) < 1
    assert costs.calibrate_enumeration("bernoulli-toy", {"dim": 40}, "exact", torch.device("cpu")) is None  # 2^40 states


def test_the_reference_gradient_is_priced_once_per_check_and_shared_by_gradient_statistics_cells(monkeypatch):
    """Training recomputes the reference at each variance check (an enumeration never
    checks); the gradient-statistics cells of a configuration and seed share one."""
    from dgbench.harness import costs

    suite = parse_suite(TINY.replace('include = ["reinforce",', 'include = ["exact", "reinforce",'), "tiny")
    todo = [c for c in expand(suite) if not c.skip_reason]
    reference = 2.0
    monkeypatch.setattr(costs, "calibrate", lambda *args: Calibration(0.0, 0.0, 0.0, reference_seconds=reference))
    monkeypatch.setattr(costs, "calibrate_enumeration", lambda *args: 0.0)
    monkeypatch.setattr(costs, "estimator_overhead", lambda *args: costs.Overhead())
    seconds = estimate([c for c in todo if c.kind == "train" or c.estimator != "exact"], torch.device("cpu"))
    for cell in todo:
        if cell.key not in seconds:
            continue
        if cell.kind == "gradstats":
            sharing = sum(1 for c in todo if c.kind == "gradstats" and c.problem == cell.problem
                          and c.seed == cell.seed and c.estimator != "exact")
            assert sharing > 1
            expected = reference / sharing
        elif cell.estimator == "exact":
            expected = 0.0
        else:
            expected = cell.settings["steps"] // cell.settings["variance_every"] * reference
        assert seconds[cell.key] == pytest.approx(costs.UNIT_OVERHEAD[cell.kind] + expected), (cell.kind, cell.estimator)


@pytest.mark.parametrize("problem, options, kind", [
    ("bernoulli-toy", {"dim": 3}, "closed form"),
    ("vae-bernoulli-tiny", {"latents": 6}, "enumeration"),
    ("vae-bernoulli-digits", {"latents": 32}, "sampled"),
])
def test_a_reference_is_timed_where_closed_or_enumerated_and_priced_on_the_replica_line_where_sampled(
        problem, options, kind, monkeypatch):
    from dgbench.harness import costs

    instance = costs.make_problem(problem, options, 0, torch.device("cpu"))
    enumerated = []
    original = costs.exact_objective_and_gradient
    monkeypatch.setattr(costs, "exact_objective_and_gradient", lambda p: enumerated.append(1) or original(p))
    seconds = costs.reference_seconds(instance, batch=0.25, per_replica=1e-3)
    if kind == "sampled":
        assert seconds == pytest.approx(0.25 + costs.REFERENCE_REPLICAS * costs.REFERENCE_SAMPLES * 1e-3)
    else:
        assert 0 <= seconds < 5 and enumerated == ([1] if kind == "enumeration" else [])


def test_an_estimators_overhead_beyond_its_evaluations_is_added_to_each_step_and_replica(monkeypatch):
    """A learned control variate's network costs beyond its f-evaluations: what the toys
    measured, scaled to the configuration's logit coordinates, is added to every training
    step (shared by a stacked group's members) and to every replica, of a
    gradient-statistics cell and of a training cell's variance checks."""
    from dgbench.harness import costs
    from dgbench.harness.cells import make_problem

    todo = [c for c in cells() if c.estimator in ("reinforce", "rloo")]
    monkeypatch.setattr(costs, "calibrate", lambda *args: Calibration(0.0, 0.0, 0.0))
    overhead = costs.Overhead(step=1e-3, step_per_coordinate=1e-4, replica_per_coordinate=1e-2)
    monkeypatch.setattr(costs, "estimator_overhead",
                        lambda name, *args: costs.Overhead() if name == "reinforce" else overhead)
    seconds = estimate(todo, torch.device("cpu"))
    assert {c.kind for c in todo if c.estimator == "rloo"} == {"train", "gradstats"}
    for cell in todo:
        extra = 0.0
        if cell.estimator == "rloo":
            n = costs.coordinates(make_problem(cell.problem, cell.options, 0, torch.device("cpu")))
            s = cell.settings
            if cell.kind == "train":
                checks = s["steps"] // s["variance_every"]
                extra = s["steps"] * (1e-3 + 1e-4 * n) + checks * s["variance_replicas"] * 1e-2 * n
            else:
                extra = s["replicas"] * 1e-2 * n
        assert seconds[cell.key] == pytest.approx(costs.UNIT_OVERHEAD[cell.kind] + extra)


def test_the_overhead_is_the_step_and_replica_beyond_the_toys_reinforce_lines(monkeypatch):
    """Timed on the toy at two sizes: the step's overhead beyond the REINFORCE line at the
    estimator's evaluations splits into a fixed part and a part per coordinate; a replica's
    is per coordinate of the larger toy."""
    from dgbench.harness import costs

    probe = Calibration(step_seconds=1e-3, evaluation_seconds=0.0, replica_seconds=1e-5, sample_seconds=5e-4,
                        batch_seconds=2e-3)
    monkeypatch.setattr(costs, "calibrate", lambda *args: probe)
    monkeypatch.setattr(costs, "_step_seconds", lambda problem, options, *args, **kw: 4e-3 + 1e-5 * options["dim"])
    monkeypatch.setattr(costs, "_seconds_per_call", lambda *args, **kw: 2e-3 + costs.OVERHEAD_REPLICAS * 3e-5)
    overhead = costs.estimator_overhead("rloo", torch.device("cpu"), {})
    e = 2  # rloo's default samples on the toy
    large = costs.OVERHEAD_PROBES["bernoulli"][2]["dim"]  # the toy's logits: one per unit
    assert overhead.step == pytest.approx(4e-3 - probe.step(e))
    assert overhead.step_per_coordinate == pytest.approx(1e-5)
    assert overhead.replica_per_coordinate == pytest.approx((3e-5 - e * 1e-5) / large)
    assert overhead.at(1000) == pytest.approx((4e-3 - probe.step(e) + 1e-2, (3e-5 - e * 1e-5) / large * 1000))
    monkeypatch.setattr(costs, "_step_seconds", lambda *args, **kw: 1e-4)  # faster than the line: no overhead
    monkeypatch.setattr(costs, "_seconds_per_call", lambda *args, **kw: 1e-4)
    assert costs.estimator_overhead("rloo", torch.device("cpu"), {}) == costs.Overhead()


def test_evaluations_are_counted_by_the_problem_where_they_grow_with_the_node(monkeypatch):
    """IndeCateR evaluates f once per unit and value: its class cannot know the node's size,
    the problem can (the gradient-statistics batch is priced per evaluation)."""
    from dgbench.harness import costs

    suite = parse_suite(TINY.replace('include = ["reinforce",', 'include = ["indecater", "reinforce",'), "tiny")
    todo = [c for c in expand(suite) if c.kind == "gradstats" and c.problem == "bernoulli-toy" and not c.skip_reason
            and c.estimator in ("indecater", "reinforce")]
    monkeypatch.setattr(costs, "calibrate", lambda *args: Calibration(0.0, 0.0, 1e-3))
    monkeypatch.setattr(costs, "estimator_overhead", lambda *args: costs.Overhead())
    seconds = estimate(todo, torch.device("cpu"))
    for cell in todo:
        samples = cell.hyperparameters.get("samples", 1)
        e = samples * 3 * 2 if cell.estimator == "indecater" else costs.evaluations(cell)  # dim 3, two values
        assert seconds[cell.key] == pytest.approx(costs.UNIT_OVERHEAD["gradstats"] + cell.settings["replicas"] * e * 1e-3)
    assert any(c.estimator == "indecater" for c in todo)
