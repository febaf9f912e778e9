"""A results directory as pandas frames, read through :mod:`dgbench.store` (read-only).

Reports depend on nothing but the results database (see README, "Results database").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dgbench import selection
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
    # A tuned suite: one row per (config, estimator) with its selected grid point, and every
    # training cell's selection value at every grid point (the sensitivity figure's data).
    # The frames above then hold the selected points' cells only. Empty without a grid.
    selection: pd.DataFrame = field(default_factory=pd.DataFrame)
    tuning: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def tuned(self) -> bool:
        return not self.selection.empty

    def selected(self, config: str, estimator: str) -> str | None:
        """The selected grid point's label, e.g. ``lr=0.03`` (None: not tuned)."""
        if self.selection.empty:
            return None
        row = self.selection[(self.selection["config"] == config) & (self.selection["estimator"] == estimator)]
        return None if row.empty else row["selected"].iloc[0]

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
    metrics = t.metrics.rename(columns={"cell_key": "key"}).merge(cells[columns], on="key")
    series = t.series.rename(columns={"cell_key": "key"})
    selection, tuning = pd.DataFrame(), pd.DataFrame()
    spec = json.loads(t.suite.get("selection", "{}") or "{}")
    if spec and (cells["grid"] != "{}").any():
        selection, tuning, keep = select_points(cells, metrics, spec)
        cells = cells[cells["key"].isin(keep)].reset_index(drop=True)
        metrics = metrics[metrics["key"].isin(keep)].reset_index(drop=True)
        series = series[series["key"].isin(keep)]
    return Results(
        suite=t.suite, runs=t.runs, cells=cells, metrics=metrics,
        series=series.merge(cells[columns], on="key"),
        problems=t.catalog["problem"], estimators=t.catalog["estimator"],
        selection=selection, tuning=tuning,
    )


def _grid_order(text: str) -> tuple:
    point = json.loads(text)
    return tuple((k, (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))) for k, v in sorted(point.items()))


def select_points(cells: pd.DataFrame, metrics: pd.DataFrame,
                  spec: dict[str, dict[str, str]]) -> tuple[pd.DataFrame, pd.DataFrame, set[str]]:
    """Grid selection (:mod:`dgbench.selection`) per (config, estimator) of the training
    cells: the selection table, the tuning values, and the keys of the cells to report
    (training cells at the selected point; gradient statistics at its hyperparameters;
    every cell of a configuration without a grid)."""
    keep: set[str] = set(cells.loc[cells["grid"] == "{}", "key"])
    rows, values = [], []
    train = cells[cells["kind"] == "train"]
    for (config, estimator), group in train.groupby(["config", "estimator"], sort=True):
        chosen = spec.get(config)
        order = sorted(group["grid"].unique(), key=_grid_order)
        if chosen is None or order == ["{}"] or (group["status"] == "skipped").all():
            keep |= set(cells.loc[(cells["config"] == config) & (cells["estimator"] == estimator), "key"])
            continue
        name = f"final_{chosen['metric']}"
        mine = metrics[(metrics["name"] == name) & metrics["key"].isin(group["key"])].set_index("key")["value"]
        planned = int(group.groupby("grid")["seed"].nunique().max())
        records = [(json.loads(g), status, mine.get(key)) for key, g, status in
                   group[["key", "grid", "status"]].itertuples(index=False)]
        result = selection.from_records(records, [json.loads(g) for g in order], planned, chosen["direction"],
                                        allow_partial=True)
        for key, g, seed, status in group[["key", "grid", "seed", "status"]].itertuples(index=False):
            values.append({"config": config, "estimator": estimator, "point": selection.point_label(json.loads(g)),
                           **{f"axis {k}": v for k, v in json.loads(g).items()}, "seed": seed, "status": status,
                           "metric": chosen["metric"], "value": mine.get(key)})
        best = result.selected.point if result.selected else json.loads(order[0])
        best_key = selection.point_key(best)
        keep |= {key for key, g in group[["key", "grid"]].itertuples(index=False)
                 if selection.point_key(json.loads(g)) == best_key}
        stats = cells[(cells["config"] == config) & (cells["estimator"] == estimator) & (cells["kind"] != "train")]
        keep |= {key for key, g in stats[["key", "grid"]].itertuples(index=False)
                 if json.loads(g).items() <= best.items()}
        rows.append({"config": config, "estimator": estimator, "selected": selection.point_label(best),
                     "metric": chosen["metric"], "direction": chosen["direction"],
                     "mean": result.selected.mean if result.selected else float("nan"),
                     "points": len(order), "complete": sum(p.settled for p in result.points),
                     "pruned": sum(1 for p in result.points if p.pruned),
                     "edge": result.on_edge or "", "partial": result.partial or result.selected is None})
    return pd.DataFrame(rows), pd.DataFrame(values), keep
