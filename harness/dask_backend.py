"""Running cells on a Dask distributed cluster: one task per cell, results streamed back.

The driver submits every runnable cell as one task (:func:`run_cell_on_worker`) to an
existing scheduler (``--scheduler tcp://HOST:PORT``) or to a ``LocalCluster`` it starts
(``--workers N``), and writes each result into the results store as it arrives, in any
order, exactly as the local backend does: resume and crash safety are the store's.

Determinism: a cell's numbers depend only on the cell (its seeds are derived from the
cell's definition; problems and estimators draw from explicit generators, never from
torch's global RNG) and the thread count it runs with, which the driver sends, so a Dask
run reproduces a local run with the same threads per cell. Cells need no lock: a worker
started with ``--nthreads N`` runs N cells at once (their timings then compete for its
cores; the LocalCluster's workers have one thread each).

Speed: workers run cells as fast as local worker processes only without Dask's
statistical profiler (disabled on the LocalCluster; the driver notes external workers
that run it) and with glibc's adaptive mmap threshold (which the nanny's
``MALLOC_TRIM_THRESHOLD_`` freezes; each task raises it again).

Dead workers: when a worker dies mid-cell, the scheduler moves its task to another
worker (up to ``distributed.scheduler.allowed-failures`` times, then it reports
``KilledWorker``); the driver then resubmits the cell up to ``retries`` more times and
finally records it as ``failed`` with the reason. The rest of the matrix continues.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dgbench.harness.cells import run_cell
from dgbench.harness.seed_batching import CellGroup, run_group
from dgbench.harness.suites import Cell

# Plugin registration and the process-wide settings, once per worker process.
_SETUP_LOCK = threading.Lock()
_REGISTERED: set[str] = set()


class DaskUnavailable(RuntimeError):
    """Dask distributed is not installed, or the cluster cannot be reached or used."""


def run_cell_on_worker(cell: Cell, device: str, threads: int, plugins: tuple[str, ...],
                       data_dir: str | None) -> dict[str, Any]:
    """The Dask task: set up this worker process like a local worker, then run the cell."""
    import torch

    from dgbench.estimators.plugin import register_plugins

    with _SETUP_LOCK:
        _restore_malloc_mmap_threshold()
        if data_dir:
            os.environ["DGBENCH_DATA_DIR"] = data_dir
        new = tuple(p for p in plugins if p not in _REGISTERED)
        register_plugins(new)
        _REGISTERED.update(new)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    if isinstance(cell, CellGroup):
        return run_group(cell, device)
    return run_cell(cell, device)


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD_BYTES = 64 * 2**20
_MALLOC_TUNED = False


def _restore_malloc_mmap_threshold() -> None:
    """Undo the cost of Dask's nanny setting ``MALLOC_TRIM_THRESHOLD_`` for its workers.

    Any such variable freezes glibc's otherwise adaptive mmap threshold at 128 KiB, so
    every tensor above it is mapped and unmapped anew; dgbench cells ran twice as slowly
    in such workers. Raising the threshold restores the speed of a plain process. glibc
    only; elsewhere nothing happens.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    _MALLOC_TUNED = True
    try:
        import ctypes
        import ctypes.util

        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass


def worker_check(device: str) -> dict[str, str]:
    """Run on each worker: the versions that must match the driver's, and whether
    ``device`` exists there (``device_error``: empty if it does)."""
    import platform
    from importlib import metadata

    import torch

    from dgbench.harness.devices import DeviceUnavailable, resolve_device

    try:
        resolve_device(device)
        error = ""
    except DeviceUnavailable as err:
        error = str(err)
    import dask

    return {"dgbench": metadata.version("dgbench"), "torch": torch.__version__,
            "python": platform.python_version(), "device_error": error,
            "profiler": str(bool(dask.config.get("distributed.worker.profile.enabled", True)))}


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise DaskUnavailable("--backend dask needs Dask distributed: pip install 'dask[distributed]' "
                              "(or pip install -e '.[dask]')") from None
    return distributed


@contextmanager
def session(scheduler: str | None, workers: int, threads: int, timeout: float = 20.0) -> Iterator[Any]:
    """A client of ``scheduler``, or of a new LocalCluster of ``workers`` single-threaded
    worker processes (closed on exit)."""
    distributed = _import_distributed()
    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as err:
            raise DaskUnavailable(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None
        with client:
            yield client
        return
    import dask

    # Dask's statistical profiler samples the worker's stack every 10 ms; on dgbench's many
    # small tensor operations it cost about 20% of every cell. The workers inherit this config.
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=None, env={"OMP_NUM_THREADS": str(threads)})
    with cluster, distributed.Client(cluster) as client:
        yield client


def check_workers(client, device: str, wait_seconds: float = 60.0) -> dict[str, dict[str, str]]:
    """Wait for at least one worker; check that every worker runs the driver's
    dgbench/torch/python and has ``device``. Returns each worker's answers."""
    try:
        client.wait_for_workers(1, timeout=wait_seconds)
    except TimeoutError:
        raise DaskUnavailable(f"no Dask worker joined the scheduler within {wait_seconds:.0f} s") from None
    try:
        answers = client.run(worker_check, device)
    except Exception as err:  # e.g. the worker cannot unpickle a dgbench function
        raise DaskUnavailable(f"Dask workers cannot run dgbench (is it installed on every worker?): "
                              f"{type(err).__name__}: {err}") from None
    local = ("device_error", "profiler")
    expected = {k: v for k, v in worker_check("cpu").items() if k not in local}
    profiled = [w for w, a in answers.items() if a["profiler"] == "True"]
    if profiled:
        print(f"dgbench: note: {len(profiled)} Dask worker(s) run Dask's statistical profiler, which slows "
              "cells by about 20%; start workers with DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False",
              file=sys.stderr)
    for worker, answer in answers.items():
        if answer["device_error"]:
            raise DaskUnavailable(f"Dask worker {worker}: {answer['device_error']}")
        found = {k: v for k, v in answer.items() if k not in local}
        if found != expected:
            raise DaskUnavailable(f"Dask worker {worker} runs {found}, the driver {expected}: install the same versions")
    return answers


def run_cells_dask(cells: list[Cell], record: Callable[[Cell, dict], None], client, *, device: str,
                   threads: int, plugins: tuple[str, ...] = (), data_dir: str | None = None,
                   retries: int = 2) -> None:
    """Submit one task per cell and ``record`` each result as it completes (any order)."""
    distributed = _import_distributed()
    attempts: dict[str, int] = {}
    by_key: dict[str, Cell] = {}

    def submit(cell: Cell):
        attempt = attempts.get(cell.key, 0)
        attempts[cell.key] = attempt + 1
        by_key[cell.key] = cell
        # pure=False and a per-attempt key: a resubmission is a new task, never a cached one.
        return client.submit(run_cell_on_worker, cell, device, threads, tuple(plugins), data_dir,
                             key=f"cell-{cell.key}-{attempt}", pure=False)

    pending = distributed.as_completed([submit(c) for c in cells])
    for future in pending:
        cell = by_key[future.key.rsplit("-", 1)[0].removeprefix("cell-")]
        try:
            result = future.result()
        except Exception as err:  # KilledWorker, lost connection, cancelled
            if attempts[cell.key] <= retries:
                print(f"dgbench: lost the worker running cell {cell.key} ({cell.kind}, {cell.estimator} on "
                      f"{cell.problem}, seed {cell.seed}): {type(err).__name__}; resubmitting "
                      f"(retry {attempts[cell.key]} of {retries})", file=sys.stderr)
                pending.add(submit(cell))
                continue
            result = {"status": "failed",
                      "reason": f"worker died or was lost {attempts[cell.key]} time(s) running this cell "
                                f"({type(err).__name__}: {err})"}
        finally:
            future.release()
        record(cell, result)


class DaskBackend:
    """The Dask backend behind the one interface of :mod:`dgbench.harness.backends`: the
    session connects to ``scheduler`` (or starts a LocalCluster of ``workers``) and checks
    the workers; ``run(units, record)`` submits one task per unit."""

    name = "dask"

    def __init__(self, *, workers: int, device: str, threads: int | None = None, plugins: tuple[str, ...] = (),
                 scheduler: str | None = None, retries: int = 2) -> None:
        self.workers, self.device, self.plugins, self.scheduler, self.retries = workers, device, plugins, scheduler, retries
        # External workers run single-threaded cells (one per worker process) unless told
        # otherwise; a LocalCluster splits this machine's cores like the local backend.
        self.threads = threads or (1 if scheduler else max(1, (os.cpu_count() or 1) // max(1, workers)))
        self._client = None

    @contextmanager
    def session(self, store: Any) -> Iterator[dict[str, Any]]:
        with session(self.scheduler, self.workers, self.threads) as client:
            answers = check_workers(client, self.device)
            self._client = client
            try:
                yield {"workers": len(answers), "threads_per_worker": self.threads, "backend": "dask",
                       "scheduler": self.scheduler or f"LocalCluster({self.workers})"}
            finally:
                self._client = None

    def run(self, units: list[Cell], record: Callable[[Cell, dict], None]) -> None:
        run_cells_dask(units, record, self._client, device=self.device, threads=self.threads, plugins=self.plugins,
                       data_dir=os.environ.get("DGBENCH_DATA_DIR"), retries=self.retries)
