"""A new estimator against the built-in ones (``dgbench compare``), per problem configuration.

Ratios are new / best built-in, where best is the lowest gradient variance, bias norm and
time per step, and the best final objective in the problem's direction. The unbiasedness
check applies where the estimator claims to be unbiased and the gradient statistics were
measured against an exact gradient: each such cell passes when its largest |bias|/se is
below the two-sided Bonferroni critical value at family-wise level 1e-3 over the
gradient's coordinates.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy.stats import norm

from reports.results import Results
from reports.summary import directions, ranks

ALPHA = 1e-3


def _ratio(new: float, best: float) -> float:
    return new / best if math.isfinite(new) and math.isfinite(best) and best != 0 else math.nan


def unbiasedness(results: Results, estimator: str) -> pd.Series:
    """Per configuration: 'passed (n/n cells)', 'FAILED (k of n cells)' or '' (no exact gradient)."""
    m = results.metrics[(results.metrics["estimator"] == estimator) & (results.metrics["kind"] == "gradstats")
                        & (results.metrics["status"] == "done")]
    wide = m.pivot_table(index=["config", "key"], columns="name", values="value")
    out = {}
    for config, group in wide.groupby(level=0):
        if "reference_is_exact" not in group or "coordinates" not in group:
            continue
        exact = group[group["reference_is_exact"] == 1.0]
        if exact.empty:
            continue
        critical = norm.ppf(1 - ALPHA / (2 * exact["coordinates"]))
        failed = int((exact["bias_z_max"] > critical).sum())
        out[config] = f"passed ({len(exact)}/{len(exact)} cells)" if not failed else f"FAILED ({failed} of {len(exact)} cells)"
    return pd.Series(out, dtype=object)


def comparison_table(results: Results, long: pd.DataFrame, estimator: str, claims_unbiased: bool) -> pd.DataFrame:
    rank = ranks(long, results)
    minimize = directions(results)
    rows = []
    for config in sorted(results.cells.loc[results.cells["estimator"] == estimator, "config"].unique()):
        table = long[long["config"] == config].pivot(index="estimator", columns="quantity", values="mean")
        others = table.drop(index=estimator, errors="ignore")
        row = {"config": config}
        r = rank[(rank["config"] == config)]
        mine = r[r["estimator"] == estimator]
        row["rank"] = f"{int(mine['rank'].iloc[0])} of {len(r)}" if len(mine) else ""
        for label, quantity, lowest in (("variance ratio", "log10 grad variance", True),
                                        ("bias ratio", "grad bias norm", True),
                                        ("final objective ratio", "final objective", minimize.get(config, True)),
                                        ("time per step ratio", "seconds per step", True)):
            if estimator not in table.index or quantity not in table or others.get(quantity) is None:
                row[label] = math.nan
                continue
            column = others[quantity].dropna()
            if column.empty:
                row[label] = math.nan
                continue
            best = column.min() if lowest else column.max()
            new = table.loc[estimator, quantity]
            if quantity == "log10 grad variance":
                new, best = 10**new, 10**best
            row[label] = _ratio(new, best)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if claims_unbiased and not frame.empty:
        frame["unbiasedness check"] = frame["config"].map(unbiasedness(results, estimator)).fillna("")
    return frame
