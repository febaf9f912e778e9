"""A results directory as pandas frames: read-only access to its SQLite database.

Reports depend on nothing but this file format (see README, "Results database").
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

DB_FILE = "results.db"


class ReportError(ValueError):
    """A directory that holds no readable results."""


@dataclass
class Results:
    suite: dict[str, str]
    runs: pd.DataFrame
    cells: pd.DataFrame  # one row per cell, with a `config` label (problem and options)
    metrics: pd.DataFrame  # cells joined with (name, value)
    series: pd.DataFrame  # cells joined with (step, wall, name, value)
    problems: dict[str, dict] = field(default_factory=dict)  # declarations from the catalog table
    estimators: dict[str, dict] = field(default_factory=dict)

    def provenance(self) -> dict:
        """The provenance of the latest run."""
        if self.runs.empty:
            return {}
        return json.loads(self.runs.sort_values("run_id").iloc[-1]["provenance"])


def config_label(problem: str, options: str) -> str:
    """``problem`` with its options, e.g. ``bernoulli-toy(dim=16, target=0.499)``."""
    opts = json.loads(options) if options else {}
    if not opts:
        return problem
    return problem + "(" + ", ".join(f"{k}={v}" for k, v in sorted(opts.items())) + ")"


def load(directory: str | Path) -> Results:
    path = Path(directory) / DB_FILE
    if not path.is_file():
        raise ReportError(f"{directory} holds no results database ({DB_FILE}); run `dgbench run` first")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        suite = dict(db.execute("SELECT key, value FROM suite").fetchall())
        runs = pd.read_sql("SELECT * FROM runs", db)
        cells = pd.read_sql("SELECT key, run_id, kind, problem, options, estimator, hyperparameters, seed, "
                            "status, reason, started, finished FROM cells", db)
        metrics = pd.read_sql("SELECT cell_key AS key, name, value FROM metrics", db)
        series = pd.read_sql("SELECT cell_key AS key, step, wall, name, value FROM series", db)
        catalog = {"problem": {}, "estimator": {}}
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'catalog'").fetchone():
            for kind, ident, info in db.execute("SELECT kind, id, info FROM catalog"):
                catalog[kind][ident] = json.loads(info)
    cells["config"] = [config_label(p, o) for p, o in zip(cells["problem"], cells["options"])]
    columns = ["key", "kind", "config", "problem", "estimator", "seed", "status"]
    return Results(
        suite=suite, runs=runs, cells=cells,
        metrics=metrics.merge(cells[columns], on="key"),
        series=series.merge(cells[columns], on="key"),
        problems=catalog["problem"], estimators=catalog["estimator"],
    )
