"""Statistics across seeds: means with 95% bootstrap intervals, relative times, ranks.

Each (problem configuration, estimator) pair is summarised over its seeds: the mean and
a 95% percentile-bootstrap interval of the mean (scipy.stats.bootstrap, 2000 resamples,
fixed seed; no interval from one seed). Gradient variance is summarised on a log10 scale.
Diverged and failed cells are counted and listed, never silently dropped.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import bootstrap

from reports.results import Results

CONFIDENCE = 0.95
RESAMPLES = 2000

# (column, metric name, cell kind, transform)
QUANTITIES = [
    ("final objective", "final_objective", "train", None),
    ("test ELBO", "final_test_elbo", "train", None),
    ("test IWAE", "final_test_iwae", "train", None),
    ("test accuracy", "final_test_accuracy", "train", None),
    ("log10 grad variance", "variance_mean", "gradstats", "log10"),
    ("grad bias norm", "bias_norm", "gradstats", None),
    ("grad MSE", "mse", "gradstats", None),
    ("seconds per step", "seconds_per_step", "train", None),
    ("f evals per step", "evals_per_step", "train", None),
]


def mean_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% bootstrap interval; NaN bounds from fewer than two distinct values."""
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
    for column, name, kind, transform in QUANTITIES:
        sub = m[(m["name"] == name) & (m["kind"] == kind)]
        for (config, estimator), group in sub.groupby(["config", "estimator"], sort=True):
            values = group["value"].to_numpy(dtype=float)
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


def directions(results: Results) -> dict[str, bool]:
    """Whether each configuration's objective is minimised (from the train cells' metric)."""
    m = results.metrics[results.metrics["name"] == "minimize"]
    return {config: bool(group["value"].iloc[0]) for config, group in m.groupby("config")}


def ranks(long: pd.DataFrame, results: Results) -> pd.DataFrame:
    """Rank (1 = best) per configuration: by final objective where trained, else by gradient MSE."""
    minimize = directions(results)
    out = []
    for config, group in long.groupby("config"):
        objective = group[group["quantity"] == "final objective"].set_index("estimator")["mean"].dropna()
        if len(objective):
            ascending = minimize.get(config, True)
            ranked = objective.rank(ascending=ascending, method="min")
            basis = "final objective"
        else:
            mse = group[group["quantity"] == "grad MSE"].set_index("estimator")["mean"].dropna()
            ranked, basis = mse.rank(ascending=True, method="min"), "grad MSE"
        out.extend({"config": config, "estimator": e, "rank": int(r), "rank basis": basis} for e, r in ranked.items())
    return pd.DataFrame(out, columns=["config", "estimator", "rank", "rank basis"])


def relative_time(long: pd.DataFrame, reference: str = "reinforce") -> pd.Series:
    """Seconds per step relative to ``reference`` on the same configuration."""
    t = long[long["quantity"] == "seconds per step"].set_index(["config", "estimator"])["mean"]
    base = {config: t.get((config, reference), math.nan) for config in t.index.get_level_values(0)}
    return pd.Series({idx: v / base[idx[0]] if base[idx[0]] else math.nan for idx, v in t.items()}, dtype=float)


def format_cell(mean: float, low: float, high: float) -> str:
    if not math.isfinite(mean):
        return ""
    text = f"{mean:.4g}"
    if math.isfinite(low) and math.isfinite(high):
        text += f" [{low:.4g}, {high:.4g}]"
    return text


def wide_table(results: Results, long: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display table of strings, numeric table) indexed by (config, estimator); ``long`` is
    :func:`long_summary` of ``results``."""
    counts = status_counts(results)
    index = counts.index
    display = pd.DataFrame(index=index)
    numeric = pd.DataFrame(index=index)
    seeds = long.groupby(["config", "estimator"])["seeds"].max()
    display["seeds"] = seeds.reindex(index).fillna(0).astype(int)
    numeric["seeds"] = display["seeds"]
    for column, *_ in QUANTITIES:
        sub = long[long["quantity"] == column].set_index(["config", "estimator"])
        if sub.empty:
            continue
        sub = sub.reindex(index)
        display[column] = [format_cell(*row) for row in sub[["mean", "ci_low", "ci_high"]].itertuples(index=False)]
        for stat in ("mean", "ci_low", "ci_high"):
            numeric[f"{column} {stat}"] = sub[stat]
    rel = relative_time(long).reindex(index)
    if rel.notna().any():
        display["time vs reinforce"] = [f"{v:.2f}x" if math.isfinite(v) else "" for v in rel]
        numeric["time vs reinforce"] = rel
    r = ranks(long, results).set_index(["config", "estimator"]).reindex(index)
    display["rank"] = [str(int(v)) if math.isfinite(v) else "" for v in r["rank"]]
    numeric["rank"] = r["rank"]
    numeric["rank basis"] = r["rank basis"]
    for status in counts.columns:
        display[status] = counts[status]
        numeric[status] = counts[status]
    return display, numeric
