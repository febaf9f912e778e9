"""A results directory as pandas frames, read through :mod:`dgbench.store` (read-only).

Reports depend on nothing but the results database (see README, "Results database").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dgbench.store import NoResults, read_tables


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
    try:
        t = read_tables(Path(directory))
    except NoResults as err:
        raise ReportError(str(err)) from None
    cells = t.cells.drop(columns=["traceback"])
    cells["config"] = [config_label(p, o) for p, o in zip(cells["problem"], cells["options"])]
    columns = ["key", "kind", "config", "problem", "estimator", "seed", "status"]
    return Results(
        suite=t.suite, runs=t.runs, cells=cells,
        metrics=t.metrics.rename(columns={"cell_key": "key"}).merge(cells[columns], on="key"),
        series=t.series.rename(columns={"cell_key": "key"}).merge(cells[columns], on="key"),
        problems=t.catalog["problem"], estimators=t.catalog["estimator"],
    )
