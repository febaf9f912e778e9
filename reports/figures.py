"""Figures of a results directory (matplotlib, PNG and SVG).

Estimators are coloured by group (score function, multi-sample, control variates,
antithetic/coupled, relaxed/straight-through), with a distinct line style and marker
inside a group, the same in every figure; references are drawn in black. Curves are
held-out evaluation scores at their checkpoints (never raw minibatch objectives), mean
over seeds with a 95% band. One panel per problem configuration.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from dgbench.reports.leaderboard import ZERO_VARIANCE, Board, group_of  # noqa: E402
from dgbench.reports.results import Results  # noqa: E402

PANEL = (4.4, 3.3)
GROUP_COLOURS = {
    "score function": "#1f77b4", "multi-sample": "#17becf", "control variates": "#2ca02c",
    "antithetic / coupled": "#9467bd", "relaxed / straight-through": "#d62728", "other": "#ff7f0e",
    "reference": "#000000",
}
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1))]
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]


class Style:
    """Colour by group, line style and marker within the group, for every estimator of a run."""

    def __init__(self, results: Results) -> None:
        names = sorted(set(results.cells["estimator"]))
        self.group = {e: group_of(results, e) for e in names}
        self.order = sorted(names, key=lambda e: (list(GROUP_COLOURS).index(self.group[e])
                                                  if self.group[e] in GROUP_COLOURS else 99, e))
        self.style = {}
        seen: dict[str, int] = {}
        for e in self.order:
            g = self.group[e]
            i = seen.get(g, 0)
            seen[g] = i + 1
            # Shades of the group's colour separate members beyond the line styles.
            base = np.array(matplotlib.colors.to_rgb(GROUP_COLOURS.get(g, "#ff7f0e")))
            shade = base * (1 - 0.18 * (i // len(LINESTYLES))) if g != "reference" else base
            self.style[e] = {"color": tuple(shade), "linestyle": LINESTYLES[i % len(LINESTYLES)],
                             "marker": MARKERS[i % len(MARKERS)]}

    def line(self, estimator: str) -> dict:
        """Line keywords; a marker at every checkpoint tells apart members that share a style."""
        s = self.style[estimator]
        return {"color": s["color"], "linestyle": s["linestyle"], "marker": s["marker"], "markersize": 3,
                "lw": 1.4 if self.group[estimator] != "reference" else 1.0}

    def legend(self, fig: plt.Figure, used: set[str]) -> float:
        """A legend under the panels, grouped; returns the height fraction it needs."""
        handles = []
        for e in self.order:
            if e not in used:
                continue
            s = self.style[e]
            handles.append(plt.Line2D([], [], color=s["color"], linestyle=s["linestyle"], lw=1.8,
                                      marker=s["marker"], markersize=4,
                                      label=f"{e} ({self.group[e]})"))
        if not handles:
            return 0.02
        ncol = 4
        rows = math.ceil(len(handles) / ncol)
        height = (0.24 * rows + 0.15) / fig.get_figheight()
        fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=7.5, frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
        return height


def _grid(n: int, cols: int = 3) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(cols, max(1, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL[0] * cols, PANEL[1] * rows + 1.2), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _log(ax: plt.Axes, which: str) -> None:
    """Log scale on ``which`` ("x", "y" or "xy"), called once the data are drawn: labels at
    1, 2 and 5 times a power of ten on short ranges (so that they still carry numbers), at
    most 8 decades otherwise; no minor labels."""
    for name in which:
        axis = ax.xaxis if name == "x" else ax.yaxis
        (ax.set_xscale if name == "x" else ax.set_yscale)("log")
        low, high = ax.get_xlim() if name == "x" else ax.get_ylim()
        decades = math.log10(high / low) if low > 0 and high > low else 1.0
        subs = (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)
        axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=8))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        axis.set_minor_formatter(NullFormatter())


def _save(fig: plt.Figure, out: Path, name: str, legend_height: float = 0.0) -> list[Path]:
    fig.tight_layout(rect=(0, legend_height, 1, 1))
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    for path in paths:
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return paths


def _curves(series: pd.DataFrame, x: str) -> pd.DataFrame:
    """Mean, 95% half-width and x position per step over seeds."""
    stats = series.groupby("step").agg(x=(x, "mean"), mean=("value", "mean"), sd=("value", "std"), n=("value", "size"))
    stats["half"] = 1.96 * stats["sd"].fillna(0) / np.sqrt(stats["n"])
    return stats


def score_curves(results: Results, board_map: dict[str, Board], style: Style, out: Path, x: str) -> list[Path]:
    """The true score at its evaluation checkpoints, against training step or wall-clock."""
    s = results.series[results.series["status"].isin(["done", "diverged"])]
    panels = [(c, b) for c, b in board_map.items()
              if b.score is not None and not s[(s["config"] == c) & (s["name"] == b.score.metric)].empty]
    if not panels:
        return []
    fig, axes = _grid(len(panels))
    used = set()
    for ax, (config, board) in zip(axes, panels):
        sub = s[(s["config"] == config) & (s["name"] == board.score.metric)]
        for estimator, group in sub.groupby("estimator"):
            stats = _curves(group, x)
            ax.plot(stats["x"], stats["mean"], **style.line(estimator))
            ax.fill_between(stats["x"], stats["mean"] - stats["half"], stats["mean"] + stats["half"],
                            color=style.style[estimator]["color"], alpha=0.12, lw=0)
            used.add(estimator)
        if x == "wall":
            _log(ax, "x")
        ax.set_title(config, fontsize=8.5)
        ax.set_xlabel("training step" if x == "step" else "wall-clock, training only (s, log scale)", fontsize=8)
        ax.set_ylabel(f"{board.score.label}\n({board.score.direction})", fontsize=8)
        ax.tick_params(labelsize=7)
    height = style.legend(fig, used)
    return _save(fig, out, "score_steps" if x == "step" else "score_wall", height)


def variance_along_training(results: Results, style: Style, out: Path) -> list[Path]:
    s = results.series[(results.series["name"] == "grad_variance_mean")
                       & (results.series["status"].isin(["done", "diverged"]))]
    if s.empty:
        return []
    configs = sorted(s["config"].unique())
    fig, axes = _grid(len(configs))
    used = set()
    for ax, config in zip(axes, configs):
        zero = []
        for estimator, group in s[s["config"] == config].groupby("estimator"):
            stats = _curves(group, "step")
            if (stats["mean"] <= ZERO_VARIANCE).all():  # exact by construction here: named, not drawn
                zero.append(estimator)
                continue
            ax.plot(stats["x"], stats["mean"], **style.line(estimator))
            used.add(estimator)
        _log(ax, "y")
        ax.set_title(config + (f"\nzero variance, not shown: {', '.join(zero)}" if zero else ""), fontsize=8)
        ax.set_xlabel("training step (checkpoints marked)", fontsize=8)
        ax.set_ylabel("gradient variance per coordinate\n(log scale, lower is better)", fontsize=8)
        ax.tick_params(labelsize=7)
    height = style.legend(fig, used)
    return _save(fig, out, "variance_steps", height)


def _front(points: pd.DataFrame) -> pd.DataFrame:
    """Non-dominated points (lower cost and lower variance), sorted by cost."""
    points = points.sort_values(["cost", "variance"])
    front, best = [], math.inf
    for idx, row in points.iterrows():
        if row["variance"] < best:
            front.append(idx)
            best = row["variance"]
    return points.loc[front]


def pareto(long: pd.DataFrame, board_map: dict[str, Board], style: Style, out: Path, cost: str) -> list[Path]:
    """log variance against log cost per estimate; the front of estimators without detected bias."""
    var = long[long["quantity"] == "log10 grad variance"].set_index(["config", "estimator"])["mean"]
    cst = long[long["quantity"] == cost].set_index(["config", "estimator"])["mean"]
    both = pd.concat({"log10var": var, "cost": cst}, axis=1).replace([np.inf, -np.inf], np.nan).dropna()
    both = both[both["cost"] > 0]
    if both.empty:
        return []
    configs = sorted(both.index.get_level_values(0).unique())
    fig, axes = _grid(len(configs))
    used = set()
    for ax, config in zip(axes, configs):
        sub = both.loc[config].assign(variance=lambda d: 10 ** d["log10var"])
        board = board_map.get(config)
        zero = [e for e in sub.index if sub.loc[e, "variance"] <= ZERO_VARIANCE]
        sub = sub.drop(index=zero)
        biased = set(board.biased) if board else set()
        for estimator, row in sub.iterrows():
            st = style.style[estimator]
            filled = estimator not in biased
            ax.scatter(row["cost"], row["variance"], marker=st["marker"], s=32, color=st["color"],
                       facecolors=st["color"] if filled else "none", linewidths=1.2, zorder=3)
            used.add(estimator)
        front = _front(sub[[e not in biased for e in sub.index]])
        if len(front):
            ax.step(front["cost"], front["variance"], where="post", color="#555", lw=0.8, ls="--", zorder=2)
            for estimator, row in front.iterrows():
                ax.annotate(estimator, (row["cost"], row["variance"]), textcoords="offset points", xytext=(4, 3),
                            fontsize=6.5, color="#333")
        _log(ax, "xy")
        ax.set_title(config + (f"\nzero variance, not shown: {', '.join(zero)}" if zero else ""), fontsize=8)
        ax.set_xlabel("ms per estimate (log)" if cost == "ms per estimate" else "f-evaluations per estimate (log)",
                      fontsize=8)
        ax.set_ylabel("gradient variance per coordinate (log)", fontsize=8)
        ax.tick_params(labelsize=7)
    height = style.legend(fig, used)
    name = "pareto_seconds" if cost == "ms per estimate" else "pareto_evals"
    return _save(fig, out, name, height)


def time_to_target(results: Results, board_map: dict[str, Board], style: Style, out: Path) -> list[Path]:
    """Training wall-clock until the mean score over seeds first reaches the target: the
    median of the ranked estimators' final mean scores (so about half of them reach it)."""
    s = results.series[results.series["status"].isin(["done", "diverged"])]
    panels = []
    for config, board in board_map.items():
        if board.score is None or not board.by_score:
            continue
        sub = s[(s["config"] == config) & (s["name"] == board.score.metric)]
        curves = {e: _curves(g, "wall") for e, g in sub.groupby("estimator") if e in board.by_score}
        if not curves:
            continue
        sign = 1.0 if board.score.higher_is_better else -1.0
        target = float(np.median([st.mean for st in board.by_score.values()]))
        times = {}
        for e, c in curves.items():
            reached = c[sign * c["mean"] >= sign * target]
            times[e] = float(reached["x"].iloc[0]) if len(reached) else math.nan
        panels.append((config, board, target, times, sign))
    if not panels:
        return []
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    longest = max(len(p[3]) for p in panels)
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(PANEL[0] * cols, (0.9 + 0.16 * longest) * rows))
    flat = list(axes.ravel())
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    for ax, (config, board, target, times, sign) in zip(flat, panels):
        order = sorted(times, key=lambda e: (math.isnan(times[e]), times[e], e))
        finite = [v for v in times.values() if math.isfinite(v)]
        low, high = (min(finite) / 1.5, max(finite) * 4) if finite else (0.1, 10.0)
        for y, e in enumerate(order):
            if math.isfinite(times[e]):
                ax.scatter(times[e], y, color=style.style[e]["color"], marker=style.style[e]["marker"], s=22, zorder=3)
            else:
                ax.text(high / 1.05, y, "not reached", fontsize=6.5, va="center", ha="right", color="#888")
        ax.set_yticks(range(len(order)), order, fontsize=6.5)
        ax.set_ylim(len(order) - 0.5, -0.5)
        _log(ax, "x")
        ax.set_xlim(low, high)
        ax.grid(axis="x", color="#eee")
        ax.set_title(f"{config}\ntarget: {board.score.label.split(' (')[0]} {'≥' if sign > 0 else '≤'} {target:.4g}",
                     fontsize=8)
        ax.set_xlabel("training seconds to reach the target (log)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    return _save(fig, out, "time_to_target")


def rank_heatmap(board_map: dict[str, Board], overall: pd.DataFrame, out: Path) -> list[Path]:
    rows = [{"config": c, "estimator": e, "rank": s.rank} for c, b in board_map.items() for e, s in b.by_score.items()]
    if not rows:
        return []
    table = pd.DataFrame(rows).pivot(index="estimator", columns="config", values="rank")
    table = table.reindex([e for e in overall["estimator"] if e in table.index])
    fig, ax = plt.subplots(figsize=(2.5 + 0.75 * table.shape[1], 1.6 + 0.28 * table.shape[0]))
    data = np.ma.masked_invalid(table.to_numpy(dtype=float))
    image = ax.imshow(data, cmap="viridis_r", aspect="auto")
    for (i, j), v in np.ndenumerate(table.to_numpy(dtype=float)):
        if math.isfinite(v):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=6.5, color="white" if v > data.mean() else "black")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=35, ha="right", fontsize=6.5)
    ax.set_yticks(range(table.shape[0]), table.index, fontsize=7)
    ax.set_xlabel("problem configuration (blank: not run)")
    ax.set_title("rank by true score (1 = best); estimators by overall relative rank", fontsize=9)
    fig.colorbar(image, ax=ax, label="rank")
    return _save(fig, out, "ranks")


def all_figures(results: Results, long: pd.DataFrame, board_map: dict[str, Board], out: Path,
                ranking: pd.DataFrame) -> dict[str, list[Path]]:
    """Write every figure into ``out``; ``{title: [png, svg]}`` for those with data. ``long``,
    ``board_map`` and ``ranking`` are computed once by the caller."""
    out.mkdir(parents=True, exist_ok=True)
    style = Style(results)
    figures = {
        "True score at evaluation checkpoints vs training step": score_curves(results, board_map, style, out, "step"),
        "True score vs training wall-clock": score_curves(results, board_map, style, out, "wall"),
        "Time to target (the median estimator's final score), training wall-clock":
            time_to_target(results, board_map, style, out),
        "Variance vs cost at the initial parameters (seconds; hollow: biased; dashed: Pareto front of the rest)":
            pareto(long, board_map, style, out, "ms per estimate"),
        "Variance vs f-evaluations per estimate (hollow: biased)": pareto(long, board_map, style, out,
                                                                          "f evals per estimate"),
        "Gradient variance along training": variance_along_training(results, style, out),
        "Ranks by true score": rank_heatmap(board_map, ranking, out),
    }
    return {title: paths for title, paths in figures.items() if paths}
