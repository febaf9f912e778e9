"""Every registered estimator on every registered problem, through `dgbench run`.

Small options and a few steps: each pair must finish (`done`) or be `skipped` with a
recorded reason; nothing may fail.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from dgbench.estimators import ESTIMATORS
from dgbench.harness.cli import main
from dgbench.problems import PROBLEMS
from tests.helpers import MNIST_PROBLEMS, SMALL_OPTIONS


def toml_value(v):
    return json.dumps(v) if isinstance(v, str) else repr(v)


@pytest.mark.slow
@pytest.mark.mnist
def test_every_estimator_runs_or_is_skipped_with_a_reason_on_every_problem(tmp_path, monkeypatch):
    entries = []
    configurations = [(pid, SMALL_OPTIONS[pid]) for pid in PROBLEMS]
    configurations.append(("vae-bernoulli-tiny", {**SMALL_OPTIONS["vae-bernoulli-tiny"], "bound_samples": 2}))
    for pid, opts in configurations:
        options = ", ".join(f"{k} = {toml_value(v)}" for k, v in opts.items())
        entries.append(f'[[problems]]\nid = "{pid}"\noptions = {{ {options} }}\n')
    suite = tmp_path / "matrix.toml"
    suite.write_text(
        'name = "matrix"\nseeds = 1\n[budget]\nevals = 4\n[gradstats]\nreplicas = 4\n'
        '[training]\nsteps = 3\nlr = 0.001\nlog_every = 1\neval_every = 3\nvariance_every = 3\nvariance_replicas = 2\n'
        + "\n".join(entries) + f'\n[estimators]\ninclude = {json.dumps(list(ESTIMATORS))}\n'
    )
    code = main(["run", "--suite", str(suite), "--out", str(tmp_path / "out"), "--workers", "1", "--quiet"])
    db = sqlite3.connect(tmp_path / "out" / "results.db")
    rows = db.execute("SELECT kind, problem, estimator, status, reason FROM cells").fetchall()
    failed = [r for r in rows if r[3] not in ("done", "skipped")]
    assert code == 0 and not failed, failed
    assert {(p, e) for _, p, e, _, _ in rows} == {(p, e) for p in PROBLEMS for e in ESTIMATORS}
    assert all(reason for _, _, _, status, reason in rows if status == "skipped")
    for _, p, e, status, reason in rows:  # an autoregressive node refuses what needs factorised units
        if PROBLEMS[p].sequential and not ESTIMATORS[e].sequential and ESTIMATORS[e].supports(PROBLEMS[p].family):
            assert status == "skipped" and "factorised units" in reason, (p, e, reason)
    trained = {(p, e) for kind, p, e, status, _ in rows if kind == "train" and status == "done"}
    for pid, cls in PROBLEMS.items():  # every estimator of the problem's family trains on it
        for eid, ecls in ESTIMATORS.items():
            if (ecls.supports(cls.family) and ecls.evals_per_sample is not None and not ecls.multi_sample_bound
                    and (ecls.sequential or not cls.sequential)):
                assert (pid, eid) in trained, (pid, eid)
    for eid, ecls in ESTIMATORS.items():  # multi-sample-bound estimators train where there is a bound
        if ecls.multi_sample_bound:
            assert ("vae-bernoulli-tiny", eid) in trained
    assert MNIST_PROBLEMS <= {p for p, _ in trained}
