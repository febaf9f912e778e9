"""Seed-batched training (dgbench.harness.seed_batching): every member's run is its own
single-seed cell's run, state is never shared, a diverging member ends alone, and a
group resumes from its checkpoint."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch
from torch import nn

from dgbench import noise
from dgbench.estimators.base import Estimator
from dgbench.estimators.registry import ESTIMATORS
from dgbench.harness import cells as cells_module
from dgbench.harness import seed_batching
from dgbench.harness import training as training_module
from dgbench.harness.cells import run_cell
from dgbench.harness.checkpoints import Checkpoint
from dgbench.harness.costs import Calibration, estimate, predicted_seconds
from dgbench.harness.seed_batching import CellGroup, StackedLinear, group_cells, refusal, run_group, train_group
from dgbench.harness.suites import TRAINING_DEFAULTS, Cell
from dgbench.problems.registry import PROBLEMS

SETTINGS = {**TRAINING_DEFAULTS, "steps": 50, "lr": 0.01, "eval_every": 25, "variance_every": 25,
            "variance_replicas": 16}
PROBLEM_OPTIONS = {  # a model with data, layers and a learned prior; a categorical toy without
    "vae-bernoulli-digits": PROBLEMS["vae-bernoulli-digits"].test_options,
    "categorical-toy": PROBLEMS["categorical-toy"].test_options,
}
SEEDS = (0, 1, 2)


def hyperparameters(cls: type[Estimator]) -> dict:
    return {"samples": 2} if cls.multi_sample and cls.min_samples <= 2 and "samples" in cls.default_hyperparameters() else {}


def training_cells(problem: str, estimator: str, settings: dict = SETTINGS) -> list[Cell]:
    hyper = hyperparameters(ESTIMATORS[estimator])
    return [Cell("train", problem, PROBLEM_OPTIONS.get(problem, {}), estimator, hyper, seed, settings) for seed in SEEDS]


def batchable() -> list[tuple[str, str]]:
    pairs = []
    for problem in PROBLEM_OPTIONS:
        for name, cls in sorted(ESTIMATORS.items()):
            if cls.multi_sample_bound and PROBLEMS[problem].multi_sample_bound_refusal(PROBLEM_OPTIONS[problem]):
                continue  # the suite skips these cells before any grouping
            if cls.supports(PROBLEMS[problem].family) and refusal(training_cells(problem, name)[0]) is None:
                pairs.append((problem, name))
    return pairs


def series(result: dict, name: str) -> list[float]:
    return [v for (_, _, n, v) in result["series"] if n == name]


def assert_same_run(single: dict, member: dict, rtol: float = 1e-5) -> None:
    assert member["status"] == single["status"], member.get("traceback") or member.get("reason")
    for name in {n for (_, _, n, _) in single["series"]}:
        a, b = series(single, name), series(member, name)
        assert len(a) == len(b), name
        if name.startswith("grad_"):  # a sampled reference per check: the same draws, loose rounding
            assert b == pytest.approx(a, rel=1e-3, abs=1e-8), name
        else:
            assert b == pytest.approx(a, rel=rtol, abs=1e-12, nan_ok=True), name
    for key, value in single["metrics"].items():
        if key.startswith("final_") or key == "steps_run":
            assert member["metrics"][key] == pytest.approx(value, rel=rtol, abs=1e-12, nan_ok=True), key


@pytest.mark.slow
@pytest.mark.parametrize("problem,estimator", batchable())
def test_every_member_trains_as_its_own_single_seed_cell(problem, estimator):
    """The objective series of the first 50 steps, the evaluations and the final metrics of
    each member agree with its single-seed cell within 1e-5 relative."""
    cells = training_cells(problem, estimator)
    grouped, per_seed = group_cells(cells)
    assert per_seed == {} and len(grouped) == 1 and isinstance(grouped[0], CellGroup)
    result = run_group(grouped[0])
    assert len(result["members"]) == len(SEEDS)
    for cell, member in zip(cells, result["members"]):
        assert_same_run(run_cell(cell), member)
        assert member["metrics"]["seed_batch_members"] == len(SEEDS)


def test_the_batchable_matrix_covers_the_score_function_and_relaxed_families():
    names = {e for _, e in batchable()}
    assert {"reinforce", "rloo", "disarm", "gumbel-softmax", "st-gumbel-softmax", "exact"} <= names
    assert {p for p, _ in batchable()} == set(PROBLEM_OPTIONS)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_an_estimator_with_state_never_batches(name):
    """Learned parts and running statistics are per seed: an estimator with any
    parameter or buffer is refused, with the state named in the reason."""
    cls = ESTIMATORS[name]
    family = "categorical" if cls.family == "categorical" else ("gaussian" if cls.family == "gaussian" else "bernoulli")
    problem = {"categorical": "categorical-toy", "gaussian": "gaussian-toy", "bernoulli": "bernoulli-toy"}[family]
    cell = Cell("train", problem, {}, name, hyperparameters(cls), 0, SETTINGS)
    instance = cls(family, **hyperparameters(cls))
    state = [n for n, _ in instance.named_parameters()] + [n for n, _ in instance.named_buffers()]
    why = refusal(cell)
    if state:
        assert why is not None and "per-seed state" in why and state[0] in why
    else:
        assert why is None


def test_refusals_name_the_problem_the_option_or_the_plugin():
    assert "does not declare seed_batching" in refusal(Cell("train", "sbn-two-layer", {}, "reinforce", {}, 0, SETTINGS))
    bound = Cell("train", "vae-bernoulli-digits", {"bound_samples": 2}, "reinforce", {}, 0, SETTINGS)
    assert "bound_samples=2" in refusal(bound)
    assert refusal(Cell("gradstats", "bernoulli-toy", {}, "reinforce", {}, 0, {"replicas": 10})) is not None
    assert refusal(Cell("train", "bernoulli-toy", {}, "reinforce", {}, 0, SETTINGS)) is None
    compiled = Cell("train", "bernoulli-toy", {}, "reinforce", {}, 0, {**SETTINGS, "compile": True})
    assert "compiled" in refusal(compiled)  # a compiled cell trains per seed, compiled

    class Plugin(Estimator):
        id = "plugin-test"
        family = "both"

        def forward(self, logits, f, *, generator):
            return f(self.node.sample(logits, 1, generator)).mean(0)

    assert "plugin" in seed_batching.estimator_refusal(Plugin, "bernoulli", {})
    Plugin.seed_batching = True
    assert seed_batching.estimator_refusal(Plugin, "bernoulli", {}) is None


def test_grouping_joins_learning_rates_keeps_other_settings_apart_and_caps_the_members():
    a = training_cells("categorical-toy", "reinforce")
    b = [Cell("train", c.problem, c.options, c.estimator, c.hyperparameters, c.seed, {**c.settings, "lr": 0.1})
         for c in a]
    longer = [Cell("train", c.problem, c.options, c.estimator, c.hyperparameters, c.seed, {**c.settings, "steps": 60})
              for c in a]
    stateful = [Cell("train", "categorical-toy", {}, "reinforce-ema", {}, s, SETTINGS) for s in SEEDS]
    grouped, per_seed = group_cells(a + b + longer + stateful)
    groups = [g for g in grouped if isinstance(g, CellGroup)]
    assert sorted(len(g) for g in groups) == [3, 6]  # the learning rates of a grid share one model
    assert {c.settings["lr"] for g in groups if len(g) == 6 for c in g.cells} == {0.01, 0.1}
    assert all({c.settings["steps"] for c in g.cells} == {60} for g in groups if len(g) == 3)
    assert sum(per_seed.values()) == 3 and all("reinforce-ema" in k for k in per_seed)
    capped, _ = group_cells(a, max_members=2)
    assert sorted(len(getattr(g, "cells", [g])) for g in capped) == [1, 2]


GRID_LRS = (0.01, 0.03, 0.1, 0.3)


@pytest.mark.parametrize("estimator", ["reinforce", "rloo", "pathwise"])
def test_members_with_their_own_learning_rates_are_bit_identical_to_separate_runs(estimator):
    """A grid's learning rates and seeds as one stacked model (float64 gaussian-toy): every
    member's objective series and final metrics equal its own cell's run exactly."""
    settings = {**SETTINGS, "steps": 60, "lr_decay": 0.9, "lr_decay_every": 20}
    hyper = {"samples": 2} if ESTIMATORS[estimator].multi_sample else {}
    cells = [Cell("train", "gaussian-toy", {}, estimator, hyper, seed, {**settings, "lr": lr})
             for seed in (0, 1) for lr in GRID_LRS]
    grouped, per_seed = group_cells(cells)
    assert per_seed == {} and len(grouped) == 1 and len(grouped[0]) == len(cells)
    members = train_group(grouped[0], torch.device("cpu"))["members"]
    for cell, member in zip(grouped[0].cells, members):
        single = run_cell(cell)
        assert member["status"] == single["status"] == "done"
        for name in ("objective", "exact_objective"):
            assert series(member, name) == series(single, name), (cell.settings["lr"], name)
        assert member["metrics"]["final_exact_objective"] == single["metrics"]["final_exact_objective"]
    finals = {c.settings["lr"]: m["metrics"]["final_exact_objective"] for c, m in zip(grouped[0].cells, members)}
    assert len(set(finals.values())) == len(GRID_LRS)  # the rates were applied, not shared


def test_a_diverging_member_with_its_own_learning_rate_ends_alone(monkeypatch):
    poison(seed=1, at_call=8, monkeypatch=monkeypatch)
    settings = {**SETTINGS, "steps": 20, "log_every": 5, "eval_every": 10, "variance_every": 1000}
    cells = [Cell("train", "vae-bernoulli-digits", PROBLEM_OPTIONS["vae-bernoulli-digits"], "rloo", {"samples": 2},
                  seed, {**settings, "lr": lr}) for seed in (0, 1) for lr in (0.003, 0.03)]
    (group,), _ = group_cells(cells)
    result = train_group(group, torch.device("cpu"))["members"]
    assert [r["status"] for r in result] == ["done", "done", "diverged", "diverged"]
    for cell, member in zip(group.cells, result):
        assert_same_run(run_cell(cell), member)


def test_member_noise_is_each_members_single_seed_draw():
    gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
    like = torch.zeros(2, 5, dtype=torch.float64)
    u = noise.uniform((7, 2, 5), noise.MemberGenerators(gens, axis=1), like)
    for m, seed in enumerate((3, 4)):
        expected = noise.uniform((7, 5), torch.Generator().manual_seed(seed), like)
        assert torch.equal(u[:, m], expected)
    with pytest.raises(ValueError, match="no member dim of size 2"):
        noise.uniform((7, 3, 5), noise.MemberGenerators(gens, axis=1), like)


def test_stacked_linear_is_each_members_layer():
    gen = torch.Generator().manual_seed(0)
    layers = [nn.Linear(4, 3).double() for _ in range(2)]
    for layer in layers:
        with torch.no_grad():
            layer.weight.copy_(torch.randn(3, 4, generator=gen))
            layer.bias.copy_(torch.randn(3, generator=gen))
    stacked = StackedLinear(layers, rows=1)
    x = torch.randn(5, 2, 6, 4, generator=gen, dtype=torch.float64)  # (S, M, B, in)
    y = stacked(x)
    assert y.shape == (5, 2, 6, 3)
    for m, layer in enumerate(layers):
        torch.testing.assert_close(y[:, m], layer(x[:, m]))


def poison(seed: int, at_call: int, monkeypatch) -> None:
    """Make seed ``seed``'s minibatch NaN from its ``at_call``-th next_batch on, in single
    cells and groups alike."""
    original = cells_module.make_problem

    def make_problem(problem_id, options, s, device, dtype=None):
        problem = original(problem_id, options, s, device, dtype)
        if s == seed:
            calls = [0]
            step = problem.next_batch

            def next_batch(generator):
                step(generator)
                calls[0] += 1
                if calls[0] >= at_call:
                    problem.x = torch.full_like(problem.x, float("nan"))

            problem.next_batch = next_batch
        return problem

    monkeypatch.setattr(cells_module, "make_problem", make_problem)
    monkeypatch.setattr(seed_batching, "make_problem", make_problem)


@pytest.mark.parametrize("deferred", [False, True], ids=["checked-every-step", "deferred-checks"])
def test_a_diverging_member_ends_alone_as_its_own_cell_would(monkeypatch, deferred):
    poison(seed=1, at_call=12, monkeypatch=monkeypatch)
    monkeypatch.setattr(training_module, "defer_checks", lambda device: deferred)
    settings = {**SETTINGS, "steps": 30, "log_every": 5, "eval_every": 10, "variance_every": 1000}
    cells = training_cells("vae-bernoulli-digits", "rloo", settings)
    result = train_group(CellGroup(tuple(cells)), torch.device("cpu"))["members"]
    assert [r["status"] for r in result] == ["done", "diverged", "done"]
    assert result[1]["reason"] == "non-finite objective or gradient at step 12"
    assert result[1]["metrics"]["steps_run"] == 12 and result[0]["metrics"]["steps_run"] == 30
    for cell, member in zip(cells, result):
        assert_same_run(run_cell(cell), member)


def test_a_group_resumes_from_its_checkpoint_with_the_same_series(tmp_path):
    settings = {**SETTINGS, "steps": 30, "eval_every": 10, "variance_every": 15}
    group = CellGroup(tuple(training_cells("vae-bernoulli-digits", "disarm", settings)))
    whole = train_group(group, torch.device("cpu"))["members"]
    checkpoint = Checkpoint(tmp_path / "group.pt", group.key, every_seconds=0.0)
    train_group(group, torch.device("cpu"), checkpoint)  # saves after every step but the last
    saved = checkpoint.load()
    assert saved["step"] == 29
    resumed = train_group(group, torch.device("cpu"), Checkpoint(tmp_path / "group.pt", group.key, 1e9))["members"]
    for a, b in zip(whole, resumed):
        assert b["reason"] == "resumed from a checkpoint at step 29"
        for name in ("objective", "test_elbo", "grad_variance_mean"):
            assert series(b, name) == series(a, name), name


def test_a_group_costs_its_members_at_a_stacked_step(monkeypatch):
    """A group is one unit whose members' steps cost a stacked step's share each."""
    from dgbench.harness import costs

    cells = training_cells("categorical-toy", "reinforce")
    group = CellGroup(tuple(cells))
    monkeypatch.setattr(costs, "calibrate", lambda *args: Calibration(1e-3, 0.0, 0.0))
    monkeypatch.setattr(costs, "calibrate_stacked", lambda problem, options, members, device: 2.5e-4)
    monkeypatch.setattr(costs, "estimator_overhead", lambda *args: costs.Overhead())
    seconds = estimate(cells + [group], torch.device("cpu"))
    steps, e = cells[0].settings["steps"], costs.evaluations(cells[0])
    assert seconds[cells[0].key] == pytest.approx(costs.UNIT_OVERHEAD["train"] + steps * 1e-3 * e)
    assert seconds[group.key] == pytest.approx(costs.UNIT_OVERHEAD["train"] + len(cells) * steps * 2.5e-4 * e)
    assert predicted_seconds(cells[0], Calibration(1.0, 0.0, 0.0)) > 0


def test_a_stacked_step_is_timed_per_member():
    from dgbench.harness.costs import calibrate_stacked

    per_member = calibrate_stacked("categorical-toy", {}, 3, torch.device("cpu"))
    assert 0 < per_member < 1


@pytest.mark.slow
def test_run_with_seed_batching_stores_each_seed_as_its_own_cell(tmp_path, monkeypatch):
    """`dgbench run --seed-batching on` stores the cells `off` stores, with the same
    results, and its provenance counts the groups and why other cells ran per seed."""
    from dgbench.harness.run import run

    results = {}
    for mode in ("on", "off"):
        out = tmp_path / mode
        run("smoke", out, problems=["categorical-toy"], estimators=["reinforce", "rloo", "reinforce-ema"], seeds=3,
            workers=1, progress=False, seed_batching=mode, in_process=True)
        db = sqlite3.connect(out / "results.db")
        results[mode] = {(k, n): v for k, n, v in db.execute(
            "SELECT cell_key, name, value FROM metrics WHERE name LIKE 'final_%'")}
        info = json.loads(db.execute("SELECT provenance FROM runs").fetchone()[0])
        if mode == "on":
            assert info["seed_batching"]["groups"] == 2 and info["seed_batching"]["grouped_cells"] == 6
            assert list(info["seed_batching"]["per_seed"].values()) == [3]
        else:
            assert info["seed_batching"] is False
        statuses = [s for (s,) in db.execute("SELECT status FROM cells WHERE kind = 'train'")]
        assert statuses == ["done"] * 9
    assert results["on"].keys() == results["off"].keys()
    for key, value in results["off"].items():
        assert results["on"][key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("estimator", ["rloo", "gumbel-softmax"])
def test_a_group_on_cuda_matches_its_single_seed_cells_there(estimator):
    """On a GPU (finiteness checked at logging strides), members still run as their cells."""
    settings = {**SETTINGS, "steps": 30, "log_every": 10, "eval_every": 15, "variance_every": 15}
    cells = training_cells("vae-bernoulli-digits", estimator, settings)
    result = train_group(CellGroup(tuple(cells)), torch.device("cuda"))["members"]
    for cell, member in zip(cells, result):
        assert_same_run(run_cell(cell, "cuda"), member, rtol=1e-4)


def test_auto_on_the_cpu_stacks_where_overhead_dominates():
    """``--seed-batching auto`` on the CPU stacks the toys and the digits VAEs, never an
    MNIST-sized VAE (GEMM-bound) nor enumeration (arithmetic-bound)."""
    def stacked(problem: str, estimator: str, options: dict) -> bool:
        cells = [Cell("train", problem, options, estimator, {}, seed, SETTINGS) for seed in SEEDS]
        units, per_seed = group_cells(cells, cpu_auto=True)
        return len(units) == 1

    assert PROBLEMS["categorical-toy"].stacks_on_cpu_with({}) and PROBLEMS["vae-bernoulli-tiny"].stacks_on_cpu_with({})
    assert not PROBLEMS["vae-bernoulli-linear"].stacks_on_cpu_with({})
    assert stacked("categorical-toy", "reinforce", PROBLEM_OPTIONS["categorical-toy"])
    assert stacked("vae-bernoulli-digits", "reinforce", PROBLEM_OPTIONS["vae-bernoulli-digits"])
    assert not stacked("vae-bernoulli-digits", "exact", PROBLEM_OPTIONS["vae-bernoulli-digits"])
    assert not ESTIMATORS["exact"].stacks_on_cpu and ESTIMATORS["reinforce"].stacks_on_cpu
    # without cpu_auto (CUDA, or --seed-batching on) the digits' enumeration stacks too
    cells = [Cell("train", "vae-bernoulli-digits", PROBLEM_OPTIONS["vae-bernoulli-digits"], "exact", {}, s, SETTINGS)
             for s in SEEDS]
    assert len(group_cells(cells)[0]) == 1
