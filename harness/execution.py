"""Running a plan as one recorded run, on a backend (:mod:`dgbench.harness.backends`).

The driver alone writes the results store, one transaction per finished cell, as
results arrive (in any order); the run's provenance records the workers and their
threads, the backend's facts and the plan's stacked groups.
"""

from __future__ import annotations

import signal
import sys
import time

from tqdm import tqdm

from dgbench.errors import Interrupted, Terminated
from dgbench.harness import halving
from dgbench.harness.backends import Backend
from dgbench.harness.cells import run_cell
from dgbench.harness.checkpoints import remove_checkpoint, remove_stale_files
from dgbench.harness.planning import Plan, make_plan
from dgbench.harness.provenance import provenance
from dgbench.harness.seed_batching import CellGroup, group_cells, member_results
from dgbench.harness.selected_evaluation import evaluate_selected, save_final
from dgbench.harness.suites import Cell
from dgbench.problems.registry import PROBLEMS
from dgbench.store import ResultStore


def _capabilities(cell: Cell) -> dict:
    """What the cell's estimator declares; a suite variant is its estimator's declaration
    under the variant's id, with its hyperparameters."""
    info = cell.estimator_class.capabilities()
    if cell.variant_of:
        info.update(id=cell.estimator, variant_of=cell.variant_of,
                    hyperparameters={**info["hyperparameters"], **cell.hyperparameters},
                    variant_hyperparameters={k: v for k, v in cell.hyperparameters.items() if k != "samples"})
    return info


def execute(cells: list[Cell], store: ResultStore, backend: Backend, *, name: str, device: str,
            progress: bool = True, seed_batching: bool = False, prune: str = "none",
            cpu_auto: bool = False) -> dict[str, int]:
    """One recorded run of ``cells`` into ``store`` on ``backend``: plan what is left
    (:func:`dgbench.harness.planning.make_plan`), record the provenance (with the
    backend's facts and the plan's groups), run the plan, and evaluate the held-out splits
    of the selected grid points; counts by status. ``prune="halving"``: grids train by
    successive halving (:mod:`dgbench.harness.halving`). Raises
    :class:`dgbench.errors.Interrupted` when stopped by Ctrl-C or SIGTERM (the cells
    finished until then are stored)."""
    remove_stale_files(store.directory)  # the partial files of writers that died
    workers = getattr(backend, "workers", 1)
    plan = make_plan(name, cells, finished=store.finished_keys(), measured=store.durations(), device=device,
                     workers=workers, threads=backend.threads, seed_batching=seed_batching, prune=prune,
                     cpu_auto=cpu_auto)
    with backend.session(store) as facts:
        info = provenance(device, min(workers, max(1, len(cells))), backend.threads)
        info.update(facts)
        store.write_catalog({c.problem: PROBLEMS[c.problem].describe() for c in cells},
                            {c.estimator: _capabilities(c) for c in cells})
        store.add_suite_cells(c.key for c in cells)
        info["seed_batching"] = plan.batching_summary()
        info["prune"] = prune
        run_id = store.start_run(time.time(), info)
        counts = run_plan(plan, store, run_id, backend, device=device, progress=progress)
        store.finish_run(run_id, time.time())
    return counts


def run_plan(plan: Plan, store: ResultStore, run_id: int, backend: Backend, *, device: str,
             progress: bool = True) -> dict[str, int]:
    """Record the plan's skipped cells, hand its units to ``backend`` (each member's result
    of a stacked group is recorded as its own cell's), evaluate the held-out splits at the
    selected grid points, and keep only the checkpoints a retry would continue from;
    counts by status."""
    for key in plan.finished:  # left behind by a driver that died after storing the cell
        remove_checkpoint(store.directory, key)
    counts: dict[str, int] = {}
    bar = tqdm(total=len(plan.skipped) + plan.cells_to_run, unit="cell", disable=not progress, dynamic_ncols=True)

    def record_one(cell: Cell, result: dict) -> None:
        if result["status"] == "paused":  # a rung of successive halving: its checkpoint stays
            halving.save_paused(store.directory, cell.key, cell.stop_at, result)
            bar.set_postfix_str(f"{cell.estimator} on {cell.problem}: paused at step {cell.stop_at}", refresh=False)
            bar.refresh()
            return
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
        for cell in plan.skipped:
            record(cell, run_cell(cell, device))
        if plan.units and plan.prune == "halving":
            pruned = halving.shares(plan.cells)
            halving.run_rungs(plan.cells, [u for u in plan.units if u.key not in pruned], store,
                              lambda units: backend.run(sorted(units, key=lambda u: -plan.seconds.get(u.key, 0.0)),
                                                        record),
                              record_one)
        elif plan.units:
            backend.run(plan.units, record)
        evaluated = evaluate_selected(plan.cells, store, device, progress)
        if evaluated and progress:
            print(f"dgbench: held-out splits evaluated at the selected grid points only: {evaluated} cell(s)",
                  file=sys.stderr)
        # Finished: only the checkpoints of cells (and groups) that a retry would continue stay.
        finished = store.finished_keys()  # one query, not one per cell
        unfinished = [c for c in plan.cells if c.key not in finished]
        keep = {c.key for c in unfinished}
        if plan.seed_batching:
            keep |= {g.key for g in group_cells(unfinished, cpu_auto=plan.cpu_auto)[0] if isinstance(g, CellGroup)}
        remove_stale_files(store.directory, keep)
    except (KeyboardInterrupt, Terminated) as err:
        signum = signal.SIGINT if isinstance(err, KeyboardInterrupt) else signal.SIGTERM
        raise Interrupted(signum, sum(counts.values())) from None
    finally:
        bar.close()
    return counts
