"""The first screen's banner: what produced the numbers, and what a tie means with them.

Read from the suite definition stored with the results (its TOML) and from the boards:
seeds, training steps (per problem where they differ), gradient replicas, the
f-evaluation budget, whether the learning rate is shared by every estimator, and how large
a difference the tie test can call at this number of seeds, with the command that
sharpens it.
"""

from __future__ import annotations

import html
import math
import tomllib
from dataclasses import dataclass

from scipy.stats import t as student_t

from dgbench.reports.leaderboard import Board
from dgbench.reports.results import Results
from dgbench.reports.significance import ALPHA_TIE


@dataclass
class Banner:
    lines: list[str]  # plain text, one fact each
    warning: bool  # the comparison is at a shared learning rate, or too few seeds to call differences

    def html(self) -> str:
        css = "banner warn" if self.warning else "banner"
        return f"<div class='{css}'><ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in self.lines) + \
            "</ul></div>"

    def markdown(self) -> str:
        return "\n".join(f"- {line}" for line in self.lines)


def _suite(results: Results) -> dict:
    try:
        return tomllib.loads(results.suite.get("source", ""))
    except tomllib.TOMLDecodeError:
        return {}


def _per_problem(suite: dict, table: str, key: str) -> tuple[object, dict[str, object]]:
    """The suite's value of ``[table] key`` and the problems that override it."""
    base = suite.get(table, {}).get(key)
    overrides = {}
    for spec in suite.get("problems", []):
        value = spec.get(table, {}).get(key) if isinstance(spec.get(table), dict) else None
        if value is not None and value != base:
            overrides[spec.get("id", "?")] = value
    return base, overrides


def _with_overrides(base: object, overrides: dict[str, object]) -> str:
    text = f"{base:,}" if isinstance(base, int) else str(base)
    if overrides:
        text += " (" + ", ".join(f"{pid}: {v:,}" if isinstance(v, int) else f"{pid}: {v}"
                                 for pid, v in sorted(overrides.items())) + ")"
    return text


def _tuning_lines(results: Results, suite: dict) -> list[str]:
    """What the grid was, what selected, and where a selection sits on the grid's edge."""
    sel = results.selection
    axes = "; ".join(f"{axis} in {values}" for axis, values in suite.get("grid", {}).items()) or "per-entry grids"
    metrics = ", ".join(sorted({f"{m} ({'higher' if d == 'max' else 'lower'} is better)"
                                for m, d in zip(sel["metric"], sel["direction"])}))
    lines = [f"Tuned: every estimator trained at every grid point ({axes}) and every seed, and ranked at its own "
             f"selected point: the best mean over seeds of {metrics}; the selected point is in the tables' "
             "\"selected\" column."]
    if any(m.startswith("test_") for m in sel["metric"]):
        lines.append("Selected on a test metric: the problem has no validation split, so its score is optimistic "
                     "for every estimator alike.")
    edge = sel[sel["edge"] != ""]
    if len(edge):
        shown = "; ".join(f"{e} on {c} ({x})" for c, e, x in edge[["config", "estimator", "edge"]].head(6).itertuples(index=False))
        more = f" and {len(edge) - 6} more" if len(edge) > 6 else ""
        lines.append(f"Warning: {len(edge)} of {len(sel)} selections lie on the edge of the grid, where a better "
                     f"setting may lie outside it: {shown}{more}. Widen the grid there.")
    if "pruned" in sel and sel["pruned"].sum():
        lines.append(f"Pruned: successive halving (--prune halving) stopped {int(sel['pruned'].sum())} of "
                     f"{int(sel['points'].sum())} grid points early, on the mean over seeds of the selection metric "
                     "at each rung; the selected points trained to the end, but a slow learner cut at an early rung "
                     "may have been the better choice.")
    partial = sel[sel["partial"]]
    if len(partial):
        lines.append(f"{len(partial)} selection(s) made before every grid point finished all its seeds "
                     "(a run in progress or failed cells): rerun the suite to complete them.")
    return lines


def tie_multiplier(seeds: int, comparisons: int, alpha: float = ALPHA_TIE) -> float:
    """The t-value a paired difference must exceed (in standard errors) for the first step
    of Holm's procedure over ``comparisons`` tests to call it, with ``seeds`` seeds."""
    if seeds < 2:
        return math.inf
    return float(student_t.isf(alpha / max(1, comparisons), seeds - 1))


def tie_thresholds(seeds: list[int], comparisons: int) -> str:
    """The threshold of :func:`tie_multiplier` for each number of seeds the configurations
    ran (sorted, at least 2), in words: configurations with more seeds call smaller
    differences, and one figure for the fewest would hide that."""
    first, *more = [f"about {tie_multiplier(n, comparisons):.3g}" for n in seeds]
    return f"{first} standard errors of the paired difference with {seeds[0]} seeds" + "".join(
        f", {m} with {n}" for m, n in zip(more, seeds[1:]))


def banner(results: Results, board_map: dict[str, Board], name: str, directory: str) -> Banner:
    suite = _suite(results)
    lines: list[str] = []
    seeds = sorted({b.seeds for b in board_map.values() if b.seeds})
    declared = suite.get("seeds")
    seeds_text = (f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}") if seeds else "no finished"
    lines.append(f"Seeds: {seeds_text} per configuration (suite: {declared}).")
    warning = False
    if "training" in suite:
        steps, step_overrides = _per_problem(suite, "training", "steps")
        lr, lr_overrides = _per_problem(suite, "training", "lr")
        optimizer = suite["training"].get("optimizer", "adam")
        lines.append(f"Training: {_with_overrides(steps, step_overrides)} steps of {optimizer}.")
        if results.tuned:
            lines.extend(_tuning_lines(results, suite))
            warning = warning or bool((results.selection["edge"] != "").any())
        else:
            lines.append(f"Learning rate: shared by every estimator, lr = {_with_overrides(lr, lr_overrides)}, not "
                         "tuned per estimator: step size can decide the ranking (an estimator that normalises its "
                         "gradient can beat the exact gradient); compare each at its own best rate before concluding "
                         "(a [grid] in the suite tunes each estimator).")
            warning = True
    if "gradstats" in suite:
        replicas, overrides = _per_problem(suite, "gradstats", "replicas")
        lines.append(f"Gradient statistics: {_with_overrides(replicas, overrides)} replicas per cell, at the initial "
                     "parameters only.")
    budget = suite.get("budget", {})
    if "evals" in budget:
        lines.append(f"Budget: {budget['evals']} f-evaluations per estimate; estimators that spend more are marked "
                     "over budget and not ranked with the others.")
    elif "samples" in budget:
        lines.append(f"Budget: {budget['samples']} sample(s) per estimate; estimators whose cost grows with the node "
                     "(over the most a budgeted estimator spends) are marked over budget and not ranked with the others.")
    largest = max((len(b.by_score) for b in board_map.values()), default=0)
    comparisons = largest * (largest - 1)
    if seeds and comparisons:
        fewest = seeds[0]
        multiplier = tie_multiplier(fewest, comparisons)
        sel = results.selection if results.tuned else None
        halving = sel is not None and "pruned" in sel and bool(sel["pruned"].sum())
        prune = " --prune halving" if halving else ""  # the same protocol, more seeds
        sharpen = f"dgbench run --suite {name} --seeds 10{prune} --out {directory}; dgbench report {directory}"
        if math.isinf(multiplier):
            lines.append(f"Ties: with one seed nothing is tested; every mark is \"untested\". Sharpen: {sharpen}.")
            warning = True
        else:
            lines.append(f"Ties: with {seeds_text} seeds a difference is called only when it exceeds "
                         f"{tie_thresholds(seeds, comparisons)} (first Holm step over "
                         f"{comparisons} comparisons at level {ALPHA_TIE:g}); \"≈ tied\" means \"not shown to "
                         f"differ\". Sharpen: {sharpen}.")
            warning = warning or multiplier > 10
    return Banner(lines, warning)
