"""The Dask backend against a real ``dask scheduler`` and two ``dask worker`` processes.

The cluster runs on 127.0.0.1 with random free ports (the scheduler writes its address to
a scheduler file), bounded lifetimes (``--idle-timeout``, ``--lifetime``) and is killed at
the end of the module. Workers run without nannies, so killing a worker's process removes
it for good.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DGBENCH = [str(Path(sys.executable).parent / "dgbench")]
LIFETIME_S = 600
# Cells long enough (a few seconds each) that a worker can be killed in the middle of one.
SLOW_SUITE = """
name = "dask-kill"
description = "Training cells of a few seconds each, to kill a Dask worker mid-cell."
seeds = 2

[budget]
evals = 4

[gradstats]
replicas = 100

[training]
steps = 1500
optimizer = "adam"
lr = 0.01
log_every = 100
eval_every = 1500
variance_every = 100000
variance_replicas = 10

[[problems]]
id = "vae-bernoulli-tiny"

[estimators]
include = ["reinforce", "disarm"]
"""


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    env.pop("DGBENCH_ASV_SMOKE", None)
    return env


class Cluster:
    """A scheduler and named workers as separate processes, torn down by :meth:`close`."""

    def __init__(self, tmp: Path, workers: int, scheduler_env: dict[str, str] | None = None) -> None:
        self.tmp, self.processes, self.workers = tmp, [], {}
        self.file = tmp / "scheduler.json"
        self._start("scheduler", ["dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(self.file), "--idle-timeout", f"{LIFETIME_S}s"],
                    _env(**(scheduler_env or {})))
        deadline = time.time() + 60
        while not self.file.exists() and time.time() < deadline:
            time.sleep(0.2)
        assert self.file.exists(), "the scheduler did not start"
        self.address = json.loads(self.file.read_text())["address"]
        for i in range(workers):
            name = f"w{i}"
            self.workers[name] = self._start(name, [
                "dask", "worker", "--scheduler-file", str(self.file), "--name", name, "--nthreads", "1",
                "--no-nanny", "--no-dashboard", "--host", "127.0.0.1", "--lifetime", f"{LIFETIME_S}s"], _env())
        self.client = distributed.Client(self.address, timeout=60)
        self.client.wait_for_workers(workers, timeout=120)

    def _start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")
        bindir = Path(sys.executable).parent
        command = [str(bindir / command[0]), *command[1:]]
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.processes.append(process)
        return process

    def address_of(self, name: str) -> str:
        return next(a for a, w in self.client.scheduler_info()["workers"].items() if w["name"] == name)

    def close(self) -> None:
        self.client.close()
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("dask"), workers=2)
    yield c
    c.close()


def _results(db: Path) -> dict[str, dict]:
    """Cell key -> status, metrics and series, timings left out."""
    con = sqlite3.connect(db)
    out = {key: {"status": status, "metrics": {}, "series": {}}
           for key, status in con.execute("SELECT key, status FROM cells")}
    for key, name, value in con.execute("SELECT cell_key, name, value FROM metrics"):
        if "seconds" not in name:
            out[key]["metrics"][name] = value
    for key, step, _wall, name, value in con.execute("SELECT * FROM series"):
        out[key]["series"][(step, name)] = value
    return out


def _same(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and math.isnan(a) and math.isnan(b))


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*DGBENCH, "run", "--quiet", *args], env=_env(), capture_output=True, text=True,
                          timeout=900, cwd=ROOT, **kw)


def test_smoke_suite_on_dask_equals_local_run(cluster, tmp_path):
    local = _run(["--suite", "smoke", "--out", str(tmp_path / "local"), "--workers", "2"])
    assert local.returncode == 0, local.stderr
    remote = _run(["--suite", "smoke", "--out", str(tmp_path / "dask"), "--backend", "dask",
                   "--scheduler", cluster.address])
    assert remote.returncode == 0, remote.stderr
    a, b = _results(tmp_path / "local" / "results.db"), _results(tmp_path / "dask" / "results.db")
    from dgbench.harness.suites import expand, load_suite

    assert a.keys() == b.keys() and len(a) == len(expand(load_suite("smoke")))
    for key in a:
        assert a[key]["status"] == b[key]["status"], key
        assert a[key]["metrics"].keys() == b[key]["metrics"].keys(), key
        assert all(_same(v, b[key]["metrics"][n]) for n, v in a[key]["metrics"].items()), key
        assert a[key]["series"].keys() == b[key]["series"].keys(), key
        assert all(_same(v, b[key]["series"][k]) for k, v in a[key]["series"].items()), key
    provenance = json.loads(sqlite3.connect(tmp_path / "dask" / "results.db")
                            .execute("SELECT provenance FROM runs").fetchone()[0])
    assert provenance["backend"] == "dask" and provenance["workers"] == 2 and provenance["threads_per_worker"] == 1


def _kill_worker_mid_cell(tmp_path: Path, retries: int, scheduler_env: dict[str, str]):
    """Run the slow suite on a fresh 2-worker cluster; kill w0 while it runs a cell.

    Returns the driver's exit status and stderr, the cell keys w0 held, and the database."""
    (tmp_path / "cluster").mkdir()
    c = Cluster(tmp_path / "cluster", workers=2, scheduler_env=scheduler_env)
    try:
        suite = tmp_path / "slow.toml"
        suite.write_text(SLOW_SUITE)
        driver = subprocess.Popen([*DGBENCH, "run", "--quiet", "--suite", str(suite), "--out", str(tmp_path / "out"),
                                   "--backend", "dask", "--scheduler", c.address, "--retries", str(retries),
                                   # one task per cell, so that the killed tasks name the cells they ran
                                   # (the digits VAE's seeds would otherwise stack into one group task)
                                   "--seed-batching", "off"],
                                  env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        victim = c.address_of("w0")
        deadline = time.time() + 300
        killed = None
        while killed is None and time.time() < deadline and driver.poll() is None:
            running = [k for k in c.client.processing().get(victim, ()) if str(k).startswith("cell-")]
            if running:
                time.sleep(0.5)  # well inside a cell of several seconds
                os.kill(c.workers["w0"].pid, signal.SIGKILL)
                # The scheduler also counts tasks already assigned to w0 but not started.
                killed = [k for k in c.client.processing().get(victim, ()) if str(k).startswith("cell-")] or running
            time.sleep(0.05)
        out, err = driver.communicate(timeout=900)
        assert killed is not None, f"w0 never ran a cell: {err}"
        return driver.returncode, err, {str(k).split("-")[1] for k in killed}, sqlite3.connect(tmp_path / "out" / "results.db")
    finally:
        c.close()


def test_killed_worker_cell_is_retried_on_another_worker(tmp_path):
    # No rescheduling by the scheduler itself: the driver's own retry is what recovers the cell.
    code, err, killed, db = _kill_worker_mid_cell(
        tmp_path, retries=1, scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"})
    assert code == 0, err
    assert "resubmitting" in err and any(key in err for key in killed)
    statuses = [s for (s,) in db.execute("SELECT status FROM cells WHERE kind = 'train'")]
    assert len(statuses) == 4 and set(statuses) == {"done"}


def test_killed_worker_cell_without_retries_fails_with_reason_and_the_rest_finishes(tmp_path):
    code, err, killed, db = _kill_worker_mid_cell(
        tmp_path, retries=0, scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"})
    assert code == 1  # a failed cell makes `dgbench run` exit 1
    rows = dict(db.execute("SELECT key, status FROM cells"))
    reasons = dict(db.execute("SELECT key, reason FROM cells WHERE status = 'failed'"))
    assert reasons and set(reasons) <= killed
    assert all("worker died" in reason for reason in reasons.values())
    assert sum(s == "done" for s in rows.values()) == len(rows) - len(reasons)


def test_unreachable_scheduler_is_a_usage_error(tmp_path):
    result = _run(["--suite", "smoke", "--out", str(tmp_path / "x"), "--backend", "dask",
                   "--scheduler", "tcp://127.0.0.1:9"])
    assert result.returncode == 2 and "cannot reach the Dask scheduler" in result.stderr
