"""Checkpoints of training cells: a cell interrupted mid-way and resumed from its last
checkpoint produces exactly the series and metrics of an uninterrupted run (CPU)."""

from __future__ import annotations

import pytest

from dgbench.harness.cells import run_cell
from dgbench.harness.checkpoints import Checkpoint, checkpoint_path
from dgbench.harness.suites import Cell
from tests.helpers import SMALL_OPTIONS

SETTINGS = {"steps": 24, "optimizer": "adam", "lr": 0.01, "log_every": 1, "eval_every": 8,
            "variance_every": 8, "variance_replicas": 5}


class Crash(Exception):
    pass


class CrashAfterSaving(Checkpoint):
    """Saves like a real checkpoint, then dies at ``crash_at`` as a killed worker would."""

    crash_at = 13

    def save(self, state):
        super().save(state)
        if state["step"] == self.crash_at:
            raise Crash(f"simulated crash after step {self.crash_at}")


def without_time(result):
    metrics = {k: v for k, v in result["metrics"].items() if not k.startswith(("seconds", "peak"))}
    return metrics, [(step, name, value) for step, _wall, name, value in result["series"]]


@pytest.mark.parametrize("problem", ["bernoulli-toy", "vae-bernoulli-tiny"])
@pytest.mark.parametrize("estimator", ["nvil", "relax", "reinforce-ema", "rebar", "gumbel-softmax"])
def test_a_cell_resumed_from_its_checkpoint_equals_an_uninterrupted_run(tmp_path, problem, estimator):
    cell = Cell("train", problem, dict(SMALL_OPTIONS[problem]), estimator, {}, 0, SETTINGS)
    whole = run_cell(cell)
    path = checkpoint_path(tmp_path, cell.key)
    crashed = run_cell(cell, checkpoint=CrashAfterSaving(path, cell.key, every_seconds=0))
    assert crashed["status"] == "failed" and "simulated crash" in crashed["reason"] and path.exists()
    resumed = run_cell(cell, checkpoint=Checkpoint(path, cell.key, every_seconds=3600))
    assert whole["status"] == resumed["status"] == "done"
    assert resumed["reason"] == "resumed from a checkpoint at step 13"
    assert without_time(resumed) == without_time(whole)


def test_a_checkpoint_of_another_cell_or_an_unreadable_one_is_ignored(tmp_path):
    cell = Cell("train", "bernoulli-toy", {"dim": 3}, "reinforce", {}, 0, SETTINGS)
    other = Cell("train", "bernoulli-toy", {"dim": 3}, "reinforce", {}, 1, SETTINGS)
    path = checkpoint_path(tmp_path, cell.key)
    run_cell(other, checkpoint=CrashAfterSaving(path, other.key, every_seconds=0))  # another cell's state at this path
    assert run_cell(cell, checkpoint=Checkpoint(path, cell.key))["reason"] is None  # started over
    path.write_bytes(b"not a checkpoint")
    result = run_cell(cell, checkpoint=Checkpoint(path, cell.key))
    assert result["status"] == "done" and result["reason"] is None
