"""Fault injection against real processes: workers that die or hang, a driver stopped by
SIGTERM, Ctrl-C (once and twice) or SIGKILL, and a long training cell resumed from its
checkpoint. Every wait is bounded."""

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

ROOT = Path(__file__).resolve().parent.parent

SUITE = """
name = "faults"
seeds = 1
[budget]
evals = 2
[gradstats]
replicas = 20
[training]
steps = {steps}
eval_every = 10
variance_every = 10
variance_replicas = 5
[[problems]]
id = "bernoulli-toy"
options = {{ dim = 3 }}
[[problems]]
id = "categorical-toy"
[estimators]
include = ["reinforce", "rloo"]
"""

# Misbehaves only inside a cell (loading a plugin validates it by calling it), and only
# on the Bernoulli toy.
PLUGIN = '''
import os, signal, sys, time
from dgbench.estimators.rloo import RLOO


def cell_problem():
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "run_cell":
            return frame.f_locals["cell"].problem
        frame = frame.f_back
    return None


class Faulty(RLOO):
    id = "faulty"

    def forward(self, logits, f, *, generator):
        if cell_problem() == "bernoulli-toy":
            if "{mode}" == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            while True:
                time.sleep(0.01)
        return super().forward(logits, f, generator=generator)
'''


def write(tmp_path, steps=20, mode=None):
    suite = tmp_path / "faults.toml"
    suite.write_text(SUITE.format(steps=steps))
    plugin = None
    if mode:
        plugin = tmp_path / f"faulty_{mode}.py"
        plugin.write_text(PLUGIN.replace("{mode}", mode))
    return suite, plugin


def dgbench(*args, timeout=240, **kwargs):
    return subprocess.run([sys.executable, "-m", "dgbench.harness.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def rows(out, query):
    with sqlite3.connect(Path(out) / "results.db") as db:
        return db.execute(query).fetchall()


def descendants(pid):
    """PIDs of every live process below ``pid`` (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids):
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


def wait_until(condition, seconds, step=0.1):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return condition()


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


@pytest.mark.slow
def test_a_worker_killed_by_the_kernel_fails_only_its_cell_and_is_retried_last_on_resume(tmp_path):
    suite, plugin = write(tmp_path, mode="kill")
    out = tmp_path / "out"
    first = dgbench("compare", plugin, "--suite", suite, "--out", out, "--reference", tmp_path / "none",
                    "--workers", "2", "--quiet")
    assert first.returncode == 1, first.stderr
    statuses = rows(out, "SELECT estimator, problem, status, reason FROM cells")
    failed = [(e, p, r) for e, p, s, r in statuses if s == "failed"]
    # the faulty estimator's gradstats and train cells on the Bernoulli toy, and nothing else
    assert sorted((e, p) for e, p, _ in failed) == [("faulty", "bernoulli-toy")] * 2
    assert all("killed (SIGKILL), possibly out of memory" in r and "3 attempt(s) in this run" in r for _, _, r in failed), failed
    assert all(s == "done" for e, p, s, _ in statuses if (e, p) != ("faulty", "bernoulli-toy"))
    assert "it runs again at the end (retry 1 of 2)" in first.stderr
    # Resume: only the two killers run again, last and at most --retries (2) times each.
    before = rows(out, "SELECT key, finished FROM cells WHERE status != 'failed'")
    again = dgbench("compare", plugin, "--suite", suite, "--out", out, "--workers", "2", "--quiet")
    assert again.returncode == 1
    assert rows(out, "SELECT key, finished FROM cells WHERE status != 'failed'") == before
    reasons = [r for (r,) in rows(out, "SELECT reason FROM cells WHERE status = 'failed'")]
    assert len(reasons) == 2 and all("2 attempt(s) in this run" in r for r in reasons), reasons


@pytest.mark.slow
def test_a_hanging_cell_times_out_and_the_rest_finishes(tmp_path):
    suite, plugin = write(tmp_path, mode="hang")
    out = tmp_path / "out"
    started = time.monotonic()
    result = dgbench("compare", plugin, "--suite", suite, "--out", out, "--reference", tmp_path / "none",
                     "--workers", "2", "--quiet", "--cell-timeout", "6", timeout=120)
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 90
    failed = rows(out, "SELECT estimator, problem, reason FROM cells WHERE status = 'failed'")
    assert sorted((e, p) for e, p, _ in failed) == [("faulty", "bernoulli-toy")] * 2
    assert all(r.startswith("timeout after 6 s") for _, _, r in failed)
    assert rows(out, "SELECT COUNT(*) FROM cells WHERE status = 'done'")[0][0] == 10


def start_run(tmp_path, steps=100000, workers=2, extra=()):
    suite, _ = write(tmp_path, steps=steps)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "dgbench.harness.cli", "run", "--suite", str(suite), "--out", str(out),
                             "--workers", str(workers), "--quiet", *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    # wait until the workers exist, then give them time to start on the long training cells
    assert wait_until(lambda: (out / "results.db").exists() and len(descendants(proc.pid)) >= workers, 60)
    time.sleep(4)
    return proc, out


def finish(proc, seconds):
    try:
        stdout, stderr = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the driver did not exit within {seconds} s")
    return stdout, stderr


@needs_proc
@pytest.mark.slow
@pytest.mark.parametrize("how, status", [("SIGTERM", 143), ("SIGINT", 130)])
def test_sigterm_or_ctrl_c_stops_within_seconds_with_one_line_and_no_orphans(tmp_path, how, status):
    proc, out = start_run(tmp_path)
    children = descendants(proc.pid)
    started = time.monotonic()
    if how == "SIGINT":  # a terminal's Ctrl-C reaches the whole process group
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    _, stderr = finish(proc, 15)
    assert time.monotonic() - started < 10
    assert proc.returncode == status
    stored = rows(out, "SELECT COUNT(*) FROM cells")[0][0]
    assert stderr.strip().splitlines() == [f"dgbench: interrupted: {stored} cells stored; rerun the same command to resume"]
    assert wait_until(lambda: not alive(children), 5), f"orphans: {alive(children)}"
    assert rows(out, "PRAGMA integrity_check")[0][0] == "ok"


@needs_proc
@pytest.mark.slow
def test_a_second_ctrl_c_exits_at_once_and_the_store_stays_usable(tmp_path):
    proc, out = start_run(tmp_path)
    children = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGINT)
    finish(proc, 15)
    assert proc.returncode == 130
    assert wait_until(lambda: not alive(children), 5)
    assert rows(out, "PRAGMA integrity_check")[0][0] == "ok"
    # the directory is not locked and resumes (a short suite now: same name, --update-suite)
    suite, _ = write(tmp_path, steps=20)
    again = dgbench("run", "--suite", suite, "--out", out, "--workers", "2", "--quiet", "--update-suite")
    assert again.returncode == 0, again.stderr


@needs_proc
@pytest.mark.slow
def test_workers_die_with_a_killed_driver(tmp_path):
    proc, _ = start_run(tmp_path)
    children = descendants(proc.pid)
    assert len(children) >= 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert wait_until(lambda: not alive(children), 10), f"orphans: {alive(children)}"


@needs_proc
@pytest.mark.slow
def test_a_long_cell_killed_mid_way_resumes_from_its_checkpoint_with_the_same_series(tmp_path):
    steps = 20000
    suite, _ = write(tmp_path, steps=steps)
    text = suite.read_text().replace("eval_every = 10\nvariance_every = 10", "eval_every = 5000\nvariance_every = 5000").replace('include = ["reinforce", "rloo"]', 'include = ["rloo"]').replace(
        '[[problems]]\nid = "categorical-toy"\n', "")
    suite.write_text(text.replace("[gradstats]\nreplicas = 20\n", ""))
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert dgbench("run", "--suite", suite, "--out", whole, "--workers", "1", "--quiet").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "dgbench.harness.cli", "run", "--suite", str(suite), "--out", str(cut),
                             "--workers", "1", "--quiet", "--checkpoint-every", "0.2"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoints = cut / "checkpoints"
    assert wait_until(lambda: checkpoints.is_dir() and any(checkpoints.glob("*.pt")), 60)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert not rows(cut, "SELECT COUNT(*) FROM cells")[0][0], "the kill should land before the cell finished"
    resumed = dgbench("run", "--suite", suite, "--out", cut, "--workers", "1", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    (reason,) = rows(cut, "SELECT reason FROM cells")[0]
    assert reason.startswith("resumed from a checkpoint at step ")
    assert 0 < int(reason.rsplit(" ", 1)[1]) < steps
    query = "SELECT step, name, value FROM series ORDER BY step, name"
    assert rows(cut, query) == rows(whole, query)
    query = "SELECT name, value FROM metrics WHERE name NOT LIKE 'seconds%' ORDER BY name"
    assert rows(cut, query) == rows(whole, query)
    assert not list(checkpoints.glob("*")), "the checkpoint is removed once the cell is stored"
    provenance = json.loads(rows(cut, "SELECT provenance FROM runs ORDER BY run_id DESC")[0][0])
    assert provenance["cell_timeout"] == 3600


BROKEN_IN_WORKERS = '''
import multiprocessing, os
if multiprocessing.current_process().name == "dgbench-worker":
    os._exit(3)  # e.g. a library that cannot load in a worker process
from dgbench.estimators.rloo import RLOO


class BrokenInWorkers(RLOO):
    id = "broken-in-workers"
'''


@pytest.mark.slow
def test_workers_that_die_before_any_cell_stop_the_run_with_one_line(tmp_path):
    suite, _ = write(tmp_path)
    plugin = tmp_path / "broken.py"
    plugin.write_text(BROKEN_IN_WORKERS)
    started = time.monotonic()
    result = dgbench("compare", plugin, "--suite", suite, "--out", tmp_path / "out", "--reference", tmp_path / "none",
                     "--workers", "2", "--quiet", timeout=120)
    assert result.returncode == 2 and time.monotonic() - started < 60
    assert result.stderr.strip().splitlines()[-1] == (
        "dgbench: error: 3 worker processes in a row died before running a cell (exited with status 3); "
        "rerun with --in-process to see the error")
