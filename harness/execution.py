"""Running a list of cells: in this process, on local worker processes, or on Dask.

The driver alone writes the results store, one transaction per finished cell, as
results arrive (in any order). Each worker process is pinned to
``torch.get_num_threads() // workers`` threads (at least one), so concurrent cells do
not oversubscribe the cores and every cell of a run is timed with the same thread count,
which the run's provenance records.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import ExitStack

import torch
from tqdm import tqdm

from dgbench.estimators.plugin import register_plugins
from dgbench.estimators.registry import ESTIMATORS
from dgbench.harness.cells import run_cell
from dgbench.harness.provenance import provenance
from dgbench.harness.store import ResultStore
from dgbench.harness.suites import Cell
from dgbench.problems.registry import PROBLEMS


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _init_worker(threads: int, plugins: tuple[str, ...] = ()) -> None:
    torch.set_num_threads(threads)
    register_plugins(plugins)


def prepare_data(cells: list[Cell]) -> None:
    """Fetch or verify every data set the cells need, once, before any worker starts
    (raises ``problems.data.DataUnavailable``, naming the problem)."""
    from dgbench.problems.data import DataUnavailable

    for problem, options in {(c.problem, json.dumps(c.options, sort_keys=True)): None for c in cells}:
        try:
            PROBLEMS[problem].prepare_data(json.loads(options))
        except DataUnavailable as err:
            raise DataUnavailable(f"{problem}: {err}") from None


def execute(cells: list[Cell], store: ResultStore, *, workers: int, device: str, progress: bool = True,
            plugins: tuple[str, ...] = (), backend: str = "local", scheduler: str | None = None,
            retries: int = 2) -> dict[str, int]:
    """One recorded run (with its provenance) of the cells not yet in ``store``; counts by status.

    ``backend="dask"`` runs the cells on the Dask cluster at ``scheduler``, or on a new
    LocalCluster of ``workers`` processes (:mod:`dgbench.harness.dask_backend`).
    """
    if backend not in ("local", "dask"):
        raise ValueError(f"backend must be 'local' or 'dask', got {backend!r}")
    workers = min(workers, max(1, len(cells)))
    with ExitStack() as stack:
        runner: Callable[[list[Cell], Callable[[Cell, dict], None]], None] | None = None
        info = provenance(device, workers, threads_per_worker(workers))
        if backend == "dask":
            from dgbench.harness import dask_backend

            # External workers run single-threaded cells (one per worker process); a
            # LocalCluster splits this machine's cores like the local backend.
            threads = 1 if scheduler else threads_per_worker(workers)
            client = stack.enter_context(dask_backend.session(scheduler, workers, threads))
            answers = dask_backend.check_workers(client, device)
            info.update(workers=len(answers), threads_per_worker=threads, backend="dask",
                        scheduler=scheduler or f"LocalCluster({workers})")

            def on_dask(runnable: list[Cell], record: Callable[[Cell, dict], None]) -> None:
                dask_backend.run_cells_dask(runnable, record, client, device=device, threads=threads, plugins=plugins,
                                            data_dir=os.environ.get("DGBENCH_DATA_DIR"), retries=retries)

            runner = on_dask

        store.write_catalog({c.problem: PROBLEMS[c.problem].describe() for c in cells},
                            {c.estimator: ESTIMATORS[c.estimator].capabilities() for c in cells})
        run_id = store.start_run(time.time(), info)
        counts = run_cells(cells, store, run_id, workers=workers, device=device, progress=progress,
                           plugins=plugins, runner=runner)
        store.finish_run(run_id, time.time())
    return counts


def run_cells(cells: list[Cell], store: ResultStore, run_id: int, *, workers: int, device: str,
              progress: bool = True, plugins: tuple[str, ...] = (), runner=None) -> dict[str, int]:
    """Run every cell not yet finished in ``store``; return counts by status for this call.

    ``runner(cells, record)``, if given, runs the cells elsewhere and calls ``record``
    with each result as it arrives (the Dask backend); otherwise this process or a pool
    of ``workers`` local processes runs them.
    """
    done = store.finished_keys()
    todo = [c for c in cells if c.key not in done]
    counts: dict[str, int] = {}
    bar = tqdm(total=len(todo), unit="cell", disable=not progress, dynamic_ncols=True)

    def record(cell: Cell, result: dict) -> None:
        store.write_cell(run_id, cell, result)
        counts[result["status"]] = counts.get(result["status"], 0) + 1
        bar.set_postfix_str(f"{cell.estimator} on {cell.problem}: {result['status']}", refresh=False)
        bar.update(1)

    try:
        runnable = []
        for cell in todo:
            if cell.skip_reason:
                record(cell, run_cell(cell, device))
            else:
                runnable.append(cell)
        if runner is not None:
            if runnable:
                runner(runnable, record)
        elif workers <= 1:
            torch.set_num_threads(threads_per_worker(1))
            for cell in runnable:
                record(cell, run_cell(cell, device))
        elif runnable:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                     initargs=(threads_per_worker(workers), tuple(plugins))) as pool:
                futures = {pool.submit(run_cell, cell, device): cell for cell in runnable}
                for future in as_completed(futures):
                    try:
                        result = future.result()
                    except Exception as err:  # the worker died (e.g. killed for memory)
                        result = {"status": "failed", "reason": f"worker process died: {type(err).__name__}: {err}"}
                    record(futures[future], result)
    finally:
        bar.close()
    return counts
