"""``dgbench.run``: a suite into a results directory, resuming what is already there.

:func:`open_results` is the one setup path of ``run`` and ``compare``: it checks the
directory, binds the suite and says what changed since the last run there.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dgbench.errors import UsageError
from dgbench.harness.backends import make_backend
from dgbench.harness.devices import DeviceUnavailable, resolve_device
from dgbench.harness.execution import execute
from dgbench.harness.halving import METHODS as HALVING_METHODS
from dgbench.harness.local_backend import DEFAULT_CELL_TIMEOUT, WorkersCannotStart
from dgbench.harness.planning import Plan, make_plan
from dgbench.harness.provenance import git_commit
from dgbench.harness.result_files import DEFAULT_CHECKPOINT_SECONDS
from dgbench.harness.suites import Cell, Suite, SuiteError, expand, load_suite, positive_seconds
from dgbench.problems.data import DataUnavailable
from dgbench.problems.registry import PROBLEMS
from dgbench.store import DB_NAME, ResultStore, StoreError, stored_progress, stored_suite


@dataclass
class RunSummary:
    suite: str
    out: Path
    cells: int
    already_finished: int
    counts: dict[str, int]  # this run's cells by status
    totals: dict[str, int]  # the directory's cells by status
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.counts.get("failed") or self.totals.get("failed"))


def check_data(cells: list[Cell]) -> None:
    """Fetch or verify every data set the cells need, once, before any worker starts
    (UsageError naming the problem if one is unavailable)."""
    for problem, options in {(c.problem, json.dumps(c.options, sort_keys=True)): None for c in cells}:
        try:
            PROBLEMS[problem].prepare_data(json.loads(options))
        except DataUnavailable as err:
            raise UsageError(f"{problem}: {err}") from None


MAX_WORKERS = 4096
MAX_RETRIES = 100


def check_seconds(value: float, flag: str) -> float:
    """A finite positive number of seconds (UsageError naming ``flag`` otherwise)."""
    try:
        return positive_seconds(value, flag)
    except SuiteError as err:
        raise UsageError(str(err)) from None


def check_counts(*, retries: int | None = None, workers: int | None = None, threads: int | None = None) -> None:
    """The run's integer options within their ranges (UsageError naming the flag otherwise)."""
    for flag, value, low, high in (("--retries", retries, 0, MAX_RETRIES), ("--workers", workers, 1, MAX_WORKERS),
                                   ("--threads", threads, 1, MAX_WORKERS)):
        if value is not None and not low <= value <= high:
            raise UsageError(f"{flag} must be between {low} and {high:,}, got {value:,}")


def _changes(old: str, new: str) -> str:
    """The first changed lines of a suite definition, for a one-line message."""
    lines = [line for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
             if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    shown = "; ".join(line.strip() for line in lines[:4])
    return shown + ("; ..." if len(lines) > 4 else "")


def open_results(out: Path, suite: Suite, update_suite: bool = False) -> tuple[ResultStore, list[str]]:
    """The store of ``out`` bound to ``suite``, and notes on what changed since its last run.

    A changed definition of the suite is refused unless ``update_suite``: then it is
    recorded, and the old definition's cells are left out of reports."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    notes = []
    try:
        previous = stored_suite(out)
    except StoreError as err:
        raise UsageError(str(err)) from None
    if previous and previous.get("name") != suite.name:
        raise UsageError(f"{out} holds results of suite {previous.get('name')!r}, not {suite.name!r}; use another --out")
    if previous and previous.get("digest") != suite.digest:
        if not update_suite:
            raise UsageError(f"suite {suite.name!r} changed since {out} was written ({_changes(previous.get('source', ''), suite.source)}); "
                             "rerun with --update-suite to record the new definition (reports then leave the old "
                             "cells out), or use another --out")
        notes.append(f"suite {suite.name!r} changed since {out} was written: the new definition is recorded and "
                     "reports leave the old definition's cells out")
    try:
        store = ResultStore(out)
    except StoreError as err:  # another run holds the directory
        raise UsageError(str(err)) from None
    try:
        store.bind_suite(suite.name, suite.digest, suite.source, update=update_suite)
    except StoreError as err:
        store.close()
        raise UsageError(str(err)) from None
    if suite.tuned:  # what each configuration's grid points are selected on, for the reports
        from dgbench.reports.results import config_label

        selection = {config_label(spec["id"], json.dumps(spec["options"], sort_keys=True)): suite.selection(spec)
                     for spec in suite.problems}
        store.set_suite_value("selection", json.dumps(selection, sort_keys=True))
    last = store.last_provenance()
    commit = git_commit()
    if last and last.get("git_commit") != commit:
        notes.append(f"code version changed since the last run in {out} ({last.get('git_commit')} -> {commit}); "
                     "finished cells are kept")
    return store, notes


def run(suite: str, out: str | Path | None = None, *, problems: list[str] | None = None,
        estimators: list[str] | None = None, seeds: int | None = None, workers: int = 1, device: str = "cpu",
        backend: str = "local", scheduler: str | None = None, retries: int = 2, progress: bool = False,
        update_suite: bool = False, cell_timeout: float | None = None,
        checkpoint_every: float = DEFAULT_CHECKPOINT_SECONDS, in_process: bool = False,
        dry_run: bool = False, threads: int | None = None, seed_batching: str = "auto",
        prune: str = "none") -> RunSummary | Plan:
    """Run ``suite`` (a shipped name or a TOML path) into ``out`` (default ``results/SUITE``).

    A pipeline, each step once: load the suite and expand its cells; plan what is left
    (:mod:`dgbench.harness.planning`: grouped, costed, ordered); open the store; hand the
    plan to the backend (:mod:`dgbench.harness.backends`); summarise.

    Cells already finished there are kept (failed ones are retried, those that killed
    their worker last). ``cell_timeout``: seconds a cell may run (default: the suite's
    ``cell_timeout``, else 3600; local backend). ``dry_run``: compute nothing, return the
    :class:`Plan` (cells and estimated time). ``seed_batching``: "on" trains the seeds (and
    a grid's learning rates) of a training cell as one stacked model where they can batch,
    "off" never, "auto" (the default) every problem that can on CUDA devices and, on the
    CPU, the problems whose steps are dominated by overhead (``stacks_on_cpu_with``: the
    toys, the VAEs on the digits), except estimators that enumerate
    (:mod:`dgbench.harness.seed_batching`). ``prune``: "halving" trains each grid by
    successive halving (:mod:`dgbench.harness.halving`: hopeless points stop early, a
    protocol difference the report states), "none" (the default) trains every point to
    the end. Raises :class:`UsageError` on bad input, before
    anything is computed, and :class:`dgbench.errors.Interrupted` when stopped by Ctrl-C or
    SIGTERM (finished cells are stored; run again to resume).
    """
    try:
        definition = load_suite(suite)
        cells = expand(definition, problems, estimators, seeds)
        if not (backend == "dask" and scheduler):  # remote workers check their own devices
            device = str(resolve_device(device))  # "auto" becomes the device it chose
    except (SuiteError, DeviceUnavailable) as err:
        raise UsageError(str(err)) from None
    check_counts(retries=retries, workers=workers, threads=threads)
    if seed_batching not in ("auto", "on", "off"):
        raise UsageError(f"--seed-batching must be auto, on or off, got {seed_batching!r}")
    if prune not in HALVING_METHODS:
        raise UsageError(f"--prune must be one of {', '.join(HALVING_METHODS)}, got {prune!r}")
    if prune == "halving" and seed_batching == "on":
        raise UsageError("--prune halving runs cell by cell (its rungs pause and resume single cells): "
                         "use it without --seed-batching on")
    # auto: every problem that can stack on CUDA; on the CPU only those whose steps are
    # dominated by overhead (the toys, the digits VAEs; not enumeration), as measured
    batch_seeds = prune == "none" and seed_batching != "off"
    cpu_auto = seed_batching == "auto" and not device.startswith("cuda")
    for flag, value in (("--cell-timeout", cell_timeout), ("--checkpoint-every", checkpoint_every)):
        if value is not None:
            check_seconds(value, flag)
    explicit_timeout = cell_timeout or definition.cell_timeout
    workers_used = min(workers, max(1, len(cells)))
    runner = make_backend(backend, workers=workers_used, device=device, threads=threads, scheduler=scheduler,
                          retries=retries, cell_timeout=explicit_timeout or DEFAULT_CELL_TIMEOUT,
                          explicit_timeout=bool(explicit_timeout), checkpoint_every=checkpoint_every,
                          in_process=in_process)
    cores = os.cpu_count() or 1
    if backend == "local" and workers > cores:
        print(f"dgbench: warning: --workers {workers} exceeds the {cores} cores of this machine: cells will compete "
              "for cores and their timings are inflated (the run's provenance records it)", file=sys.stderr)
    check_data(cells)
    out = Path(out or f"results/{definition.name}")
    if dry_run:
        return dry_plan(definition.name, cells, out, workers, device, threads, batch_seeds, prune, cpu_auto)
    store, notes = open_results(out, definition, update_suite)
    for note in notes:
        print(f"dgbench: note: {note}", file=sys.stderr)
    already = len(store.finished_keys() & {c.key for c in cells})
    from dgbench.harness.dask_backend import DaskUnavailable

    try:
        counts = execute(cells, store, runner, name=definition.name, device=device, progress=progress,
                         seed_batching=batch_seeds, prune=prune, cpu_auto=cpu_auto)
        totals = store.counts()
    except (DaskUnavailable, StoreError, WorkersCannotStart) as err:  # storage errors too: one line, exit status 2
        raise UsageError(str(err)) from None
    finally:
        store.close()
    return RunSummary(definition.name, out, len(cells), already, counts, totals, notes)


def dry_plan(name: str, cells: list[Cell], out: Path, workers: int, device: str, threads: int | None = None,
             seed_batching: bool = False, prune: str = "none", cpu_auto: bool = False) -> Plan:
    """The plan a run would follow in ``out`` (read-only: nothing is written)."""
    try:
        finished, measured = stored_progress(out)
    except StoreError as err:
        raise UsageError(str(err)) from None
    return make_plan(name, cells, finished=finished, measured=measured, device=device, workers=workers,
                     threads=threads, seed_batching=seed_batching, prune=prune, cpu_auto=cpu_auto)


def summary_line(summary: RunSummary) -> str:
    parts = ", ".join(f"{summary.counts.get(k, 0)} {k}" for k in ("done", "diverged", "skipped", "failed"))
    if summary.counts.get("pruned"):
        parts += f", {summary.counts['pruned']} pruned"
    return (f"{summary.suite}: {summary.cells} cells, {summary.already_finished} already finished; "
            f"this run: {parts} -> {summary.out / DB_NAME}")

