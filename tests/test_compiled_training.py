"""Training cells whose estimate runs as a compiled graph (``[training] compile``,
dgbench.harness.compiled): the same noise as the eager cell, the same result up to float
rounding, and an eager fallback that says why."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch

from dgbench.harness import compiled
from dgbench.harness.cli import main

SUITE = """
name = "compile-check"
description = "compiled training against eager"
seeds = 1
[budget]
evals = 1
[gradstats]
replicas = 10
[training]
steps = 30
lr = 0.01
{compile}
[[problems]]
id = "vae-bernoulli-tiny"
options = {{ latents = 4, batch_size = 8, eval_examples = 50, eval_splits = "test", iw_samples = 5 }}
[estimators]
include = {estimators}
"""


def run(tmp_path: Path, name: str, compile_line: str, estimators: str) -> dict[str, dict]:
    """Train ``estimators`` in-process; {estimator: {"reason": ..., metric: value}} of the training cells."""
    path = tmp_path / f"{name}.toml"
    path.write_text(SUITE.format(compile=compile_line, estimators=estimators))
    out = tmp_path / name
    assert main(["run", "--suite", str(path), "--out", str(out), "--in-process", "--quiet", "--workers", "1"]) == 0
    db = sqlite3.connect(out / "results.db")
    cells = {e: {"reason": r} for e, r in db.execute("select estimator, reason from cells where kind = 'train'")}
    for estimator, name_, value in db.execute("select c.estimator, m.name, m.value from cells c join metrics m "
                                              "on m.cell_key = c.key where c.kind = 'train'"):
        cells[estimator][name_] = value
    return cells


def test_compile_is_wanted_when_asked_or_for_long_cells_under_auto():
    assert not compiled.wanted({"steps": 10**6})  # absent: off
    assert compiled.wanted({"compile": True, "steps": 10})
    assert not compiled.wanted({"compile": "auto", "steps": compiled.AUTO_STEPS - 1})
    assert compiled.wanted({"compile": "auto", "steps": compiled.AUTO_STEPS})
    assert not compiled.wanted({"compile": False, "steps": 10**6})


def test_a_machine_that_cannot_compile_trains_eagerly_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(compiled, "refusal", lambda device: "no C++ compiler on the PATH (test)")
    cells = run(tmp_path, "refused", "compile = true", '["reinforce"]')
    eager = run(tmp_path, "eager", "", '["reinforce"]')
    assert cells["reinforce"]["compiled"] == 0.0 and "compiled" not in eager["reinforce"]
    assert cells["reinforce"]["reason"] == "trained eagerly, not compiled: no C++ compiler on the PATH (test)"
    assert cells["reinforce"]["final_objective"] == eager["reinforce"]["final_objective"]  # the same noise, eagerly


@pytest.mark.slow
@pytest.mark.skipif(compiled.refusal(torch.device("cpu")) is not None, reason="this machine cannot compile")
def test_compiled_cells_train_as_eager_ones_and_an_estimate_not_one_graph_falls_back(tmp_path):
    """reinforce and gumbel-softmax compile; relax calls torch.autograd.grad inside its
    estimate, so it trains eagerly, on the noise the eager cell draws, and says so. The
    problem is float64, so compiled and eager agree to rounding (1e-9 relative); with other
    noise, 5 steps already move the parameters apart by about 5e-4."""
    estimators = '["reinforce", "gumbel-softmax", "relax"]'
    fused = run(tmp_path, "compiled", "compile = true", estimators)
    eager = run(tmp_path, "eager", "", estimators)
    for estimator in ("reinforce", "gumbel-softmax"):
        assert fused[estimator]["compiled"] == 1.0 and fused[estimator]["reason"] is None
        for metric in ("final_objective", "final_test_elbo"):
            assert fused[estimator][metric] == pytest.approx(eager[estimator][metric], rel=1e-9, abs=1e-9)
    assert fused["relax"]["compiled"] == 0.0
    assert fused["relax"]["reason"].startswith("trained eagerly, not compiled: not one graph: ")
    assert fused["relax"]["final_objective"] == eager["relax"]["final_objective"]
