"""Suites, the results store, resumable runs, crash safety, export and `dgbench run` errors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dgbench.harness.cells import run_cell
from dgbench.harness.cli import main
from dgbench.harness.suites import SuiteError, available_suites, expand, load_suite, parse_suite

ROOT = Path(__file__).resolve().parent.parent
TINY = """
name = "tiny"
seeds = 2
[budget]
evals = 2
[gradstats]
replicas = 50
[training]
steps = 20
eval_every = 10
variance_every = 10
variance_replicas = 20
[[problems]]
id = "bernoulli-toy"
options = { dim = 3 }
[[problems]]
id = "categorical-toy"
[estimators]
include = ["reinforce", "rloo", "disarm", "gumbel-softmax"]
"""


def tiny(tmp_path, text=TINY, name="tiny.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def db_rows(directory, query):
    with sqlite3.connect(Path(directory) / "results.db") as db:
        return db.execute(query).fetchall()


def test_shipped_suites_are_valid():
    assert {"smoke", "quick", "full"} <= set(available_suites())
    for name in available_suites():
        assert expand(load_suite(name))


def test_expand_records_incompatible_pairs_as_skipped_and_applies_budget(tmp_path):
    cells = expand(parse_suite(TINY, "tiny"))
    assert len(cells) == 2 * 4 * 2 * 2  # problems x estimators x seeds x kinds
    oracle = [c for c in expand(parse_suite(TINY.replace('"reinforce",', '"exact", "reinforce",'), "t")) if c.estimator == "exact"]
    assert {c.kind: c.skip_reason is None for c in oracle} == {"gradstats": False, "train": True}
    skipped = [c for c in cells if c.skip_reason]
    assert {c.estimator for c in skipped} == {"disarm"} and {c.problem for c in skipped} == {"categorical-toy"}
    by_id = {c.estimator: c for c in cells if c.problem == "bernoulli-toy"}
    assert by_id["rloo"].hyperparameters["samples"] == 2       # evals=2, 1 eval per sample
    assert by_id["disarm"].hyperparameters["samples"] == 1     # one antithetic pair = 2 evals
    assert len({c.key for c in cells}) == len(cells)


def test_cell_keys_do_not_depend_on_the_estimator_for_seeds():
    from dgbench.harness.seeding import derive_seed

    cells = [c for c in expand(parse_suite(TINY, "tiny")) if c.kind == "train" and c.seed == 0 and c.problem == "bernoulli-toy"]
    seeds = {derive_seed("train", c.problem, c.options, c.seed) for c in cells}
    assert len(seeds) == 1


@pytest.mark.parametrize(
    "change,message",
    [
        (("seeds = 2", "seeds = 0"), "seeds must be an integer >= 1"),
        (("steps = 20", "steps = -5"), "training.steps must be an integer >= 1"),
        (("evals = 2", "evals = 2\nsamples = 1"), "exactly one of 'samples' or 'evals'"),
        (('id = "categorical-toy"', 'id = "nope"'), "problems[1].id: unknown problem 'nope'"),
        (('"gumbel-softmax"]', '"gumbel-softmax", "bogus"]'), "unknown estimator 'bogus'"),
        (("replicas = 50", "replicas = 50\ncolour = 1"), "gradstats: unknown key 'colour'"),
        (("options = { dim = 3 }", "options = { size = 3 }"), "problems[0].options: unknown key 'size'"),
        (("name = \"tiny\"", "name = "), "not valid TOML"),
        (("seeds = 2", "seeds = 2\ncell_timeout = 0"), "cell_timeout must be a finite positive number of seconds"),
    ],
)
def test_malformed_suites_name_the_key(change, message):
    with pytest.raises(SuiteError) as info:
        parse_suite(TINY.replace(*change), "tiny.toml")
    assert message in str(info.value)


def test_run_resume_and_export(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", "--suite", tiny(tmp_path), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    first = db_rows(out, "SELECT key, status, finished FROM cells ORDER BY key")
    assert len(first) == 32
    assert {s for _, s, _ in first} == {"done", "skipped"}
    assert db_rows(out, "PRAGMA journal_mode")[0][0] == "wal"
    # Every done training cell has objective series and final metrics.
    n_train = db_rows(out, "SELECT COUNT(*) FROM cells WHERE kind='train' AND status='done'")[0][0]
    assert db_rows(out, "SELECT COUNT(DISTINCT cell_key) FROM series WHERE name='objective'")[0][0] == n_train
    assert db_rows(out, "SELECT COUNT(*) FROM metrics WHERE name='seconds_per_step'")[0][0] == n_train
    provenance = json.loads(db_rows(out, "SELECT provenance FROM runs")[0][0])
    assert {"git_commit", "torch_version", "cpu", "threads_per_worker", "device"} <= provenance.keys()

    capsys.readouterr()
    assert main(["run", "--suite", tiny(tmp_path), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert "32 already finished; this run: 0 done, 0 diverged, 0 skipped, 0 failed" in capsys.readouterr().out
    assert db_rows(out, "SELECT key, status, finished FROM cells ORDER BY key") == first

    assert main(["export", str(out), "--format", "csv"]) == 0
    import pandas as pd

    metrics = pd.read_csv(out / "export" / "metrics.csv")
    assert {"cell", "problem", "estimator", "seed", "name", "value"} <= set(metrics.columns)
    assert (out / "export" / "series.csv").stat().st_size > 0


def test_gradstats_cells_are_identical_across_worker_counts(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    suite = tiny(tmp_path)
    assert main(["run", "--suite", suite, "--out", str(one), "--workers", "1", "--quiet", "--seeds", "1"]) == 0
    assert main(["run", "--suite", suite, "--out", str(two), "--workers", "2", "--quiet", "--seeds", "1"]) == 0
    query = ("SELECT c.key, m.name, m.value FROM metrics m JOIN cells c ON c.key = m.cell_key "
             "WHERE m.name NOT LIKE 'seconds%' ORDER BY c.key, m.name")
    assert db_rows(one, query) == db_rows(two, query)


def test_failing_cell_is_recorded_with_traceback_and_matrix_continues(tmp_path, monkeypatch):
    from dgbench.harness import cells as cells_module

    def boom(cell, device, **files):
        raise RuntimeError("injected failure")

    monkeypatch.setitem(cells_module.RUNNERS, "gradstats", boom)
    out = tmp_path / "res"
    assert main(["run", "--suite", tiny(tmp_path), "--out", str(out), "--in-process", "--quiet", "--seeds", "1"]) == 1
    failed = db_rows(out, "SELECT reason, traceback FROM cells WHERE status='failed'")
    assert failed and all("injected failure" in r and "Traceback" in t for r, t in failed)
    assert db_rows(out, "SELECT COUNT(*) FROM cells WHERE kind='train' AND status='done'")[0][0] > 0


def test_divergence_is_recorded_with_its_step(monkeypatch):
    from dgbench.harness.suites import Cell
    from dgbench.problems import PROBLEMS
    from dgbench.problems.bernoulli_toy import BernoulliToy

    class NaNAfterFiveSteps(BernoulliToy):
        id = "nan-after-five"
        calls = 0

        def f(self, z):
            type(self).calls += 1
            value = super().f(z)
            return value * float("nan") if type(self).calls > 5 else value

    monkeypatch.setitem(PROBLEMS, "nan-after-five", NaNAfterFiveSteps)
    settings = {"steps": 20, "optimizer": "adam", "lr": 0.05, "log_every": 1, "eval_every": 10,
                "variance_every": 100, "variance_replicas": 10}
    result = run_cell(Cell("train", "nan-after-five", {}, "reinforce", {}, 0, settings))
    assert result["status"] == "diverged" and result["reason"].endswith("at step 6")
    assert result["series"][-1][0] == 6 and result["metrics"]["steps_run"] == 6


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--suite", "nope"], "unknown suite 'nope' (valid: full, quick, relax-toy, smoke, standard"),
        (["--suite", "smoke", "--problems", "vae"], "problem 'vae' is not in suite 'smoke'"),
        (["--suite", "smoke", "--estimators", "nope"], "estimator 'nope' is not in suite 'smoke'"),
        (["--suite", "smoke", "--seeds", "0"], "--seeds must be between 1 and"),
        (["--suite", "smoke", "--workers", "0"], "--workers must be between 1 and"),
        (["--suite", "smoke", "--cell-timeout", "0"], "--cell-timeout must be a finite positive number of seconds"),
        (["--suite", "smoke", "--threads", "0"], "--threads must be between 1 and"),
        (["--suite", "smoke", "--checkpoint-every", "-1"], "--checkpoint-every must be a finite positive number"),
        (["--suite", "smoke", "--in-process", "--backend", "dask"], "--in-process needs --backend local"),
    ],
)
def test_run_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert main(["run", *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_output_directory_of_another_suite_is_refused(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", "--suite", tiny(tmp_path), "--out", str(out), "--workers", "1", "--quiet", "--seeds", "1", "--estimators", "reinforce"]) == 0
    assert main(["run", "--suite", "smoke", "--out", str(out)]) == 2
    assert "holds results of suite 'tiny', not 'smoke'" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkill_mid_matrix_then_resume_keeps_every_cell_exactly_once(tmp_path):
    out = tmp_path / "res"
    suite = tiny(tmp_path, TINY.replace("steps = 20", "steps = 400").replace("seeds = 2", "seeds = 3"))
    cmd = [sys.executable, "-m", "dgbench.harness.cli", "run", "--suite", suite, "--out", str(out), "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    written = 0
    while time.time() < deadline:
        time.sleep(0.2)
        if (out / "results.db").exists():
            try:
                written = db_rows(out, "SELECT COUNT(*) FROM cells")[0][0]
            except sqlite3.OperationalError:
                continue
            if written >= 8:
                break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    total = len(expand(load_suite(suite)))
    assert 0 < written < total, "the kill should land mid-matrix"
    assert db_rows(out, "PRAGMA integrity_check")[0][0] == "ok"
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    keys = [k for (k,) in db_rows(out, "SELECT key FROM cells")]
    assert len(keys) == len(set(keys)) == total
    assert db_rows(out, "PRAGMA integrity_check")[0][0] == "ok"


def test_sampled_reference_where_no_exact_gradient_exists(monkeypatch):
    """A 20-unit toy without its closed form is too big to enumerate: bias is measured
    against a many-sample RLOO reference, whose standard error is reported."""
    from dgbench.harness.suites import Cell
    from dgbench.problems import PROBLEMS
    from dgbench.problems.bernoulli_toy import BernoulliToy

    class NoClosedForm(BernoulliToy):
        id = "no-closed-form"

        def exact_gradient(self):
            return None

    monkeypatch.setitem(PROBLEMS, "no-closed-form", NoClosedForm)
    result = run_cell(Cell("gradstats", "no-closed-form", {"dim": 20, "init": 0.5}, "disarm", {}, 0, {"replicas": 2000}))
    metrics = result["metrics"]
    assert result["status"] == "done" and metrics["reference_is_exact"] == 0.0
    assert 0 < metrics["reference_standard_error"] < 0.05
    # DisARM is unbiased: its bias against the reference is within a few reference SEs.
    assert metrics["bias_norm"] < 5 * metrics["reference_standard_error"] + 0.02


@pytest.mark.slow
def test_one_run_per_directory_and_a_dead_holders_lock_is_taken_over(tmp_path, capsys):
    """A second run into a directory being written exits 2 naming the holder's PID (two
    concurrent runs used to compute every cell twice, last writer winning); after the
    holder is killed, the next run takes the lock over and finishes."""
    out = tmp_path / "res"
    suite = tiny(tmp_path, TINY.replace("steps = 20", "steps = 400").replace("seeds = 2", "seeds = 3"))
    cmd = [sys.executable, "-m", "dgbench.harness.cli", "run", "--suite", suite, "--out", str(out), "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not ((out / ".dgbench.lock").exists() and (out / ".dgbench.lock").read_text()):
            time.sleep(0.1)
        assert main(["run", "--suite", suite, "--out", str(out), "--workers", "1", "--quiet"]) == 2
        assert f"another dgbench run (PID {proc.pid}) is writing" in capsys.readouterr().err
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert main(["run", "--suite", suite, "--out", str(out), "--workers", "1", "--quiet"]) == 0
    keys = [k for (k,) in db_rows(out, "SELECT key FROM cells")]
    assert len(keys) == len(set(keys)) == len(expand(load_suite(suite)))


def test_a_corrupt_or_foreign_database_is_one_line_exit_2_for_run_report_and_export(tmp_path, capsys):
    for name, content in (("garbage", b"this is not sqlite" * 100), ("truncated", None)):
        out = tmp_path / name
        if content is None:  # a real database cut in half
            assert main(["run", "--suite", str(tiny(tmp_path)), "--out", str(out), "--workers", "1", "--quiet"]) == 0
            data = (out / "results.db").read_bytes()
            for extra in ("results.db-wal", "results.db-shm"):
                (out / extra).unlink(missing_ok=True)
            (out / "results.db").write_bytes(data[: len(data) // 2])
        else:
            out.mkdir()
            (out / "results.db").write_bytes(content)
        capsys.readouterr()
        assert main(["run", "--suite", str(tiny(tmp_path)), "--out", str(out), "--workers", "1", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "not a usable dgbench results database" in err and err.count("\n") == 1, (name, err)
        for command in (["report", str(out)], ["export", str(out)]):
            assert main(command) == 2, (name, command)
            assert capsys.readouterr().err.count("\n") == 1


def test_non_finite_gradient_statistics_make_the_cell_diverged_with_a_reason(monkeypatch):
    from dgbench.harness import cells as cells_module

    def nan_statistics(*args, **kwargs):
        return {name: float("nan") for name in cells_module.SCALAR_STATS} | {"seconds_per_estimate": 0.0}

    monkeypatch.setattr(cells_module, "_statistics", nan_statistics)
    cell = next(c for c in expand(load_suite("smoke")) if c.kind == "gradstats" and not c.skip_reason)
    result = cells_module.run_cell(cell)
    assert result["status"] == "diverged" and "non-finite gradient statistics" in result["reason"]


def test_a_changed_suite_is_refused_unless_updated_and_reports_show_only_its_cells(tmp_path, capsys):
    """Changing `steps` and rerunning into the same directory used to merge old and new
    training cells silently (seeds=2, done=3 for a 1-seed suite)."""
    from dgbench.reports.results import load

    out = tmp_path / "res"
    first = tiny(tmp_path, TINY)
    assert main(["run", "--suite", first, "--out", str(out), "--workers", "1", "--quiet"]) == 0
    changed = tmp_path / "changed" / Path(first).name
    changed.parent.mkdir()
    changed.write_text(Path(first).read_text().replace("steps = 20", "steps = 25"))
    capsys.readouterr()
    assert main(["run", "--suite", str(changed), "--out", str(out), "--workers", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "changed since" in err and "-steps = 20; +steps = 25" in err and "--update-suite" in err
    assert err.count("\n") == 1
    assert main(["run", "--suite", str(changed), "--out", str(out), "--workers", "1", "--quiet", "--update-suite"]) == 0
    current = {c.key for c in expand(load_suite(str(changed)))}
    results = load(out)
    assert set(results.cells["key"]) == current
    assert len(db_rows(out, "SELECT key FROM cells")) > len(current)  # the old cells are kept, not shown
    stored = dict(db_rows(out, "SELECT key, value FROM suite"))
    assert "steps = 25" in stored["source"]


def test_cells_built_concurrently_in_one_process_equal_cells_run_alone():
    """No global RNG: cells on threads of one process (a Dask worker with --nthreads 2)
    give the numbers they give alone."""
    from concurrent.futures import ThreadPoolExecutor

    suite = parse_suite(TINY.replace('id = "categorical-toy"', 'id = "vae-bernoulli-tiny"\noptions = { latents = 3, batch_size = 4 }'),
                        "tiny")
    cells = [c for c in expand(suite) if not c.skip_reason and c.seed == 1 and c.problem == "vae-bernoulli-tiny"]
    alone = [run_cell(c) for c in cells]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(run_cell, cells))

    def numbers(result):
        return ({k: v for k, v in result["metrics"].items() if not k.startswith(("seconds", "peak"))},
                [s[:1] + s[2:] for s in result.get("series", [])])  # without wall time

    assert all(a["status"] == "done" for a in alone)
    assert [numbers(a) for a in alone] == [numbers(t) for t in together]


def test_a_suite_may_set_its_cell_timeout():
    suite = parse_suite(TINY.replace("seeds = 2", "seeds = 2\ncell_timeout = 90"), "tiny")
    assert suite.cell_timeout == 90.0 and parse_suite(TINY, "tiny").cell_timeout is None


@pytest.mark.parametrize("exitcode, cause", [
    (-9, "killed (SIGKILL), possibly out of memory"), (-11, "killed (SIGSEGV)"), (3, "exited with status 3"),
    (None, "lost contact"),
])
def test_a_dead_workers_exit_status_is_named(exitcode, cause):
    from dgbench.harness.local_backend import death_cause

    assert death_cause(exitcode) == cause


def test_threads_per_worker_can_be_set_and_the_provenance_records_them(tmp_path):
    out = tmp_path / "res"
    assert main(["run", "--suite", tiny(tmp_path), "--out", str(out), "--workers", "2", "--threads", "1", "--quiet",
                 "--seeds", "1", "--estimators", "reinforce"]) == 0
    provenance = json.loads(db_rows(out, "SELECT provenance FROM runs")[0][0])
    assert provenance["threads_per_worker"] == 1 and provenance["workers"] == 2
