"""The local backend: cells in this process (one worker) or on a pool of spawned worker
processes, each pinned to ``cores // workers`` threads so that concurrent cells do not
compete for cores and every cell of a run is timed at the same thread count.

Sibling of :mod:`dgbench.harness.dask_backend`; both take the runnable cells and a
``record(cell, result)`` callback that the driver uses to write the store.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch

from dgbench.estimators.plugin import register_plugins
from dgbench.harness.cells import run_cell
from dgbench.harness.suites import Cell


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _init_worker(threads: int, plugins: tuple[str, ...] = ()) -> None:
    torch.set_num_threads(threads)
    register_plugins(plugins)


def run_cells_local(cells: list[Cell], record: Callable[[Cell, dict], None], *, workers: int, device: str,
                    plugins: tuple[str, ...] = ()) -> None:
    """Run ``cells`` and ``record`` each result as it arrives (any order with a pool)."""
    if workers <= 1:
        torch.set_num_threads(threads_per_worker(1))
        for cell in cells:
            record(cell, run_cell(cell, device))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(threads_per_worker(workers), tuple(plugins))) as pool:
        futures = {pool.submit(run_cell, cell, device): cell for cell in cells}
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as err:  # the worker died (e.g. killed for memory)
                result = {"status": "failed", "reason": f"worker process died: {type(err).__name__}: {err}"}
            record(futures[future], result)
