"""The results database: one SQLite file per results directory, written by the driver only;
the one module that holds its schema and its queries (the harness writes through
:class:`ResultStore`, reports and export read through :func:`read_tables`).

WAL journal mode and one transaction per finished cell: a crash or ``kill -9`` loses at
most the cells in flight and never leaves a half-written cell.

Schema (see README, "Results database"):

``suite``    key/value: the suite name, definition (TOML text) and its digest
``runs``     one row per invocation: provenance (git commit, dgbench/torch/python
             versions, CPU model, threads, device, workers) and start/end time
``cells``    one row per finished cell: key, run_id, kind, problem, options (JSON),
             estimator, hyperparameters (JSON), seed, status (done/diverged/failed/
             skipped/pruned), reason, traceback, started, finished, grid (JSON: the cell's
             point of the suite's grid, {} without one)
``metrics``  (cell_key, name, value): scalar results
``series``   (cell_key, step, wall, name, value): time series along training
``catalog``  (kind, id, info): what the run's problems and estimators declare (JSON:
             a problem's true scores and direction, an estimator's capabilities and
             group), so that reports rank and label without importing the registries
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from dgbench.strict_json import json_safe

STATUSES = ("done", "diverged", "failed", "skipped", "pruned")
CELLS_COLUMNS = ("key, run_id, kind, problem, options, estimator, hyperparameters, seed, status, reason, traceback, "
                 "started, finished, grid")


def _cells_table(name: str = "cells") -> str:
    statuses = ", ".join(f"'{s}'" for s in STATUSES)
    return f"""CREATE TABLE IF NOT EXISTS {name} (
    key TEXT PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(run_id),
    kind TEXT NOT NULL, problem TEXT NOT NULL, options TEXT NOT NULL,
    estimator TEXT NOT NULL, hyperparameters TEXT NOT NULL, seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({statuses})),
    reason TEXT, traceback TEXT, started REAL, finished REAL,
    grid TEXT NOT NULL DEFAULT '{{}}'
);"""


SCHEMA = """
CREATE TABLE IF NOT EXISTS suite (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL, finished REAL,
    provenance TEXT NOT NULL
);
{CELLS_TABLE}
CREATE TABLE IF NOT EXISTS metrics (
    cell_key TEXT NOT NULL REFERENCES cells(key), name TEXT NOT NULL, value REAL,
    PRIMARY KEY (cell_key, name)
);
CREATE TABLE IF NOT EXISTS series (
    cell_key TEXT NOT NULL REFERENCES cells(key), step INTEGER NOT NULL, wall REAL,
    name TEXT NOT NULL, value REAL
);
CREATE INDEX IF NOT EXISTS series_cell ON series(cell_key);
CREATE TABLE IF NOT EXISTS suite_cells (key TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS catalog (
    kind TEXT NOT NULL CHECK (kind IN ('problem', 'estimator')), id TEXT NOT NULL, info TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
""".replace("{CELLS_TABLE}", _cells_table())

DB_NAME = "results.db"
FINISHED_KEYS = "SELECT key FROM cells WHERE status != 'failed'"  # failed cells are retried
DURATIONS = "SELECT key, finished - started FROM cells WHERE started IS NOT NULL AND finished IS NOT NULL"


class StoreError(RuntimeError):
    """The results directory cannot be used for this run."""


def _read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection that never writes beside ``path``.

    ``mode=ro`` first, which sees a run's uncommitted-to-file WAL pages. Where that cannot
    open (a WAL database on read-only media, or an archived copy without its ``-wal`` and
    ``-shm`` files, for which SQLite would have to create the shared-memory file), the
    ``immutable`` mode reads the file as it is: nobody can be writing it there."""
    # Quoted: '#', '?' and '%' in a directory name must not end up in the URI's syntax.
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    db = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return db
    except sqlite3.DatabaseError:  # the caller's first query reports what is wrong, if anything
        db.close()
    return sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None)


class NoResults(ValueError):
    """A directory without a results database."""


@dataclass
class ResultTables:
    """The whole database as pandas frames (read-only)."""

    suite: dict[str, str]
    runs: pd.DataFrame
    cells: pd.DataFrame
    metrics: pd.DataFrame  # cell_key, name, value
    series: pd.DataFrame  # cell_key, step, wall, name, value
    catalog: dict[str, dict[str, dict]]  # kind -> id -> declarations


def read_tables(directory: Path) -> ResultTables:
    """Every table of ``directory``'s database, read-only (:class:`NoResults` if there is none)."""
    path = Path(directory) / DB_NAME
    if not path.is_file():
        raise NoResults(f"{directory} holds no results database ({DB_NAME}); run `dgbench run` first")
    try:
        db = _read_only(path)
        db.execute("BEGIN")  # one read transaction: every table from the same moment, even while a run writes
        suite = dict(db.execute("SELECT key, value FROM suite").fetchall())
    except sqlite3.Error as err:
        raise NoResults(f"{path} is not a readable dgbench results database ({err})") from None
    try:
        runs = pd.read_sql("SELECT * FROM runs", db)
        has_grid = "grid" in {row[1] for row in db.execute("PRAGMA table_info(cells)")}  # pre-grid: none
        cells = pd.read_sql("SELECT key, run_id, kind, problem, options, estimator, hyperparameters, seed, "
                            "status, reason, traceback, started, finished, "
                            + ("grid" if has_grid else "'{}' AS grid") + " FROM cells", db)
        metrics = pd.read_sql("SELECT cell_key, name, value FROM metrics", db)
        series = pd.read_sql("SELECT cell_key, step, wall, name, value FROM series", db)
        current = set()
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'suite_cells'").fetchone():
            current = {k for (k,) in db.execute("SELECT key FROM suite_cells")}
        if current:  # cells of an earlier definition of the suite are left out
            cells = cells[cells["key"].isin(current)].reset_index(drop=True)
            metrics = metrics[metrics["cell_key"].isin(current)].reset_index(drop=True)
            series = series[series["cell_key"].isin(current)].reset_index(drop=True)
        catalog: dict[str, dict[str, dict]] = {"problem": {}, "estimator": {}}
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'catalog'").fetchone():
            for kind, ident, info in db.execute("SELECT kind, id, info FROM catalog"):
                catalog[kind][ident] = json.loads(info)
    except (sqlite3.Error, pd.errors.DatabaseError, json.JSONDecodeError) as err:  # damaged pages or rows
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise NoResults(f"{path} is damaged and cannot be read ({detail}); restore it from a copy, or rerun "
                        "the suite into a new directory") from None
    finally:
        db.close()
    return ResultTables(suite, runs, cells, metrics, series, catalog)


def stored_suite(directory: Path) -> dict[str, str]:
    """The suite table of ``directory``'s database, read-only ({} when there is none)."""
    path = directory / DB_NAME
    if not path.is_file():
        return {}
    db = _read_only(path)
    try:
        return dict(db.execute("SELECT key, value FROM suite"))
    except sqlite3.Error as err:
        _raise_if_locked(directory)  # a run that has just created the database, not its tables
        raise StoreError(f"{path} is not a usable dgbench results database ({err}); move it away or "
                         "use another --out") from None
    finally:
        db.close()


def stored_progress(directory: Path) -> tuple[set[str], dict[str, float]]:
    """Keys of the finished cells of ``directory`` and the seconds every stored cell ran
    (read-only; empty where there is no database)."""
    path = Path(directory) / DB_NAME
    if not path.is_file():
        return set(), {}
    db = _read_only(path)
    try:
        finished = {k for (k,) in db.execute(FINISHED_KEYS)}
        seconds = dict(db.execute(DURATIONS))
    except sqlite3.Error as err:
        _raise_if_locked(Path(directory))
        raise StoreError(f"{path} is not a readable dgbench results database ({err})") from None
    finally:
        db.close()
    return finished, seconds


def stored_last_provenance(directory: Path) -> dict[str, Any]:
    """The provenance of the last run recorded in ``directory`` ({} when none)."""
    path = directory / DB_NAME
    if not path.is_file():
        return {}
    db = _read_only(path)
    try:
        row = db.execute("SELECT provenance FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()
    except sqlite3.Error:
        return {}
    finally:
        db.close()
    return json.loads(row[0]) if row else {}


LOCK_NAME = ".dgbench.lock"


class DirectoryLocked(StoreError):
    """Another process holds the results directory."""


def _lock(directory: Path) -> int:
    """An exclusive advisory lock on ``directory`` for this process, holding its PID.

    The kernel releases it when the holder exits, however it exits, so a lock left by a
    dead run is simply taken over."""
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DirectoryLocked(f"another dgbench run (PID {holder}) is writing {directory}; wait for it to finish, "
                              "or use another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _raise_if_locked(directory: Path) -> None:
    """Raise :class:`DirectoryLocked` if another process holds ``directory``'s lock."""
    if not (directory / LOCK_NAME).exists():
        return
    os.close(_lock(directory))  # takes the lock only to test it, and gives it back at once


class ResultStore:
    """The writer of one results directory: one run at a time (an exclusive lock)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(directory)
        self.directory = directory
        self.path = directory / DB_NAME
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            if "grid" not in {row[1] for row in self.db.execute("PRAGMA table_info(cells)")}:  # a pre-grid database
                self.db.execute("ALTER TABLE cells ADD COLUMN grid TEXT NOT NULL DEFAULT '{}'")
            self._allow_every_status()
        except sqlite3.Error as err:
            os.close(self._lock)
            raise StoreError(f"{self.path} is not a usable dgbench results database ({err}); move it away or "
                             "use another --out") from None

    def _allow_every_status(self) -> None:
        """A database written before a status existed (``pruned``) refuses it in its CHECK
        constraint, which SQLite cannot alter: the cells table is rebuilt with today's, in
        one transaction (its rows, keys and order unchanged)."""
        (sql,) = self.db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'cells'").fetchone()
        if all(f"'{s}'" in sql for s in STATUSES):
            return
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DROP TABLE IF EXISTS cells_migrated")
            self.db.execute(_cells_table("cells_migrated"))
            self.db.execute(f"INSERT INTO cells_migrated ({CELLS_COLUMNS}) SELECT {CELLS_COLUMNS} FROM cells")
            self.db.execute("DROP TABLE cells")
            self.db.execute("ALTER TABLE cells_migrated RENAME TO cells")

    def close(self) -> None:
        self.db.close()
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None

    def suite_info(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM suite"))

    def bind_suite(self, name: str, digest: str, source: str, *, update: bool = False) -> None:
        """Record the suite on first use; refuse a directory holding a different suite.

        ``update``: record a changed definition of the same suite; the cells of the old
        definition stay in the database but no longer count as the suite's (reports leave
        them out)."""
        info = self.suite_info()
        if info and info.get("name") != name:
            raise StoreError(f"{self.path.parent} holds results of suite {info.get('name')!r}, not {name!r}; use another --out")
        if not info or (update and info.get("digest") != digest):
            with self.db:
                self.db.execute("BEGIN")
                self.db.execute("DELETE FROM suite")
                self.db.execute("DELETE FROM suite_cells")
                self.db.executemany("INSERT INTO suite VALUES (?, ?)", [("name", name), ("digest", digest), ("source", source)])

    def set_suite_value(self, key: str, value: str) -> None:
        """Record one more fact of the suite (e.g. ``selection``: what its grid selects on)."""
        self.db.execute("INSERT OR REPLACE INTO suite VALUES (?, ?)", (key, value))

    def add_suite_cells(self, keys: Iterable[str]) -> None:
        """Record cell keys as belonging to the current suite definition."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR IGNORE INTO suite_cells VALUES (?)", [(k,) for k in keys])

    def start_run(self, started: float, provenance: dict[str, Any]) -> int:
        text = json.dumps(json_safe(provenance), allow_nan=False, default=str)  # strict JSON: no NaN, no Infinity
        cur = self.db.execute("INSERT INTO runs (started, provenance) VALUES (?, ?)", (started, text))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, finished: float) -> None:
        self.db.execute("UPDATE runs SET finished = ? WHERE run_id = ?", (finished, run_id))

    def write_catalog(self, problems: dict[str, dict[str, Any]], estimators: dict[str, dict[str, Any]]) -> None:
        """Record (or refresh) the declarations of the run's problems and estimators."""
        rows = [("problem", k, json.dumps(v, default=str)) for k, v in problems.items()]
        rows += [("estimator", k, json.dumps(v, default=str)) for k, v in estimators.items()]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO catalog VALUES (?, ?, ?)", rows)

    def last_provenance(self) -> dict[str, Any]:
        row = self.db.execute("SELECT provenance FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()
        return json.loads(row[0]) if row else {}

    def finished_keys(self) -> set[str]:
        """Keys of cells that need no recomputation (failed cells are retried)."""
        return {k for (k,) in self.db.execute(FINISHED_KEYS)}

    def write_cell(self, run_id: int, cell: Any, result: dict[str, Any]) -> None:
        """Write one cell, its metrics and series, in a single transaction."""
        series: Iterable[tuple] = result.get("series", [])
        self.db.execute("BEGIN")
        try:
            self.db.execute("DELETE FROM metrics WHERE cell_key = ?", (cell.key,))
            self.db.execute("DELETE FROM series WHERE cell_key = ?", (cell.key,))
            self.db.execute(
                "INSERT OR REPLACE INTO cells (key, run_id, kind, problem, options, estimator, hyperparameters, seed, "
                "status, reason, traceback, started, finished, grid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (cell.key, run_id, cell.kind, cell.problem, json.dumps(cell.options, sort_keys=True),
                 cell.estimator, json.dumps(cell.hyperparameters, sort_keys=True), cell.seed,
                 result["status"], result.get("reason"), result.get("traceback"),
                 result.get("started"), result.get("finished"),
                 json.dumps(getattr(cell, "grid", None) or {}, sort_keys=True)),
            )
            self.db.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?)",
                [(cell.key, name, _real(value)) for name, value in result.get("metrics", {}).items()],
            )
            self.db.executemany(
                "INSERT INTO series VALUES (?, ?, ?, ?, ?)",
                [(cell.key, step, wall, name, _real(value)) for step, wall, name, value in series],
            )
            self.db.execute("COMMIT")
        except BaseException as err:
            if self.db.in_transaction:  # SQLite may have rolled back itself (disk full): keep the real error
                self.db.execute("ROLLBACK")
            if isinstance(err, sqlite3.Error):
                raise StoreError(f"could not write {self.path}: {err}") from err
            raise

    def statuses(self, keys: set[str]) -> dict[str, str]:
        """The stored status of each of ``keys`` that is stored."""
        rows = self.db.execute("SELECT key, status FROM cells").fetchall()
        return {k: s for k, s in rows if k in keys}

    def metric_values(self, keys: set[str], name: str) -> dict[str, float]:
        """Metric ``name`` of each of ``keys`` that has it."""
        rows = self.db.execute("SELECT cell_key, value FROM metrics WHERE name = ?", (name,)).fetchall()
        return {k: v for k, v in rows if k in keys}

    def metric_names(self, key: str) -> set[str]:
        return {n for (n,) in self.db.execute("SELECT name FROM metrics WHERE cell_key = ?", (key,))}

    def add_metrics(self, key: str, metrics: dict[str, float]) -> None:
        """Add (or replace) metrics of a stored cell, in one transaction (the held-out
        evaluation of a selected grid point, computed after the cell itself)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?)",
                                [(key, name, _real(value)) for name, value in metrics.items()])

    def durations(self) -> dict[str, float]:
        """Seconds each stored cell ran (any status), by key."""
        return dict(self.db.execute(DURATIONS))

    def failed_keys(self, reason_prefix: str) -> set[str]:
        """Keys of failed cells whose reason starts with ``reason_prefix``."""
        return {k for (k,) in self.db.execute("SELECT key FROM cells WHERE status = 'failed' AND substr(reason, 1, ?) = ?",
                                              (len(reason_prefix), reason_prefix))}

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM cells GROUP BY status"))


def _real(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if value == value else None  # NaN as NULL
