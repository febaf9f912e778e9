"""The training loop's deferred checks (the GPU path, exercised on the CPU): finiteness is
checked once per logging stride, the numbers equal a loop that checks every step, and a
divergence is reported at its first bad step. CUDA-event timing without per-step syncs."""

from __future__ import annotations

import time

import pytest
import torch

from dgbench.harness import devices
from dgbench.harness import training as training_module
from dgbench.harness.cells import run_cell
from dgbench.harness.suites import Cell
from dgbench.problems import PROBLEMS
from dgbench.problems.bernoulli_toy import BernoulliToy
from tests.helpers import SMALL_OPTIONS

SETTINGS = {"steps": 24, "optimizer": "adam", "lr": 0.01, "log_every": 3, "eval_every": 12,
            "variance_every": 8, "variance_replicas": 5}


def without_time(result):
    metrics = {k: v for k, v in result["metrics"].items() if not k.startswith(("seconds", "peak"))}
    return result["status"], metrics, [(step, name, value) for step, _wall, name, value in result["series"]]


@pytest.mark.parametrize("estimator", ["reinforce", "nvil", "gumbel-softmax"])
def test_deferred_checks_give_the_numbers_of_per_step_checks(monkeypatch, estimator):
    cell = Cell("train", "vae-bernoulli-tiny", dict(SMALL_OPTIONS["vae-bernoulli-tiny"]), estimator, {}, 0, SETTINGS)
    checked = run_cell(cell)
    monkeypatch.setattr(training_module, "defer_checks", lambda device: True)
    deferred = run_cell(cell)
    assert checked["status"] == "done" and without_time(deferred) == without_time(checked)


class NaNFromStepSix(BernoulliToy):
    id = "nan-from-step-six"
    calls = 0

    def f(self, z):
        type(self).calls += 1
        value = super().f(z)
        return value * float("nan") if type(self).calls > 5 else value


@pytest.mark.parametrize("deferred", [False, True])
def test_a_divergence_is_reported_at_its_first_bad_step_and_evaluated_before_it(monkeypatch, deferred):
    monkeypatch.setitem(PROBLEMS, "nan-from-step-six", NaNFromStepSix)
    monkeypatch.setattr(NaNFromStepSix, "calls", 0)
    monkeypatch.setattr(training_module, "defer_checks", lambda device: deferred)
    settings = {**SETTINGS, "log_every": 4, "variance_every": 100}
    result = run_cell(Cell("train", "nan-from-step-six", {"dim": 3}, "reinforce", {}, 0, settings))
    assert result["status"] == "diverged" and result["reason"] == "non-finite objective or gradient at step 6"
    assert result["metrics"]["steps_run"] == 6 and result["series"][-1][0] == 6
    assert result["metrics"]["final_exact_objective"] == result["metrics"]["final_exact_objective"]  # not NaN


class FakeEvent:
    """Stands in for torch.cuda.Event: host timestamps, and a count of syncs."""

    syncs = 0

    def __init__(self, enable_timing=False):
        self.at = None

    def record(self):
        self.at = time.perf_counter()

    def synchronize(self):
        type(self).syncs += 1

    def elapsed_time(self, end):
        return (end.at - self.at) * 1000.0


def test_the_event_stopwatch_syncs_once_when_read_not_per_block(monkeypatch):
    monkeypatch.setattr(devices.torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(devices.torch.cuda, "synchronize", lambda device=None: pytest.fail("synchronised per block"))
    watch = devices.stopwatch(torch.device("cuda:0"))
    assert isinstance(watch, devices.EventStopwatch)
    for _ in range(5):
        with watch.time():
            time.sleep(0.002)
    assert FakeEvent.syncs == 0
    assert 0.009 < watch.seconds < 0.5 and FakeEvent.syncs == 1
    watch.seconds = 2.0  # restored from a checkpoint
    with watch.time():
        pass
    assert watch.seconds >= 2.0
