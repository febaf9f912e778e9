"""Running a list of cells as one recorded run, on a backend: local processes
(:mod:`dgbench.harness.local_backend`) or Dask (:mod:`dgbench.harness.dask_backend`),
siblings behind one interface, ``runner(cells, record)``.

The driver alone writes the results store, one transaction per finished cell, as
results arrive (in any order); the run's provenance records the workers and their
threads.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack

import torch
from tqdm import tqdm

from dgbench.errors import Interrupted, Terminated
from dgbench.harness.cells import run_cell
from dgbench.harness.checkpoints import remove_checkpoint, remove_stale_files
from dgbench.harness.costs import estimate, longest_first
from dgbench.harness.local_backend import DEFAULT_CELL_TIMEOUT, WORKER_DIED, run_cells_local, threads_per_worker
from dgbench.harness.provenance import provenance
from dgbench.harness.result_files import DEFAULT_CHECKPOINT_SECONDS, ResultFiles
from dgbench.harness.seed_batching import CellGroup, group_cells, member_results
from dgbench.harness.selected_evaluation import evaluate_selected, save_final
from dgbench.harness.suites import Cell
from dgbench.problems.registry import PROBLEMS
from dgbench.store import ResultStore


def prepare_data(cells: list[Cell]) -> None:
    """Fetch or verify every data set the cells need, once, before any worker starts
    (raises ``problems.data.DataUnavailable``, naming the problem)."""
    from dgbench.problems.data import DataUnavailable

    for problem, options in {(c.problem, json.dumps(c.options, sort_keys=True)): None for c in cells}:
        try:
            PROBLEMS[problem].prepare_data(json.loads(options))
        except DataUnavailable as err:
            raise DataUnavailable(f"{problem}: {err}") from None


def _capabilities(cell: Cell) -> dict:
    """What the cell's estimator declares; a suite variant is its estimator's declaration
    under the variant's id, with its hyperparameters."""
    info = cell.estimator_class.capabilities()
    if cell.variant_of:
        info.update(id=cell.estimator, variant_of=cell.variant_of,
                    hyperparameters={**info["hyperparameters"], **cell.hyperparameters},
                    variant_hyperparameters={k: v for k, v in cell.hyperparameters.items() if k != "samples"})
    return info


def execute(cells: list[Cell], store: ResultStore, *, workers: int, device: str, progress: bool = True,
            plugins: tuple[str, ...] = (), backend: str = "local", scheduler: str | None = None,
            retries: int = 2, cell_timeout: float | None = DEFAULT_CELL_TIMEOUT,
            checkpoint_every: float = DEFAULT_CHECKPOINT_SECONDS, in_process: bool = False,
            threads: int | None = None, seed_batching: bool = False) -> dict[str, int]:
    """One recorded run (with its provenance) of the cells not yet in ``store``; counts by status.

    ``backend="dask"`` runs the cells on the Dask cluster at ``scheduler``, or on a new
    LocalCluster of ``workers`` processes (:mod:`dgbench.harness.dask_backend`); the local
    backend supervises its workers (:mod:`dgbench.harness.local_backend`: ``retries``
    after a worker's death, ``cell_timeout``, checkpoints of training cells every
    ``checkpoint_every`` seconds). ``seed_batching``: training cells that differ only in
    their seed run as one stacked model where they can (:mod:`dgbench.harness.seed_batching`;
    the provenance counts the groups and why the other training cells run per seed). Raises :class:`dgbench.errors.Interrupted` when stopped
    by Ctrl-C or SIGTERM (the cells finished until then are stored).
    """
    if backend not in ("local", "dask"):
        raise ValueError(f"backend must be 'local' or 'dask', got {backend!r}")
    explicit_threads = threads is not None
    workers = min(workers, max(1, len(cells)))
    threads = threads or threads_per_worker(1 if in_process else workers)
    with ExitStack() as stack:
        info = provenance(device, workers, threads)
        if backend == "dask":
            from dgbench.harness import dask_backend

            # External workers run single-threaded cells (one per worker process) unless told
            # otherwise; a LocalCluster splits this machine's cores like the local backend.
            if scheduler and not explicit_threads:
                threads = 1
            client = stack.enter_context(dask_backend.session(scheduler, workers, threads))
            answers = dask_backend.check_workers(client, device)
            info.update(workers=len(answers), threads_per_worker=threads, backend="dask",
                        scheduler=scheduler or f"LocalCluster({workers})")

            def runner(runnable: list[Cell], record: Callable[[Cell, dict], None]) -> None:
                dask_backend.run_cells_dask(runnable, record, client, device=device, threads=threads, plugins=plugins,
                                            data_dir=os.environ.get("DGBENCH_DATA_DIR"), retries=retries)
        else:
            files = ResultFiles(store.directory, checkpoint_every)
            killed = store.failed_keys(WORKER_DIED)
            info.update(cell_timeout=cell_timeout, retries=retries, in_process=in_process)

            def runner(runnable: list[Cell], record: Callable[[Cell, dict], None]) -> None:
                runnable = sorted(runnable, key=lambda c: c.key in killed)  # cells that killed a worker last
                run_cells_local(runnable, record, workers=workers, threads=threads, device=device, plugins=plugins,
                                cell_timeout=cell_timeout, retries=retries, files=files,
                                previously_killed=killed, in_process=in_process)

        store.write_catalog({c.problem: PROBLEMS[c.problem].describe() for c in cells},
                            {c.estimator: _capabilities(c) for c in cells})
        store.add_suite_cells(c.key for c in cells)
        info["seed_batching"] = seed_batching_summary(cells) if seed_batching else False
        run_id = store.start_run(time.time(), info)
        counts = run_cells(cells, store, run_id, runner, device=device, progress=progress, seed_batching=seed_batching)
        store.finish_run(run_id, time.time())
    return counts


def seed_batching_summary(cells: list[Cell]) -> dict:
    """How many training cells run in seed-batched groups, and why the others run per seed."""
    grouped, per_seed = group_cells(cells)
    groups = [g for g in grouped if isinstance(g, CellGroup)]
    return {"groups": len(groups), "grouped_cells": sum(len(g) for g in groups), "per_seed": per_seed}


def run_cells(cells: list[Cell], store: ResultStore, run_id: int,
              runner: Callable[[list[Cell], Callable[[Cell, dict], None]], None], *, device: str,
              progress: bool = True, seed_batching: bool = False) -> dict[str, int]:
    """Run every cell not yet finished in ``store`` through ``runner(cells, record)`` (a
    backend, which calls ``record`` with each result as it arrives); counts by status.

    Skipped cells are recorded here, without a backend. With ``seed_batching`` the
    unfinished training cells that can batch go to the backend as groups over
    their seeds (:class:`CellGroup`); each member's result is recorded as its own cell's.
    """
    remove_stale_files(store.directory)  # the partial files of writers that died
    done = store.finished_keys()
    for key in done & {c.key for c in cells}:  # left behind by a driver that died after storing the cell
        remove_checkpoint(store.directory, key)
    todo = [c for c in cells if c.key not in done]
    counts: dict[str, int] = {}
    bar = tqdm(total=len(todo), unit="cell", disable=not progress, dynamic_ncols=True)

    def record_one(cell: Cell, result: dict) -> None:
        state = result.pop("final_state", None)
        if state is not None:  # before the cell is stored: a stored cell always has its final parameters
            save_final(store.directory, cell.key, state)
        store.write_cell(run_id, cell, result)
        if result["status"] != "failed":  # a failed cell's checkpoint lets its retry continue
            remove_checkpoint(store.directory, cell.key)
        counts[result["status"]] = counts.get(result["status"], 0) + 1
        bar.set_postfix_str(f"{cell.estimator} on {cell.problem}: {result['status']}", refresh=False)
        bar.update(1)

    def record(cell: Cell | CellGroup, result: dict) -> None:
        pairs = member_results(cell, result)
        for member, member_result in pairs:
            record_one(member, member_result)
        if isinstance(cell, CellGroup) and all(r["status"] != "failed" for _, r in pairs):
            remove_checkpoint(store.directory, cell.key)

    try:
        runnable = []
        for cell in todo:
            if cell.skip_reason:
                record(cell, run_cell(cell, device))
            else:
                runnable.append(cell)
        if seed_batching:
            runnable = group_cells(runnable)[0]
        if runnable:
            runner(longest_first(runnable, estimate(runnable, torch.device(device), store.durations())), record)
        evaluated = evaluate_selected(cells, store, device, progress)
        if evaluated and progress:
            print(f"dgbench: held-out splits evaluated at the selected grid points only: {evaluated} cell(s)",
                  file=sys.stderr)
        # Finished: only the checkpoints of cells (and groups) that a retry would continue stay.
        finished = store.finished_keys()  # one query, not one per cell
        unfinished = [c for c in cells if c.key not in finished]
        keep = {c.key for c in unfinished}
        if seed_batching:
            keep |= {g.key for g in group_cells(unfinished)[0] if isinstance(g, CellGroup)}
        remove_stale_files(store.directory, keep)
    except (KeyboardInterrupt, Terminated) as err:
        signum = signal.SIGINT if isinstance(err, KeyboardInterrupt) else signal.SIGTERM
        raise Interrupted(signum, sum(counts.values())) from None
    finally:
        bar.close()
    return counts
