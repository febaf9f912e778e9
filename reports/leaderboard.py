"""The answer first: per problem configuration, who is best, and which differences are real.

Three boards per configuration, each ranked by the mean over seeds and marked with the
tie test of :mod:`dgbench.reports.significance`:

* **score**: the problem's declared true score (``scores`` in the problem contract, from
  the results' catalog): held-out ELBO for the latent-variable models, test accuracy for
  hard attention, the exact objective at hard samples for the toys. Never the training
  objective, which for relaxed estimators is their own surrogate. Estimators that spent
  more f-evaluations than the suite's budget are marked "over budget" and ranked only
  among themselves, never among those within the budget.
* **variance**: mean per-coordinate gradient variance at the initial parameters, at the
  suite's f-evaluation budget (estimators whose cost differs are named, not ranked).
* **work-normalised variance**: variance x seconds per estimate, the variance a fixed
  amount of compute buys (every cost ranked).

Variance boards rank only estimators that declare themselves unbiased and whose bias was
not detected (a biased estimator's low variance buys nothing: its MSE, in the detailed
tables, is what compares it) and leave out zero-variance cases (exact by construction on
this problem), which are named. References (group "reference", e.g. enumeration) are
never ranked; their score is shown as a reference line.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dgbench.reports.results import Results
from dgbench.reports.significance import (
    ALPHA_TIE,
    BiasVerdict,
    Standing,
    bias_verdict,
    holm,
    paired_p_value,
    standings,
)

# A fallback for results written before problems declared scores: (metric, label, higher is better).
_FALLBACK_SCORES = (("test_elbo", "test ELBO (nats per example)", True),
                    ("test_accuracy", "test accuracy (fraction)", True))
ZERO_VARIANCE = 1e-30
LARGE_GAP = 0.10  # an untested lead over a reference this large (relative) is still flagged


@dataclass
class ScoreSpec:
    metric: str
    label: str
    higher_is_better: bool

    @property
    def column(self) -> str:
        return f"final_{self.metric}"

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


@dataclass
class Board:
    """One configuration's answer."""

    config: str
    score: ScoreSpec | None
    by_score: dict[str, Standing] = field(default_factory=dict)
    by_variance: dict[str, Standing] = field(default_factory=dict)
    by_work: dict[str, Standing] = field(default_factory=dict)
    references: dict[str, float] = field(default_factory=dict)  # reference estimator -> mean score
    budget: float = math.nan  # f-evaluations per estimate of the variance board
    other_cost: dict[str, float] = field(default_factory=dict)  # estimator -> evals, not on the variance board
    zero_variance: list[str] = field(default_factory=list)
    biased: list[str] = field(default_factory=list)  # declared biased, or bias detected: not on variance boards
    bias: dict[str, BiasVerdict] = field(default_factory=dict)
    seeds: int = 0
    # The suite's f-evaluation budget per estimate here, and the estimators that spent more
    # (their median evaluations per estimate or step): ranked among themselves only.
    eval_budget: float = math.nan
    over_budget: dict[str, float] = field(default_factory=dict)
    over_budget_by_score: dict[str, Standing] = field(default_factory=dict)
    # Estimators whose per-seed scores are identical here (one group each), ranked alike.
    identical: list[list[str]] = field(default_factory=list)
    # Estimators whose score is better than a reference's: shown better by the one-sided
    # paired test (Holm-adjusted p below ALPHA_TIE), or better on average by more than
    # LARGE_GAP relative (estimator -> (reference, p, relative gap)). A flag, not a win.
    beats_reference: dict[str, tuple[str, float, float]] = field(default_factory=dict)
    # A tuned suite: each estimator's selected grid point (``lr=0.03``); empty otherwise.
    selected: dict[str, str] = field(default_factory=dict)

    def budget_note(self, estimator: str) -> str:
        """``over budget (32 > 4 f-evals)``, or empty within the budget."""
        if estimator not in self.over_budget:
            return ""
        return f"over budget ({self.over_budget[estimator]:g} > {self.eval_budget:g} f-evals)"


def is_reference(results: Results, estimator: str) -> bool:
    return results.estimators.get(estimator, {}).get("group") == "reference"


def group_of(results: Results, estimator: str) -> str:
    return results.estimators.get(estimator, {}).get("group", "other")


def variant_label(results: Results, estimator: str) -> str:
    """``variant of BASE (key=value, ...)`` for a suite variant; empty otherwise."""
    info = results.estimators.get(estimator, {})
    if not info.get("variant_of"):
        return ""
    settings = ", ".join(f"{k}={v}" for k, v in info.get("variant_hyperparameters", {}).items())
    return f"variant of {info['variant_of']}" + (f" ({settings})" if settings else "")


def declared_unbiased(results: Results, estimator: str) -> bool | None:
    return results.estimators.get(estimator, {}).get("unbiased")


def score_specs(results: Results, problem: str) -> list[ScoreSpec]:
    """The problem's declared scores, best first (a fallback for results without a catalog)."""
    declared = results.problems.get(problem, {}).get("scores")
    if declared:
        return [ScoreSpec(s["metric"], s["label"], bool(s["higher_is_better"])) for s in declared]
    names = set(results.metrics.loc[results.metrics["problem"] == problem, "name"])
    specs = [ScoreSpec(m, label, hib) for m, label, hib in _FALLBACK_SCORES if f"final_{m}" in names]
    if "final_exact_objective" in names:
        minimize = results.metrics.loc[(results.metrics["problem"] == problem)
                                       & (results.metrics["name"] == "minimize"), "value"]
        specs.append(ScoreSpec("exact_objective", "exact objective at hard samples",
                               not (bool(minimize.iloc[0]) if len(minimize) else True)))
    return specs


def per_seed(results: Results, kind: str) -> pd.DataFrame:
    """Finished cells of ``kind`` as one row per (config, estimator, seed), metrics as columns."""
    m = results.metrics[(results.metrics["kind"] == kind) & (results.metrics["status"] == "done")]
    if m.empty:
        return pd.DataFrame(columns=["config", "problem", "estimator", "seed"])
    wide = m.pivot_table(index=["config", "problem", "estimator", "seed"], columns="name", values="value",
                         aggfunc="first")
    return wide.reset_index()


def _matrix(frame: pd.DataFrame, column: str, estimators: list[str] | None = None) -> pd.DataFrame:
    """seed x estimator values of ``column``."""
    if column not in frame:
        return pd.DataFrame()
    table = frame.pivot_table(index="seed", columns="estimator", values=column, aggfunc="first")
    if estimators is not None:
        table = table[[e for e in table.columns if e in estimators]]
    return table.replace([np.inf, -np.inf], np.nan)


def suite_budget(results: Results) -> dict[str, int]:
    """The suite's ``[budget]`` table ({} when it cannot be read)."""
    try:
        budget = tomllib.loads(results.suite.get("source", "")).get("budget", {})
    except tomllib.TOMLDecodeError:
        return {}
    return {k: v for k, v in budget.items() if k in ("samples", "evals") and isinstance(v, int)}


def _respects_budget(results: Results, estimator: str) -> bool:
    """Whether the estimator's sample count is set by the budget (not by the node's size,
    nor by a problem's bound, nor an oracle's)."""
    info = results.estimators.get(estimator, {})
    return (info.get("evals_per_sample") is not None and not info.get("evals_scale_with_event")
            and not info.get("multi_sample_bound") and info.get("group") != "reference")


def _evaluations(train: pd.DataFrame, grads: pd.DataFrame) -> pd.Series:
    """Median f-evaluations per estimate of each estimator (per step where no gradient
    statistics were measured)."""
    parts = [frame.groupby("estimator")[column].median() for frame, column in
             ((grads, "evals_per_estimate"), (train, "evals_per_step")) if column in frame and not frame.empty]
    if not parts:
        return pd.Series(dtype=float)
    return pd.concat(parts, axis=1).max(axis=1).dropna()


def _over_budget(results: Results, board: Board, evals: pd.Series) -> None:
    """Mark the estimators that spent more f-evaluations than the suite's budget grants here:
    with ``evals = B``, more than B (or, on problems whose nested layers multiply it, than
    the most an estimator whose sample count the budget sets spends); with ``samples = N``,
    more than the most such an estimator spends here."""
    budget = suite_budget(results)
    respecting = [float(v) for e, v in evals.items() if _respects_budget(results, e)]
    # Nested stochastic layers multiply a node's budget: what a budgeted estimator spends
    # here is within the budget by construction.
    if "evals" in budget:
        board.eval_budget = max([float(budget["evals"]), *respecting])
    elif "samples" in budget:
        board.eval_budget = max(respecting) if respecting else math.nan
    if math.isfinite(board.eval_budget):
        board.over_budget = {str(e): float(v) for e, v in evals.items()
                             if v > board.eval_budget and not is_reference(results, e)}


def boards(results: Results) -> dict[str, Board]:
    """One :class:`Board` per configuration that has any finished cell. An estimator over
    the suite's f-evaluation budget is never ranked among those within it: it gets a
    separate ranking (``over_budget_by_score``)."""
    train, grads = per_seed(results, "train"), per_seed(results, "gradstats")
    configs = sorted(set(train["config"]) | set(grads["config"]))
    problem_of = dict(zip(results.cells["config"], results.cells["problem"]))
    out = {}
    for config in configs:
        specs = score_specs(results, problem_of[config])
        board = Board(config, specs[0] if specs else None)
        if results.tuned:
            board.selected = {e: label for c, e, label in results.selection[["config", "estimator", "selected"]]
                              .itertuples(index=False) if c == config}
        t = train[train["config"] == config]
        _over_budget(results, board, _evaluations(t, grads[grads["config"] == config]))
        if board.score is not None and board.score.column in t:
            values = _matrix(t, board.score.column)
            refs = [e for e in values.columns if is_reference(results, e)]
            board.references = {e: float(values[e].mean()) for e in refs if values[e].notna().any()}
            over = [e for e in values.columns if e in board.over_budget]
            board.by_score = standings(values.drop(columns=refs + over), board.score.higher_is_better)
            board.over_budget_by_score = standings(values[over], board.score.higher_is_better) if over else {}
            board.identical = _identical(values.drop(columns=refs + over), _matrix(t, "final_objective"),
                                         _matrix(grads[grads["config"] == config], "variance_mean"))
            _rank_alike(board.by_score, board.identical)
            board.beats_reference = _beating_references(values, refs, board.score.higher_is_better)
            board.seeds = int(values.notna().sum().max()) if not values.empty else 0
        g = grads[grads["config"] == config]
        if not g.empty:
            _variance_boards(results, board, g)
        out[config] = board
    return out


def _identical(values: pd.DataFrame, *more: pd.DataFrame) -> list[list[str]]:
    """Groups of estimators whose per-seed values agree to 1e-12 relative on every seed, in
    ``values`` and in each of ``more`` where both have them (the same method under two
    names on this node, e.g. DARN and ReinMax on Bernoulli units). A quantised score (test
    accuracy) can coincide by chance; the training objective and the gradient variance
    beside it cannot."""
    def vector(estimator: str) -> np.ndarray:
        parts = [frame[estimator].to_numpy(float) if estimator in frame else np.full(len(frame), np.nan)
                 for frame in (values, *more) if not frame.empty]
        return np.concatenate(parts) if parts else np.array([])

    groups: list[list[str]] = []
    for estimator in values.columns:
        column = vector(estimator)
        if not np.isfinite(column).any():
            continue
        for group in groups:
            other = vector(group[0])
            if np.array_equal(np.isfinite(column), np.isfinite(other)) and np.allclose(
                    column[np.isfinite(column)], other[np.isfinite(other)], rtol=1e-12, atol=0.0):
                group.append(str(estimator))
                break
        else:
            groups.append([str(estimator)])
    return [sorted(g) for g in groups if len(g) > 1]


def _rank_alike(by_score: dict[str, Standing], identical: list[list[str]]) -> None:
    """Identical estimators share the best rank and mark of their group."""
    for group in identical:
        members = [by_score[e] for e in group if e in by_score]
        if not members:
            continue
        lead = min(members, key=lambda s: s.rank)
        for e in group:
            if e in by_score:
                by_score[e].rank, by_score[e].tied, by_score[e].p_adjusted = lead.rank, lead.tied, lead.p_adjusted


def _beating_references(values: pd.DataFrame, refs: list[str],
                        higher_is_better: bool) -> dict[str, tuple[str, float, float]]:
    """Estimators whose mean score is better than a reference's: shown better (Holm-adjusted
    one-sided paired test), or better on average by more than ``LARGE_GAP`` relative."""
    out: dict[str, tuple[str, float, float]] = {}
    for ref in refs:
        reference = values[ref]
        if reference.notna().sum() == 0:
            continue
        p_values = {}
        for estimator in values.columns:
            if estimator in refs:
                continue
            both = values[estimator].notna() & reference.notna()
            mine, theirs = values.loc[both, estimator].mean(), reference[both].mean()
            margin = 1e-6 * max(abs(theirs), 1e-12)  # float rounding is no win
            if not both.any() or not (mine > theirs + margin if higher_is_better else mine < theirs - margin):
                continue
            p_values[str(estimator)] = paired_p_value(values.loc[both, estimator].to_numpy(float),
                                                      reference[both].to_numpy(float), higher_is_better)
        testable = {e: p for e, p in p_values.items() if math.isfinite(p)}
        adjusted = holm(testable) if testable else {}
        for estimator, p in p_values.items():
            p = adjusted.get(estimator, p)
            gap = abs(values[estimator].mean() - reference.mean()) / max(abs(reference.mean()), 1e-12)
            if (math.isfinite(p) and p < ALPHA_TIE) or gap > LARGE_GAP:  # called better, or far better on average
                out.setdefault(estimator, (str(ref), p, gap))
    return out


def _variance_boards(results: Results, board: Board, g: pd.DataFrame) -> None:
    for estimator, rows in g.groupby("estimator"):
        def column(name: str, default: float = math.nan, rows: pd.DataFrame = rows) -> np.ndarray:
            return rows.get(name, pd.Series(default, index=rows.index)).to_numpy(float)

        verdict = bias_verdict(column("bias_z_max"), column("coordinates", 1.0), column("reference_is_exact", 0.0),
                               z_along=column("z_along"), se_along=column("se_along"),
                               gradient_norm=column("gradient_norm"))
        if verdict is not None:
            board.bias[str(estimator)] = verdict
    ranked = [e for e in g["estimator"].unique() if not is_reference(results, e)]
    board.biased = sorted(e for e in ranked if declared_unbiased(results, e) is False
                          or (e in board.bias and board.bias[e].verdict == "biased"))
    variance = _matrix(g, "variance_mean", ranked)
    zero = [e for e in variance.columns if (variance[e].dropna() <= ZERO_VARIANCE).all() and variance[e].notna().any()]
    board.zero_variance = sorted(zero)
    eligible = [e for e in variance.columns if e not in zero and e not in board.biased]
    evals = _matrix(g, "evals_per_estimate", eligible).median()
    if not evals.empty:
        board.budget = float(evals.mode().iloc[0])
        board.other_cost = {e: float(v) for e, v in evals.items() if v != board.budget}
    at_budget = [e for e in eligible if e not in board.other_cost]
    with np.errstate(divide="ignore"):
        board.by_variance = standings(np.log10(variance[at_budget]), higher_is_better=False)
        work = variance[eligible] * _matrix(g, "seconds_per_estimate", eligible)
        board.by_work = standings(np.log10(work), higher_is_better=False)


def overall(board_map: dict[str, Board]) -> pd.DataFrame:
    """Mean rank by score across configurations, with how often each estimator is best or tied.

    Sorted by mean relative rank, except that estimators which ran on fewer than a quarter as
    many configurations as the most widely run one (a Gaussian-only method, a plugin run on one problem)
    come after the others: a mean over two configurations is not comparable with one over
    fifteen."""
    rows: dict[str, dict] = {}
    for board in board_map.values():
        n = len(board.by_score)
        for estimator, s in board.by_score.items():
            r = rows.setdefault(estimator, {"estimator": estimator, "ranks": [], "normalised": [], "best or tied": 0})
            r["ranks"].append(s.rank)
            r["normalised"].append((s.rank - 1) / (n - 1) if n > 1 else 0.0)
            r["best or tied"] += s.rank == 1 or bool(s.tied)
    table = pd.DataFrame([{
        "estimator": r["estimator"], "configurations": len(r["ranks"]), "mean rank": float(np.mean(r["ranks"])),
        "mean relative rank": float(np.mean(r["normalised"])), "best or tied": r["best or tied"],
    } for r in rows.values()], columns=["estimator", "configurations", "mean rank", "mean relative rank",
                                        "best or tied"])
    narrow = table["configurations"] < table["configurations"].max() / 4 if len(table) else table["configurations"]
    return (table.assign(_narrow=narrow).sort_values(["_narrow", "mean relative rank", "mean rank", "estimator"])
            .drop(columns="_narrow").reset_index(drop=True))
