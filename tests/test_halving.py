"""Successive halving of grids (``--prune halving``): the rung schedule, survivors identical
to full runs, the pruning rule, resume after a stop between rungs, cost and report."""

from __future__ import annotations

import json
import sqlite3

import pytest

from dgbench import selection
from dgbench.errors import Interrupted, UsageError
from dgbench.harness import halving
from dgbench.harness.run import run
from dgbench.reports.build import build_report
from dgbench.reports.results import load

SUITE = """
name = "halved"
seeds = 2
[budget]
samples = 2
[training]
steps = 40
lr = 0.01
log_every = 5
eval_every = 40
variance_every = 100000
[grid]
lr = [0.003, 0.01, 0.03, 0.1]
[[problems]]
id = "bernoulli-toy"
options = { dim = 3 }
[estimators]
include = ["reinforce", "rloo"]
"""


def test_rungs_halve_the_points_and_double_the_steps():
    assert halving.rungs(4, 40) == [(4, 10), (2, 20), (1, 40)]
    assert halving.rungs(6, 50_000) == [(6, 12_500), (3, 25_000), (1, 50_000)]
    assert halving.rungs(24, 50_000)[0] == (24, 3_125) and halving.rungs(24, 50_000)[-1] == (1, 50_000)
    assert halving.rungs(1, 100) == [(1, 100)]  # no grid: nothing to prune
    assert halving.rungs(8, 3) == [(8, 1), (4, 3)]  # as many rungs as the steps can be halved
    steps, evaluations = halving.expected_share(6, 50_000)
    assert steps == pytest.approx((6 * 12_500 + 3 * 12_500 + 1 * 25_000) / (6 * 50_000))
    assert evaluations == pytest.approx((6 + 3) / 6)
    assert halving.expected_share(1, 10) == (1.0, 0.0)


def _status(out) -> dict[str, tuple[str, str]]:
    db = sqlite3.connect(out / "results.db")
    rows = db.execute("SELECT key, status, grid FROM cells WHERE kind = 'train'").fetchall()
    db.close()
    return {k: (s, g) for k, s, g in rows}


def _metric(out, name: str) -> dict[str, float]:
    db = sqlite3.connect(out / "results.db")
    rows = dict(db.execute("SELECT cell_key, value FROM metrics WHERE name = ?", (name,)).fetchall())
    db.close()
    return rows


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tuned suite trained in full and by successive halving."""
    base = tmp_path_factory.mktemp("halving")
    path = base / "halved.toml"
    path.write_text(SUITE)
    full = run(str(path), base / "full", in_process=True, seed_batching="off")
    halved = run(str(path), base / "halved", in_process=True, prune="halving")
    return path, base / "full", base / "halved", full, halved


def test_survivors_train_to_the_end_bit_for_bit_and_the_rest_stop_at_their_rung(runs):
    _, full, halved, _, summary = runs
    status = _status(halved)
    assert summary.counts.get("pruned") == 2 * 3 * 2  # per estimator: 3 of 4 points, 2 seeds each
    done = [k for k, (s, _) in status.items() if s == "done"]
    assert len(done) == 2 * 2  # per estimator: one point, 2 seeds
    objective_full, objective_halved = _metric(full, "final_objective"), _metric(halved, "final_objective")
    for key in done:  # paused and resumed from checkpoints: the result of an uninterrupted run
        assert objective_halved[key] == objective_full[key]
    steps = _metric(halved, "steps_run")
    assert sorted({steps[k] for k, (s, _) in status.items() if s == "pruned"}) == [10.0, 20.0]
    assert not (halved / "halving").exists() and not (halved / "checkpoints").exists()


def test_each_rung_keeps_the_better_half_by_the_mean_over_seeds(runs):
    _, _, halved, _, _ = runs
    db = sqlite3.connect(halved / "results.db")
    cells = db.execute("SELECT key, estimator, status, grid, reason FROM cells WHERE kind = 'train'").fetchall()
    value_at: dict[tuple[str, int], float] = {}
    for key, step, value in db.execute("SELECT cell_key, step, value FROM series WHERE name = 'exact_objective'"):
        value_at[(key, step)] = value
    db.close()
    for estimator in ("reinforce", "rloo"):
        mine = [c for c in cells if c[1] == estimator]
        for rung_step, survivors in ((10, 2), (20, 1)):
            at_rung = [c for c in mine if (c[0], rung_step) in value_at]
            means: dict[str, list[float]] = {}
            for key, _, _, grid, _ in at_rung:
                means.setdefault(grid, []).append(value_at[(key, rung_step)])
            ranked = sorted(means, key=lambda g: sum(means[g]) / len(means[g]))  # exact objective: lower is better
            went_on = {grid for key, _, status, grid, reason in mine
                       if status == "done" or (status == "pruned" and f"at step {rung_step}" not in reason
                                               and (key, rung_step) in value_at)}
            assert set(ranked[:survivors]) == went_on, (estimator, rung_step)
        pruned = [c for c in mine if c[2] == "pruned"]
        assert all("pruned by successive halving at step" in c[4] for c in pruned)


def test_selection_and_the_report_use_only_points_that_trained_to_the_end(runs, tmp_path):
    _, _, halved, _, _ = runs
    results = load(halved)
    sel = results.selection.set_index("estimator")
    status = _status(halved)
    for estimator in ("reinforce", "rloo"):
        done = {selection.point_label(json.loads(g)) for s, g in status.values() if s == "done"}
        assert sel.loc[estimator, "selected"] in done
        assert sel.loc[estimator, "complete"] == 4 and sel.loc[estimator, "pruned"] == 3
        assert not sel.loc[estimator, "partial"]
    build_report(halved, ["md"], tmp_path / "report")
    text = (tmp_path / "report" / "summary.md").read_text()
    assert "Pruned: successive halving (--prune halving) stopped 6 of 8 grid points early" in text
    assert "--seeds 10 --prune halving --out" in text  # more seeds under the same protocol


def test_a_halving_run_stopped_between_rungs_resumes_to_the_same_results(runs, tmp_path, monkeypatch):
    path, _, halved, _, _ = runs
    out = tmp_path / "resumed"
    original = halving.Entry.decide
    calls = []

    def stop_at_the_second_rung(self, k, *args):
        if k == 1:
            calls.append(k)
            raise KeyboardInterrupt
        return original(self, k, *args)

    monkeypatch.setattr(halving.Entry, "decide", stop_at_the_second_rung)
    with pytest.raises(Interrupted):
        run(str(path), out, in_process=True, prune="halving")
    assert calls and any((out / "halving").iterdir())  # paused results wait for the rerun
    monkeypatch.setattr(halving.Entry, "decide", original)
    summary = run(str(path), out, in_process=True, prune="halving")
    assert summary.counts.get("done") == 4
    expected, got = _metric(halved, "final_objective"), _metric(out, "final_objective")
    assert got == expected
    assert {k: s for k, (s, _) in _status(out).items()} == {k: s for k, (s, _) in _status(halved).items()}
    again = run(str(path), out, in_process=True, prune="halving")
    assert not again.counts  # nothing recomputed, nothing decided twice


def test_the_dry_run_costs_the_expected_share_and_batching_is_refused(runs, monkeypatch):
    from dgbench.harness import costs

    path, _, _, _, _ = runs
    fixed = costs.Calibration(step_seconds=1e-3, evaluation_seconds=1e-2, replica_seconds=1e-4)
    monkeypatch.setattr(costs, "calibrate", lambda *args: fixed)  # both plans priced alike, whatever the load
    monkeypatch.setattr(costs, "estimator_overhead", lambda *args: costs.Overhead())
    full = run(str(path), "/nonexistent/never", dry_run=True, seed_batching="off")  # cell by cell, as halving
    halved = run(str(path), "/nonexistent/never", dry_run=True, prune="halving")
    trained = [c for c in full.cells if c.kind == "train"]
    for cell in trained:
        assert halved.seconds[cell.key] < full.seconds[cell.key]
    for cell in trained:  # the halved cost is the model's, at the expected share of steps and rung evaluations
        cost = costs.training_cost(cell, fixed)
        assert full.seconds[cell.key] == pytest.approx(costs.UNIT_OVERHEAD["train"] + cost.seconds)
        assert halved.seconds[cell.key] == pytest.approx(costs.UNIT_OVERHEAD["train"] + cost.pruned(*halving.expected_share(4, 40)))
    with pytest.raises(UsageError, match="without --seed-batching on"):
        run(str(path), "/nonexistent/never", dry_run=True, prune="halving", seed_batching="on")
    with pytest.raises(UsageError, match="--prune must be one of"):
        run(str(path), "/nonexistent/never", dry_run=True, prune="quartering")


def test_a_database_from_before_pruning_accepts_pruned_cells(tmp_path):
    db = sqlite3.connect(tmp_path / "results.db")
    db.executescript("""
        CREATE TABLE runs (run_id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL NOT NULL, finished REAL,
                           provenance TEXT NOT NULL);
        CREATE TABLE cells (key TEXT PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(run_id),
            kind TEXT NOT NULL, problem TEXT NOT NULL, options TEXT NOT NULL, estimator TEXT NOT NULL,
            hyperparameters TEXT NOT NULL, seed INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('done', 'diverged', 'failed', 'skipped')),
            reason TEXT, traceback TEXT, started REAL, finished REAL, grid TEXT NOT NULL DEFAULT '{}');
        INSERT INTO runs VALUES (1, 0, 1, '{}');
        INSERT INTO cells VALUES ('k', 1, 'train', 'p', '{}', 'e', '{}', 0, 'done', NULL, NULL, 0, 1, '{"lr": 1}');
    """)
    db.commit()
    db.close()
    from dgbench.store import ResultStore

    store = ResultStore(tmp_path)
    store.db.execute("INSERT INTO cells VALUES ('p', 1, 'train', 'p', '{}', 'e', '{}', 1, 'pruned', NULL, NULL, "
                     "0, 1, '{}')")
    assert store.statuses({"k", "p"}) == {"k": "done", "p": "pruned"}
    assert store.db.execute("SELECT grid FROM cells WHERE key = 'k'").fetchone() == ('{"lr": 1}',)
    store.close()
