"""The local backend: cells on supervised worker processes of this machine, each pinned
to ``cores // workers`` threads so that concurrent cells do not compete for cores and
every cell of a run is timed at the same thread count.

Supervision (the driver's side; the worker's is :mod:`dgbench.harness.worker_process`):

- **isolation**: a worker that dies (a crash, a ``kill -9``, the kernel's OOM killer)
  fails only the cell it was running, with the signal or exit status and its likely
  cause; a new worker takes its place and the rest of the matrix continues. The cell is
  put back at the end of the queue up to ``retries`` times. A cell that killed its worker
  in an earlier run (``previously_killed``) is run last and at most ``retries`` times;
- **timeout**: a cell running longer than ``cell_timeout`` seconds is recorded
  ``failed`` ("timeout after N s") and its worker replaced;
- **stopping**: on any exception in the driver (Ctrl-C, SIGTERM turned into an exception
  by the CLI) the workers are killed at once; results already received are stored.
  Workers also die by themselves when the driver dies.

``in_process=True`` runs the cells in this process instead (for a debugger): no
isolation and no timeout.

Sibling of :mod:`dgbench.harness.dask_backend`; both take the runnable cells and a
``record(cell, result)`` callback that the driver uses to write the store.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import wait
from typing import Any

import torch

from dgbench.harness.defaults import DEFAULT_CELL_TIMEOUT  # noqa: E402,F401  (re-exported)
from dgbench.harness.result_files import ResultFiles, run_with_files
from dgbench.harness.suites import Cell
from dgbench.harness.worker_process import worker_main

STARTUP_DEATHS = 3  # workers in a row that die before starting a cell: something is wrong with every worker
WORKER_DIED = "the worker running this cell died"
JOIN_SECONDS = 5.0


class WorkersCannotStart(RuntimeError):
    """Worker processes die before they start any cell (a plugin or device that fails in
    every worker): stopping beats failing every cell several times over."""


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def cells_in(cell: Cell) -> int:
    """How many cells a queued item stands for: a seed-batched group's members share its
    time limit, which is theirs together."""
    return len(getattr(cell, "cells", (None,)))


def death_cause(exitcode: int | None) -> str:
    """What a worker's exit status says, in words."""
    if exitcode is None:
        return "lost contact"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        if -exitcode == signal.SIGKILL:
            return f"killed ({name}), possibly out of memory"
        return f"killed ({name})"
    return f"exited with status {exitcode}"


class _Worker:
    def __init__(self, context: Any, threads: int, plugins: tuple[str, ...]) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=worker_main, args=(child, os.getpid(), threads, plugins),
                                       name="dgbench-worker", daemon=True)
        self.process.start()
        child.close()
        self.cell: Cell | None = None
        self.started: float | None = None  # when the worker began the cell
        self.served = False  # it has finished a cell

    def assign(self, cell: Cell, device: str, files: ResultFiles | None) -> None:
        # `started` is None until the worker says it began the cell
        self.conn.send((cell, device, files))
        self.cell, self.started = cell, None

    def result(self) -> dict[str, Any] | None:
        """The finished cell's result if one has arrived (None: none yet, or the pipe
        broke); notes when the worker started the cell."""
        try:
            while self.conn.poll():
                kind, payload = self.conn.recv()
                if kind == "started":
                    self.started = time.monotonic()
                else:
                    return payload
        except (EOFError, OSError):
            return None
        return None

    def overdue(self, timeout: float | None) -> bool:
        if timeout and self.cell is not None:
            timeout *= cells_in(self.cell)
        return bool(timeout) and self.started is not None and time.monotonic() - self.started > timeout

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(JOIN_SECONDS)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(JOIN_SECONDS)
        self.kill()


def run_cells_local(cells: list[Cell], record: Callable[[Cell, dict], None], *, workers: int, device: str,
                    threads: int | None = None,
                    plugins: tuple[str, ...] = (), cell_timeout: float | None = DEFAULT_CELL_TIMEOUT,
                    retries: int = 2, files: ResultFiles | None = None,
                    previously_killed: set[str] = frozenset(), in_process: bool = False) -> None:
    """Run ``cells`` and ``record`` each result as it arrives (any order with several workers)."""
    if in_process:
        torch.set_num_threads(threads or threads_per_worker(1))
        for cell in cells:
            record(cell, run_with_files(cell, device, files))
        return
    deaths = Counter({key: 1 for key in previously_killed})  # counts against --retries
    attempts: Counter[str] = Counter()
    queue: deque[Cell] = deque()
    for cell in cells:
        if deaths[cell.key] > retries:
            record(cell, {"status": "failed", "reason": f"{WORKER_DIED} in an earlier run; not retried (--retries {retries})"})
        else:
            queue.append(cell)
    context = multiprocessing.get_context("spawn")
    threads = threads or threads_per_worker(workers)
    pool: list[_Worker] = []
    startup_deaths = 0
    try:
        while queue or any(w.cell for w in pool):
            while queue and len(pool) < workers:
                pool.append(_Worker(context, threads, tuple(plugins)))
            for worker in pool:
                if worker.cell is None and queue:
                    worker.assign(queue.popleft(), device, files)
                    attempts[worker.cell.key] += 1
            busy = [w for w in pool if w.cell is not None]
            wait_for = 1.0
            if cell_timeout:
                wait_for = max(0.0, min([wait_for] + [w.started + cell_timeout * cells_in(w.cell)
                                                      - time.monotonic() for w in busy if w.started is not None]))
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy], wait_for)
            for worker in busy:
                cell = worker.cell
                result = worker.result()
                if result is not None:
                    worker.cell, worker.served = None, True
                    startup_deaths = 0
                    record(cell, result)
                elif not worker.process.is_alive():
                    worker.kill()
                    pool.remove(worker)
                    cause = death_cause(worker.process.exitcode)
                    if worker.started is None and not worker.served:
                        startup_deaths += 1
                        if startup_deaths >= STARTUP_DEATHS:
                            raise WorkersCannotStart(
                                f"{startup_deaths} worker processes in a row died before running a cell ({cause}); "
                                "rerun with --in-process to see the error")
                        queue.appendleft(cell)  # not the cell's fault
                        attempts[cell.key] -= 1
                        continue
                    startup_deaths = 0
                    deaths[cell.key] += 1
                    if deaths[cell.key] <= retries:
                        print(f"dgbench: {WORKER_DIED} ({cell.kind}, {cell.estimator} on {cell.problem}, seed "
                              f"{cell.seed}): {cause}; it runs again at the end (retry {deaths[cell.key]} of {retries})",
                              file=sys.stderr)
                        queue.append(cell)
                    else:
                        record(cell, {"status": "failed", "reason": f"{WORKER_DIED} ({cause}); "
                                                                    f"{attempts[cell.key]} attempt(s) in this run"})
                elif worker.overdue(cell_timeout):
                    worker.kill()
                    pool.remove(worker)
                    limit = cell_timeout * cells_in(cell)
                    record(cell, {"status": "failed", "reason": f"timeout after {limit:g} s (--cell-timeout); "
                                                                "its worker was stopped"})
    except BaseException:
        for worker in pool:  # at once: whatever they compute now is lost anyway
            worker.kill()
        pool.clear()
        raise
    finally:
        for worker in pool:
            worker.stop()


class LocalBackend:
    """The local backend behind the one interface of :mod:`dgbench.harness.backends`:
    ``session(store)`` yields what the provenance records, ``run(units, record)`` runs."""

    name = "local"

    def __init__(self, *, workers: int, device: str, threads: int | None = None, plugins: tuple[str, ...] = (),
                 cell_timeout: float | None = DEFAULT_CELL_TIMEOUT, retries: int = 2,
                 checkpoint_every: float = 60.0, in_process: bool = False) -> None:
        self.workers, self.device, self.plugins = workers, device, plugins
        self.threads = threads or threads_per_worker(1 if in_process else workers)
        self.cell_timeout, self.retries, self.in_process = cell_timeout, retries, in_process
        self.checkpoint_every = checkpoint_every
        self._files: ResultFiles | None = None
        self._killed: set[str] = set()

    @contextmanager
    def session(self, store: Any) -> Iterator[dict[str, Any]]:
        self._files = ResultFiles(store.directory, self.checkpoint_every)
        self._killed = store.failed_keys(WORKER_DIED)
        yield {"cell_timeout": self.cell_timeout, "retries": self.retries, "in_process": self.in_process}

    def run(self, units: list[Cell], record: Callable[[Cell, dict], None]) -> None:
        units = sorted(units, key=lambda c: c.key in self._killed)  # cells that killed a worker last
        run_cells_local(units, record, workers=self.workers, threads=self.threads, device=self.device,
                        plugins=self.plugins, cell_timeout=self.cell_timeout, retries=self.retries,
                        files=self._files, previously_killed=self._killed, in_process=self.in_process)
