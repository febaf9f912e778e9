"""Statistics across seeds: means with 95% bootstrap intervals, and the detailed tables.

Each (problem configuration, estimator) pair is summarised over its finished seeds: the
mean and a 95% percentile-bootstrap interval of the mean (scipy.stats.bootstrap, 2000
resamples, fixed seed; no interval from one seed; a constant shown once, without an
interval). Gradient variance is summarised on a log10 scale. Diverged and failed cells are
counted and listed, never silently dropped.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import bootstrap

from dgbench.reports.leaderboard import Board, declared_unbiased, group_of, is_reference, score_specs, variant_label
from dgbench.reports.results import Results

CONFIDENCE = 0.95
RESAMPLES = 2000

# (column, metric name, cell kind, transform, scale): columns of summary.csv
QUANTITIES = [
    ("exact objective", "final_exact_objective", "train", None, 1.0),
    ("test ELBO", "final_test_elbo", "train", None, 1.0),
    ("test IWAE", "final_test_iwae", "train", None, 1.0),
    ("test accuracy", "final_test_accuracy", "train", None, 1.0),
    ("test objective", "final_test_objective", "train", None, 1.0),
    ("final objective", "final_objective", "train", None, 1.0),
    ("log10 grad variance", "variance_mean", "gradstats", "log10", 1.0),
    ("grad bias norm", "bias_norm", "gradstats", None, 1.0),
    ("grad bias z max", "bias_z_max", "gradstats", None, 1.0),
    ("grad MSE", "mse", "gradstats", None, 1.0),
    ("ms per estimate", "seconds_per_estimate", "gradstats", None, 1e3),
    ("f evals per estimate", "evals_per_estimate", "gradstats", None, 1.0),
    ("ms per step", "seconds_per_step", "train", None, 1e3),
    ("f evals per step", "evals_per_step", "train", None, 1.0),
]

# Headers of the detailed tables: units and direction where they apply.
HEADERS = {
    "final objective": "train objective, last step (relaxed: surrogate)",
    "log10 grad variance": "log10 variance ↓",
    "grad bias norm": "bias norm",
    "grad MSE": "MSE ↓",
    "ms per estimate": "ms per estimate",
    "f evals per estimate": "f evals per estimate",
    "ms per step": "ms per step",
    "f evals per step": "f evals per step",
}


def mean_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% bootstrap interval; NaN bounds from fewer than two values."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, math.nan
    if np.all(values == values[0]):
        return mean, mean, mean
    result = bootstrap((values,), np.mean, confidence_level=CONFIDENCE, n_resamples=RESAMPLES,
                       method="percentile", rng=np.random.default_rng(0))
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)


def long_summary(results: Results) -> pd.DataFrame:
    """Tidy: config, estimator, quantity, seeds, mean, ci_low, ci_high."""
    m = results.metrics
    m = m[m["status"] == "done"]
    rows = []
    for column, name, kind, transform, scale in QUANTITIES:
        sub = m[(m["name"] == name) & (m["kind"] == kind)]
        for (config, estimator), group in sub.groupby(["config", "estimator"], sort=True):
            values = group["value"].to_numpy(dtype=float) * scale
            if transform == "log10":
                with np.errstate(divide="ignore"):
                    values = np.log10(values)
            mean, low, high = mean_interval(values)
            rows.append({"config": config, "estimator": estimator, "quantity": column,
                         "seeds": int(np.isfinite(values).sum()), "mean": mean, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["config", "estimator", "quantity", "seeds", "mean", "ci_low", "ci_high"])


def status_counts(results: Results) -> pd.DataFrame:
    """Cells per (config, estimator) and status."""
    counts = results.cells.groupby(["config", "estimator", "status"]).size().unstack(fill_value=0)
    for status in ("done", "diverged", "failed", "skipped"):
        if status not in counts:
            counts[status] = 0
    return counts[["done", "diverged", "failed", "skipped"]]


def format_value(value: float) -> str:
    if not math.isfinite(value):
        return "-inf" if value == -math.inf else ""
    return f"{value:.4g}"


def format_cell(mean: float, low: float, high: float) -> str:
    """``mean [low, high]``; a constant (low == high == mean) or one seed: the mean alone."""
    if not math.isfinite(mean):
        return format_value(mean)
    text = format_value(mean)
    if math.isfinite(low) and math.isfinite(high) and not (low == high == mean):
        text += f" [{low:.4g}, {high:.4g}]"
    return text


def numeric_table(results: Results, long: pd.DataFrame, board_map: dict[str, Board]) -> pd.DataFrame:
    """summary.csv: every quantity's mean and interval, ranks, bias verdicts, status counts."""
    counts = status_counts(results)
    numeric = pd.DataFrame(index=counts.index)
    seeds = long.groupby(["config", "estimator"])["seeds"].max()
    numeric["seeds"] = seeds.reindex(counts.index).fillna(0).astype(int)
    for column, *_ in QUANTITIES:
        sub = long[long["quantity"] == column].set_index(["config", "estimator"])
        if sub.empty:
            continue
        sub = sub.reindex(counts.index)
        for stat in ("mean", "ci_low", "ci_high"):
            numeric[f"{column} {stat}"] = sub[stat]
    extra = {name: [] for name in ("selected", "group", "declared unbiased", "score metric", "score rank", "score mark",
                                   "budget", "bias verdict", "variance rank", "variance mark", "work rank",
                                   "work mark")}
    for config, estimator in counts.index:
        board = board_map.get(config)
        standing = board.by_score.get(estimator) if board else None
        verdict = board.bias.get(estimator) if board else None
        var = board.by_variance.get(estimator) if board else None
        work = board.by_work.get(estimator) if board else None
        extra["selected"].append(results.selected(config, estimator) or "")
        extra["group"].append(group_of(results, estimator))
        extra["declared unbiased"].append(declared_unbiased(results, estimator))
        extra["score metric"].append(board.score.metric if board and board.score else None)
        over = board.budget_note(estimator) if board else ""
        extra["score rank"].append(standing.rank if standing else None)
        extra["score mark"].append(standing.mark if standing else ("over budget" if over else None))
        extra["budget"].append("reference" if is_reference(results, estimator) else
                               over or ("within budget" if board and math.isfinite(board.eval_budget) else None))
        extra["bias verdict"].append(verdict.verdict if verdict else None)
        extra["variance rank"].append(var.rank if var else None)
        extra["variance mark"].append(var.mark if var else None)
        extra["work rank"].append(work.rank if work else None)
        extra["work mark"].append(work.mark if work else None)
    for name, values in extra.items():
        numeric[name] = values
    for status in counts.columns:
        numeric[status] = counts[status]
    return numeric


def config_tables(results: Results, long: pd.DataFrame, board_map: dict[str, Board]) -> dict[str, pd.DataFrame]:
    """Per configuration, the detailed display table (strings), best score first, and the
    estimators with no finished cell left out (see :func:`not_run`)."""
    counts = status_counts(results)
    tables = {}
    for config in sorted(counts.index.get_level_values(0).unique()):
        board = board_map.get(config)
        sub = long[long["config"] == config]
        finished = counts.loc[config]
        estimators = [e for e in finished.index if finished.loc[e, "done"] + finished.loc[e, "diverged"] > 0]
        if not estimators:
            continue
        # Every declared score, whatever its metric (not only the quantities of summary.csv).
        specs = score_specs(results, results.cells.loc[results.cells["config"] == config, "problem"].iloc[0])
        done = results.metrics[(results.metrics["config"] == config) & (results.metrics["kind"] == "train")
                               & (results.metrics["status"] == "done")]
        score_values = {(spec.column, e): mean_interval(g["value"].to_numpy(float))
                        for spec in specs for e, g in done[done["name"] == spec.column].groupby("estimator")}
        rows = []
        for estimator in estimators:
            mine = sub[sub["estimator"] == estimator].set_index("quantity")
            unbiased = declared_unbiased(results, estimator)
            declared = "" if unbiased is None else (" · declared unbiased" if unbiased else " · declared biased")
            variant = variant_label(results, estimator)
            row = {"rank": "reference" if is_reference(results, estimator) else "",
                   "estimator": f"{estimator}\n{group_of(results, estimator)}{declared}"
                                + (f" · {variant}" if variant else "")}
            chosen = results.selected(config, estimator)
            if chosen is not None:
                row["selected"] = chosen
            if board and board.score:
                standing = board.by_score.get(estimator)
                if standing:
                    row["rank"] = str(standing.rank)
                elif estimator in board.over_budget:
                    row["rank"] = board.budget_note(estimator)
                for spec in specs:
                    label = spec.label + (" ↑" if spec.higher_is_better else " ↓")
                    row[label] = format_cell(*score_values.get((spec.column, estimator), (math.nan,) * 3))
                if standing:
                    row["vs best"] = {"best": "best", "tied": "≈ tied", "worse": "worse",
                                      "untested": "—"}[standing.mark]
            verdict = board.bias.get(estimator) if board else None
            row["bias at init"] = verdict.text() if verdict else ""
            for column in ("grad bias norm", "log10 grad variance", "grad MSE", "ms per estimate",
                           "f evals per estimate", "final objective", "ms per step"):
                row[HEADERS[column]] = _cell(mine, column)
            seeds = mine["seeds"].max() if len(mine) else 0
            row["seeds"] = str(int(seeds)) if seeds == seeds else "0"
            problems = [f"{int(finished.loc[estimator, s])} {s}" for s in ("diverged", "failed")
                        if finished.loc[estimator, s]]
            row["cells not done"] = ", ".join(problems)
            rows.append(row)
        table = pd.DataFrame(rows)
        table = table.loc[:, [c for c in table.columns if (table[c].astype(str) != "").any() or c == "rank"]]
        order = table["rank"].map(lambda r: int(r) if r.isdigit() else (0 if r == "reference" else 10**6))
        tables[config] = table.assign(_order=order).sort_values(["_order", "estimator"]).drop(columns="_order")
    return tables


def _cell(mine: pd.DataFrame, column: str | None) -> str:
    if column is None or column not in mine.index:
        return ""
    row = mine.loc[column]
    return format_cell(row["mean"], row["ci_low"], row["ci_high"])


def not_run(results: Results) -> dict[str, dict[str, list[str]]]:
    """Per configuration: reason -> estimators that finished no cell there (all skipped or failed)."""
    cells = results.cells
    out: dict[str, dict[str, list[str]]] = {}
    for (config, estimator), group in cells.groupby(["config", "estimator"]):
        if group["status"].isin(["done", "diverged"]).any():
            continue
        reason = group["reason"].dropna().iloc[0] if group["reason"].notna().any() else group["status"].iloc[0]
        reason = str(reason).splitlines()[0]
        out.setdefault(config, {}).setdefault(reason, []).append(estimator)
    return out
