"""A new estimator against the built-in ones (``dgbench compare``), per problem configuration.

* **Score**: its rank on the problem's true score among all ranked estimators, the tie
  call against the best (:mod:`dgbench.reports.significance`), and its difference from the best
  built-in estimator's mean score (positive: better).
* **Variance and time ratios** (new / best) are taken against the built-in estimators of
  the same kind (declared unbiased vs declared unbiased, biased vs biased), at the new
  estimator's f-evaluation count where any built-in shares it. References and
  zero-variance (exact-by-construction) estimators are left out and named in the row.
* **Unbiasedness check**, where the new estimator declares ``unbiased = True``: on every
  gradient-statistics cell, the largest |bias|/se over coordinates must stay below the
  two-sided Bonferroni critical value at family-wise level 1e-3 (over coordinates and
  seeds). Against a sampled reference, se combines both standard errors. Every
  configuration without a verdict says why. A failed check makes ``dgbench compare``
  exit with status 1 (:func:`unbiasedness_failures`), so CI can gate on it.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dgbench.reports.leaderboard import ZERO_VARIANCE, Board, declared_unbiased, is_reference, per_seed
from dgbench.reports.page import table_html
from dgbench.reports.results import Results, load
from dgbench.reports.significance import bias_critical_value


@dataclass
class Comparison:
    record: dict
    table: pd.DataFrame


def _ratio(new: float, best: float) -> float:
    return new / best if math.isfinite(new) and math.isfinite(best) and best != 0 else math.nan


def _means(long: pd.DataFrame, config: str, quantity: str) -> pd.Series:
    sub = long[(long["config"] == config) & (long["quantity"] == quantity)]
    return sub.set_index("estimator")["mean"].dropna()


def _peers(results: Results, long: pd.DataFrame, config: str, estimator: str) -> tuple[list[str], list[str]]:
    """Built-in estimators of the same declared kind on ``config``, and the zero-variance ones left out."""
    kind = declared_unbiased(results, estimator)
    present = set(long.loc[long["config"] == config, "estimator"]) - {estimator}
    same = [e for e in present if not is_reference(results, e) and declared_unbiased(results, e) == kind]
    variance = 10 ** _means(long, config, "log10 grad variance")
    zero = sorted(e for e in same if e in variance and variance[e] <= ZERO_VARIANCE)
    return sorted(e for e in same if e not in zero), zero


def unbiasedness(results: Results, estimator: str) -> dict[str, tuple[str, list[str]]]:
    """Per configuration: (verdict text, failing cells) for the gradient-statistics cells of
    ``estimator``; every configuration it appears in gets a text, a blank never."""
    cells = results.cells[(results.cells["estimator"] == estimator) & (results.cells["kind"] == "gradstats")]
    stats = per_seed(results, "gradstats")
    stats = stats[stats["estimator"] == estimator]
    out = {}
    for config, group in cells.groupby("config"):
        done = stats[stats["config"] == config]
        if done.empty:
            statuses = ", ".join(sorted(set(group["status"])))
            reason = group["reason"].dropna()
            why = f": {str(reason.iloc[0]).splitlines()[0]}" if len(reason) else ""
            out[config] = (f"no check: gradient statistics {statuses}{why}", [])
            continue
        if "bias_z_max" not in done or done["bias_z_max"].isna().all():
            out[config] = ("no check: no bias z-score was recorded (no reference gradient)", [])
            continue
        critical = bias_critical_value(float(done["coordinates"].max()), len(done))
        exact = bool((done["reference_is_exact"] == 1.0).all())
        source = "exact reference" if exact else "z-test against the sampled reference with combined standard error"
        failing = [f"{config} seed {int(r.seed)}: max |bias|/se = {r.bias_z_max:.3g} > {critical:.3g}"
                   for r in done.itertuples() if r.bias_z_max > critical]
        z = float(done["bias_z_max"].max())
        if failing:
            out[config] = (f"FAILED: {len(failing)} of {len(done)} cells, max z {z:.3g} > {critical:.3g} ({source})",
                           failing)
        else:
            out[config] = (f"passed: {len(done)} cells, max z {z:.3g} ≤ {critical:.3g} ({source})", [])
    return out


def unbiasedness_failures(directory: str | Path, estimator: str) -> list[str]:
    """The failing cells of ``estimator``'s unbiasedness check in a results directory."""
    results = load(directory)
    return [cell for _, failing in unbiasedness(results, estimator).values() for cell in failing]


def compare_estimator(results: Results, long: pd.DataFrame, board_map: dict[str, Board], record: dict) -> Comparison:
    estimator = record["estimator"]
    claims_unbiased = bool(record.get("unbiased", False))
    kind = "unbiased" if claims_unbiased else "biased"
    check = unbiasedness(results, estimator) if claims_unbiased else {}
    rows = []
    for config in sorted(results.cells.loc[results.cells["estimator"] == estimator, "config"].unique()):
        board = board_map.get(config)
        row: dict = {"config": config}
        standing = board.by_score.get(estimator) if board else None
        row["rank"] = f"{standing.rank} of {len(board.by_score)}" if standing else ""
        if board and estimator in board.over_budget:
            row["rank"] = board.budget_note(estimator) + ": not ranked with the estimators within it"
        row["vs best"] = standing.mark if standing else ""
        peers, zero = _peers(results, long, config, estimator)
        if board and board.score and standing:
            builtin = {e: s.mean for e, s in board.by_score.items() if e != estimator}
            if builtin:
                best_name = (max if board.score.higher_is_better else min)(builtin, key=builtin.get)
                sign = 1 if board.score.higher_is_better else -1
                row["score"] = standing.mean
                row["best built-in score"] = f"{builtin[best_name]:.4g} ({best_name})"
                row["score difference (positive: better)"] = sign * (standing.mean - builtin[best_name])
                row["score ratio"] = _ratio(standing.mean, builtin[best_name])
        variance = 10 ** _means(long, config, "log10 grad variance")
        evals = _means(long, config, "f evals per estimate")
        same_cost = [e for e in peers if e in evals and estimator in evals and evals[e] == evals[estimator]]
        pool = [e for e in (same_cost or peers) if e in variance]
        if estimator in variance and pool:
            best = min(pool, key=lambda e: variance[e])
            row["variance ratio"] = _ratio(variance[estimator], variance[best])
            cost = f", {evals[best]:g} evals" if best in evals else ""
            row["variance compared with"] = f"{best} (best {kind}{cost})"
        time = _means(long, config, "ms per step")
        timed = [e for e in peers if e in time]
        if estimator in time and timed:
            fastest = min(timed, key=lambda e: time[e])
            row["time per step ratio"] = _ratio(time[estimator], time[fastest])
            row["time compared with"] = fastest
        verdict = board.bias.get(estimator) if board else None
        row["bias"] = verdict.text().replace("\n", "; ") if verdict else ""
        if zero:
            row["left out (zero variance)"] = ", ".join(zero)
        mine = results.cells[(results.cells["config"] == config) & (results.cells["estimator"] == estimator)]
        if not mine["status"].isin(["done", "diverged"]).any():
            reasons = mine["reason"].dropna()
            row["note"] = "not run: " + (str(reasons.iloc[0]).splitlines()[0] if len(reasons) else
                                         ", ".join(sorted(set(mine["status"]))))
        if claims_unbiased:
            row["unbiasedness check"] = check.get(config, ("no check: no gradient-statistics cell", []))[0]
        rows.append(row)
    return Comparison(record, pd.DataFrame(rows))


def gate_html(gate: dict | None) -> str:
    """The unbiasedness gate's verdict and its tests (what each could have detected)."""
    if not gate:
        return ""
    css = "biased" if gate["refuted"] else "note"
    rows = pd.DataFrame([{
        "problem": f"{t['problem']} {t['options']}",
        "point": "initial" if t["point"] == 0 else f"perturbed {t['point']}",
        "replicas": t["replicas"],
        "verdict": t["verdict"]["verdict"],
        "relative bias along g": t["verdict"]["relative_bias_along"],
        "z along g": t["verdict"]["z_along"],
        "|z| critical": t["verdict"]["critical_along"],
        "min. detectable bias (% of |g|)": 100 * t["verdict"]["minimum_detectable_bias"],
    } for t in gate["tests"]])
    skipped = "".join(f"<li>{html.escape(line)}</li>" for line in gate.get("skipped", []))
    return "".join([
        f"<p class='{css}'><b>Unbiasedness gate</b>: {html.escape(gate['summary'])}. Replicas are chosen from a "
        f"pilot so that a relative bias of {100 * gate['relative_bias']:g}% along the exact gradient is detected "
        f"with {gate['power']:.0%} power; the level is split evenly over the tests (Bonferroni)"
        + (" — <b>refuted: dgbench compare exits with status 1</b>" if gate["refuted"] else "") + ".</p>",
        table_html(rows, text_columns=("problem", "point", "verdict")) if not rows.empty else "",
        f"<ul class='note'>{skipped}</ul>" if skipped else "",
    ])


def comparison_html(comparison: Comparison) -> str:
    record, table = comparison.record, comparison.table
    failing = "unbiasedness check" in table and table["unbiasedness check"].str.startswith("FAILED").any()
    verdict = ("<p class='biased'><b>It declares unbiased = True and fails the unbiasedness check</b> "
               "(dgbench compare exits with status 1).</p>" if failing else "")
    verdict += gate_html(record.get("unbiasedness"))
    return "".join([
        f"<h2>Comparison: {html.escape(record['estimator'])}</h2>",
        f"<p class='note'>{html.escape(record['spec'])} on suite {html.escape(record['suite'])}: "
        f"{html.escape(record['reuse_note'])} ({record['cells_reused']} cells reused, "
        f"{record['cells_computed']} computed). Declared {'unbiased' if record.get('unbiased') else 'biased'}; "
        "ratios are new / best built-in estimator of the same kind (lowest variance at the same f-evaluations "
        "where possible, fastest step); the score difference is against the best built-in on the true score.</p>",
        verdict,
        table_html(table, text_columns=("config", "rank", "vs best", "best built-in score", "variance compared with",
                                         "time compared with", "bias", "left out (zero variance)",
                                         "unbiasedness check", "note")),
    ])
