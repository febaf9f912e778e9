"""Figures of a results directory (matplotlib: PNG, and SVG when the report asks for it).

Readable with many estimators: a panel draws at most ``HIGHLIGHT`` estimators in colour
(its leaders: best by score, or lowest variance), each in its own colour from a qualitative
palette with a per-panel legend that numbers them by rank; the others are thin grey lines,
counted in the legend; references are black. Curves are held-out evaluation scores at their
checkpoints (never raw minibatch objectives), mean over seeds with a 95% band for the
leaders. A log axis is used only where the data span more than a decade. PNGs are
palette-quantised (the HTML page embeds them). One panel per problem configuration, tagged
with it (``ax.set_gid``) so that :func:`panel_boxes` can tell the page where each lies.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
import signal
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402
from PIL import Image  # noqa: E402

from dgbench.reports.leaderboard import ZERO_VARIANCE, Board, group_of  # noqa: E402
from dgbench.reports.results import Results  # noqa: E402

PANEL = (4.4, 3.3)
HIGHLIGHT = 8  # coloured lines per panel; the rest are grey
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
GREY = "#c4c4c4"
GROUP_COLOURS = {
    "score function": "#1f77b4", "multi-sample": "#17becf", "control variates": "#2ca02c",
    "antithetic / coupled": "#9467bd", "relaxed / straight-through": "#d62728", "other": "#ff7f0e",
    "reference": "#000000",
}
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1))]
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
Drawn = tuple[plt.Figure, str]  # a figure and its file name (no suffix)


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


TITLE_CHARACTERS = 56  # a panel's title wraps at its options' commas to fit the panel's width


def panel_title(config: str) -> str:
    """A configuration's name as a panel title: the options wrapped onto further lines
    (long ones overran the neighbouring panels' titles)."""
    return textwrap.fill(config, TITLE_CHARACTERS, break_long_words=False, break_on_hyphens=False)


def _grid(n: int, cols: int = 3) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(cols, max(1, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL[0] * cols, PANEL[1] * rows + 1.2), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _log(ax: plt.Axes, which: str) -> None:
    """Log scale on ``which`` ("x", "y" or "xy"), called once the data are drawn, where the
    data span at least a decade (below that a log axis has no readable ticks: the axis stays
    linear); labels at 1, 2 and 5 times a power of ten on short ranges, at most 8 decades
    otherwise; no minor labels."""
    for name in which:
        axis = ax.xaxis if name == "x" else ax.yaxis
        limits = ax.dataLim
        low, high = (limits.x0, limits.x1) if name == "x" else (limits.y0, limits.y1)
        if not (low > 0 and high >= 10 * low):
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
            continue
        (ax.set_xscale if name == "x" else ax.set_yscale)("log")
        lo, hi = ax.get_xlim() if name == "x" else ax.get_ylim()
        decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
        subs = (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)
        axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=8))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        axis.set_minor_formatter(NullFormatter())


Box = tuple[int, int, int, int]  # (left, top, right, bottom) in a PNG's pixels


@dataclass(frozen=True)
class Drawing:
    """A figure's files and where each configuration's panel lies in its PNG, so that the
    page can show a configuration's panels beside its table (crops of the same pixels)."""

    paths: list[Path]
    panels: dict[str, Box] = field(default_factory=dict)

    @property
    def png(self) -> Path:
        return next(p for p in self.paths if p.suffix == ".png")


DPI = 100
PANEL_MARGIN = 3  # pixels kept around a panel's labels when it is cut out


def panel_boxes(fig: plt.Figure, size: tuple[int, int]) -> dict[str, Box]:
    """Each tagged panel's extent (axes, title, labels, legend) in the figure's PNG of
    ``size`` pixels at :data:`DPI`; panels are tagged with their configuration by
    ``ax.set_gid``. Call after the figure is drawn."""
    renderer = fig.canvas.get_renderer()
    scale = DPI / fig.dpi
    width, height = size
    boxes = {}
    for ax in fig.axes:
        config = ax.get_gid()
        if not config or not ax.get_visible():
            continue
        extent = ax.get_tightbbox(renderer)
        boxes[config] = (max(0, math.floor(extent.x0 * scale) - PANEL_MARGIN),
                         max(0, math.floor(height - extent.y1 * scale) - PANEL_MARGIN),
                         min(width, math.ceil(extent.x1 * scale) + PANEL_MARGIN),
                         min(height, math.ceil(height - extent.y0 * scale) + PANEL_MARGIN))
    return _disjoint(boxes)


def _disjoint(boxes: dict[str, Box]) -> dict[str, Box]:
    """Boxes whose margins (or long tick labels) reach into a neighbour's are cut at the
    middle of the overlap, along the axis where it is thinner: a crop never shows a
    sliver of the next panel."""
    out = {k: list(v) for k, v in boxes.items()}
    names = list(out)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            p, q = out[a], out[b]
            wide, tall = min(p[2], q[2]) - max(p[0], q[0]), min(p[3], q[3]) - max(p[1], q[1])
            if wide <= 0 or tall <= 0:
                continue
            axis = 0 if wide <= tall else 1
            first, second = (p, q) if p[axis] <= q[axis] else (q, p)
            middle = (first[axis + 2] + second[axis]) // 2
            first[axis + 2], second[axis] = middle, middle
    return {k: (v[0], v[1], v[2], v[3]) for k, v in out.items()}


def _save(fig: plt.Figure, out: Path, name: str, svg: bool) -> Drawing:
    """``out/name.png`` (what the page embeds) and, with ``svg``, ``out/name.svg``."""
    fig.tight_layout()
    png = out / f"{name}.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png")
    image = Image.open(buffer)
    panels = panel_boxes(fig, image.size)
    # A 256-colour palette: line art loses nothing visible, the page embedding it a third.
    image.convert("RGB").quantize(colors=256).save(png, optimize=True)
    written = [png]
    if svg:  # vector copies for papers: five times the PNGs' bytes and a third of the drawing time
        fig.savefig(out / f"{name}.svg")
        written.append(out / f"{name}.svg")
    plt.close(fig)
    return Drawing(written, panels)


def _leaders(order: list[str], limit: int = HIGHLIGHT) -> tuple[list[str], list[str]]:
    """The first ``limit`` of ``order`` (drawn in colour) and the rest (grey)."""
    return order[:limit], order[limit:]


def _draw_lines(ax: plt.Axes, curves: dict[str, pd.DataFrame], order: list[str], references: set[str],
                band: bool = True) -> None:
    """Leaders in colour with a numbered legend, the rest grey, references black."""
    leaders, rest = _leaders([e for e in order if e in curves and e not in references])
    for e in rest:
        ax.plot(curves[e]["x"], curves[e]["mean"], color=GREY, lw=0.8, zorder=1)
    for i, e in enumerate(leaders):
        c = curves[e]
        colour = PALETTE[i % len(PALETTE)]
        ax.plot(c["x"], c["mean"], color=colour, lw=1.5, marker="o", markersize=2.5, zorder=3,
                label=f"{i + 1}. {e}")
        if band:
            ax.fill_between(c["x"], c["mean"] - c["half"], c["mean"] + c["half"], color=colour, alpha=0.12, lw=0)
    for e in sorted(references & set(curves)):
        ax.plot(curves[e]["x"], curves[e]["mean"], color="black", lw=1.1, ls="--", zorder=4, label=f"{e} (reference)")
    if rest:
        ax.plot([], [], color=GREY, lw=0.8, label=f"{len(rest)} others")
    ax.legend(fontsize=6.5, frameon=False, loc="best", handlelength=1.6)


def _draw_dots(ax: plt.Axes, curves: dict[str, pd.DataFrame], order: list[str], references: set[str]) -> None:
    """One evaluation per estimator (a short run evaluates only at its end): each
    estimator's mean with its 95% interval on a row of its own, in rank order from the top,
    leaders in colour, references as dashed vertical lines. A line plot of one point per
    curve stacks every estimator on one x and hides which is which."""
    names = [e for e in order if e in curves and e not in references]
    leaders, _ = _leaders(names)
    rows = np.arange(len(names))[::-1]  # the best at the top
    for row, e in zip(rows, names):
        point = curves[e].iloc[0]
        colour = PALETTE[leaders.index(e) % len(PALETTE)] if e in leaders else GREY
        ax.errorbar(point["mean"], row, xerr=point["half"], fmt="o", markersize=3, color=colour, elinewidth=1.2,
                    capsize=0, zorder=3)
    for e in sorted(references & set(curves)):
        ax.axvline(curves[e]["mean"].iloc[0], color="black", lw=1.1, ls="--", zorder=4, label=f"{e} (reference)")
    ax.set_yticks(rows, [f"{i + 1}. {e}" for i, e in enumerate(names)], fontsize=6 if len(names) <= 16 else 5)
    ax.set_ylim(-0.8, len(names) - 0.2)
    if references & set(curves):
        ax.legend(fontsize=6.5, frameon=False, loc="lower right", handlelength=1.6)


def _curves(series: pd.DataFrame, x: str) -> pd.DataFrame:
    """Mean, 95% half-width and x position per step over seeds (numpy sums per step: a
    pandas group-by per estimator and panel took a tenth of the report's time)."""
    steps, where = np.unique(series["step"].to_numpy(), return_inverse=True)
    n = np.bincount(where, minlength=len(steps)).astype(float)
    values = series["value"].to_numpy(dtype=float)
    mean = np.bincount(where, values, len(steps)) / n
    squares = np.bincount(where, (values - mean[where]) ** 2, len(steps))
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.where(n > 1, np.sqrt(squares / (n - 1)), 0.0)
    return pd.DataFrame({"x": np.bincount(where, series[x].to_numpy(dtype=float), len(steps)) / n, "mean": mean,
                         "sd": sd, "n": n, "half": 1.96 * sd / np.sqrt(n)}, index=pd.Index(steps, name="step"))


def score_curves(results: Results, board_map: dict[str, Board], style: Style, x: str) -> Drawn | None:
    """The true score at its evaluation checkpoints, against training step or wall-clock."""
    s = results.series[results.series["status"].isin(["done", "diverged"])]

    def metric(config: str, board: Board) -> str | None:
        """The score's series, or its validation split's where a grid left the test split
        to the end (:mod:`dgbench.harness.deferred`)."""
        names = set(s.loc[s["config"] == config, "name"])
        valid = "valid_" + board.score.metric.split("_", 1)[-1]
        return board.score.metric if board.score.metric in names else (valid if valid in names else None)

    panels = [(c, b, metric(c, b)) for c, b in board_map.items() if b.score is not None and metric(c, b)]
    if not panels:
        return None
    fig, axes = _grid(len(panels))
    for ax, (config, board, name) in zip(axes, panels):
        sub = s[(s["config"] == config) & (s["name"] == name)]
        curves = {str(e): _curves(group, x) for e, group in sub.groupby("estimator")}
        ranked = sorted(board.by_score, key=lambda e: board.by_score[e].rank)
        order = ranked + sorted(e for e in curves if e not in ranked)
        references = set(board.references) | {e for e in curves if style.group.get(e) == "reference"}
        label = board.score.label if name == board.score.metric else f"{name} (test: at the end only)"
        ax.set_gid(config)
        ax.set_title(panel_title(config), fontsize=8.5)
        if x == "step" and all(len(c) == 1 for c in curves.values()):  # evaluated once, at the end
            _draw_dots(ax, curves, order, references)
            step = int(next(iter(curves.values())).index[0])
            ax.set_xlabel(f"{label} at step {step}, the only evaluation\n({board.score.direction})", fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
            continue
        _draw_lines(ax, curves, order, references)
        if x == "wall":
            _log(ax, "x")
        ax.set_xlabel("training step" if x == "step" else "wall-clock, training only (s)", fontsize=8)
        ax.set_ylabel(f"{label}\n({board.score.direction})", fontsize=8)
        ax.tick_params(labelsize=7)
    return fig, "score_steps" if x == "step" else "score_wall"


def variance_along_training(results: Results, style: Style) -> Drawn | None:
    s = results.series[(results.series["name"] == "grad_variance_mean")
                       & (results.series["status"].isin(["done", "diverged"]))]
    if s.empty:
        return None
    configs = sorted(s["config"].unique())
    fig, axes = _grid(len(configs))
    for ax, config in zip(axes, configs):
        zero, curves = [], {}
        for estimator, group in s[s["config"] == config].groupby("estimator"):
            stats = _curves(group, "step")
            if (stats["mean"] <= ZERO_VARIANCE).all():  # exact by construction here: named, not drawn
                zero.append(str(estimator))
                continue
            curves[str(estimator)] = stats
        order = sorted(curves, key=lambda e: float(curves[e]["mean"].median()))  # lowest variance first
        _draw_lines(ax, curves, order, set(), band=False)
        _log(ax, "y")
        ax.set_gid(config)
        ax.set_title(panel_title(config) + (f"\nzero variance, not shown: {', '.join(zero)}" if zero else ""),
                     fontsize=8)
        ax.set_xlabel("training step (checkpoints marked)", fontsize=8)
        ax.set_ylabel("gradient variance per coordinate\n(lower is better)", fontsize=8)
        ax.tick_params(labelsize=7)
    return fig, "variance_steps"


def _front(points: pd.DataFrame) -> pd.DataFrame:
    """Non-dominated points (lower cost and lower variance), sorted by cost."""
    points = points.sort_values(["cost", "variance"])
    front, best = [], math.inf
    for idx, row in points.iterrows():
        if row["variance"] < best:
            front.append(idx)
            best = row["variance"]
    return points.loc[front]


def pareto(long: pd.DataFrame, board_map: dict[str, Board], style: Style, cost: str) -> Drawn | None:
    """log variance against log cost per estimate; the front of estimators without detected bias."""
    var = long[long["quantity"] == "log10 grad variance"].set_index(["config", "estimator"])["mean"]
    cst = long[long["quantity"] == cost].set_index(["config", "estimator"])["mean"]
    both = pd.concat({"log10var": var, "cost": cst}, axis=1).replace([np.inf, -np.inf], np.nan).dropna()
    both = both[both["cost"] > 0]
    if both.empty:
        return None
    configs = sorted(both.index.get_level_values(0).unique())
    fig, axes = _grid(len(configs))
    for ax, config in zip(axes, configs):
        sub = both.loc[config].assign(variance=lambda d: 10 ** d["log10var"])
        board = board_map.get(config)
        zero = [e for e in sub.index if sub.loc[e, "variance"] <= ZERO_VARIANCE]
        sub = sub.drop(index=zero)
        biased = set(board.biased) if board else set()
        front = _front(sub[[e not in biased for e in sub.index]])
        for estimator, row in sub.iterrows():  # the front in colour and named; the rest grey
            on_front = estimator in front.index
            colour = PALETTE[list(front.index).index(estimator) % len(PALETTE)] if on_front else "#8a8a8a"
            ax.scatter(row["cost"], row["variance"], marker="o", s=30 if on_front else 16, color=colour,
                       facecolors="none" if estimator in biased else colour, linewidths=1.0, zorder=3)
        if len(front):
            ax.step(front["cost"], front["variance"], where="post", color="#555", lw=0.8, ls="--", zorder=2)
            for i, (estimator, row) in enumerate(front.iterrows()):
                ax.annotate(estimator, (row["cost"], row["variance"]), textcoords="offset points", xytext=(4, 3),
                            fontsize=6.5, color=PALETTE[i % len(PALETTE)])
        ax.text(0.99, 0.01, f"{len(sub) - len(front)} others (grey; hollow: biased)", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=6.5, color="#666")
        _log(ax, "xy")
        ax.set_gid(config)
        ax.set_title(panel_title(config) + (f"\nzero variance, not shown: {', '.join(zero)}" if zero else ""),
                     fontsize=8)
        ax.set_xlabel("ms per estimate" if cost == "ms per estimate" else "f-evaluations per estimate", fontsize=8)
        ax.set_ylabel("gradient variance per coordinate", fontsize=8)
        ax.tick_params(labelsize=7)
    name = "pareto_seconds" if cost == "ms per estimate" else "pareto_evals"
    return fig, name


def time_to_target(results: Results, board_map: dict[str, Board], style: Style) -> Drawn | None:
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
        return None
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
        ax.set_gid(config)
        ax.set_title(f"{panel_title(config)}\ntarget: {board.score.label.split(' (')[0]} {'≥' if sign > 0 else '≤'} {target:.4g}",
                     fontsize=8)
        ax.set_xlabel("training seconds to reach the target", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    return fig, "time_to_target"


def sensitivity(results: Results, board_map: dict[str, Board], style: Style) -> Drawn | None:
    """The selection metric (mean over seeds) against the learning rate, one line per
    estimator, its selected point ringed: flat lines are robust estimators. With more
    axes than ``lr``, each line is the best over the other axes at each rate."""
    t = results.tuning
    if t.empty or "axis lr" not in t.columns:
        return None
    t = t[t["status"].isin(["done", "diverged"]) & t["axis lr"].notna()]
    panels = [c for c in board_map if (t["config"] == c).any() and t.loc[t["config"] == c, "axis lr"].nunique() > 1]
    if not panels:
        return None
    fig, axes = _grid(len(panels))
    for ax, config in zip(axes, panels):
        sub = t[t["config"] == config]
        sel = results.selection[results.selection["config"] == config].set_index("estimator")
        direction = sel["direction"].iloc[0]
        curves = {}
        for estimator, group in sub.groupby("estimator"):
            means = group.groupby(["point", "axis lr"])["value"].mean().reset_index()
            best = means.groupby("axis lr")["value"].agg("max" if direction == "max" else "min")
            curves[str(estimator)] = pd.DataFrame({"x": best.index.to_numpy(float), "mean": best.to_numpy(float),
                                                   "half": 0.0})
        board = board_map[config]
        ranked = sorted(board.by_score, key=lambda e: board.by_score[e].rank)
        order = ranked + sorted(e for e in curves if e not in ranked)
        references = set(board.references) | {e for e in curves if style.group.get(e) == "reference"}
        _draw_lines(ax, curves, order, references, band=False)
        for estimator, row in sel.iterrows():
            lr = results.tuning.loc[(results.tuning["config"] == config) & (results.tuning["estimator"] == estimator)
                                    & (results.tuning["point"] == row["selected"]), "axis lr"]
            if len(lr) and math.isfinite(row["mean"]):
                ax.plot([lr.iloc[0]], [row["mean"]], marker="o", markersize=7, mfc="none", mec="black", mew=0.8,
                        zorder=5)
        _log(ax, "xy")
        ax.set_gid(config)
        ax.set_title(panel_title(config), fontsize=8.5)
        ax.set_xlabel("learning rate", fontsize=8)
        metric = sel["metric"].iloc[0]
        ax.set_ylabel(f"{metric}, mean over seeds\n({'higher' if direction == 'max' else 'lower'} is better; "
                      "ringed: selected)", fontsize=8)
        ax.tick_params(labelsize=7)
    return fig, "sensitivity_lr"


def rank_heatmap(board_map: dict[str, Board], overall: pd.DataFrame) -> Drawn | None:
    rows = [{"config": c, "estimator": e, "rank": s.rank} for c, b in board_map.items() for e, s in b.by_score.items()]
    if not rows:
        return None
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
    return fig, "ranks"


def all_figures(results: Results, long: pd.DataFrame, board_map: dict[str, Board], out: Path,
                ranking: pd.DataFrame, *, svg: bool = False, processes: int | None = None) -> dict[str, Drawing]:
    """Write every figure into ``out`` (PNG; with ``svg`` also SVG); ``{title: drawing}`` for
    those with data (its files and its panels' places). ``long``, ``board_map`` and ``ranking`` are computed once by the caller.
    The figures are drawn in ``processes`` forked processes (default: one per core, where
    the platform forks): matplotlib's text layout is most of a report's time."""
    out.mkdir(parents=True, exist_ok=True)
    style = Style(results)
    jobs = [  # in the page's order; the costliest come first, so that a pool ends together
        ("True score at evaluation checkpoints vs training step", score_curves, (results, board_map, style, "step")),
        ("True score vs training wall-clock", score_curves, (results, board_map, style, "wall")),
        ("Time to target (the median estimator's final score), training wall-clock", time_to_target,
         (results, board_map, style)),
        ("Variance vs cost at the initial parameters (seconds; hollow: biased; dashed: Pareto front of the rest)",
         pareto, (long, board_map, style, "ms per estimate")),
        ("Variance vs f-evaluations per estimate (hollow: biased)", pareto,
         (long, board_map, style, "f evals per estimate")),
        ("Gradient variance along training", variance_along_training, (results, style)),
        ("Ranks by true score", rank_heatmap, (board_map, ranking)),
        ("Sensitivity to the learning rate: the selection metric at every grid point (ringed: the selected one)",
         sensitivity, (results, board_map, style)),
    ]
    global _JOBS
    _JOBS = [(draw, args, out, svg) for _, draw, args in jobs]
    try:
        processes = min(len(jobs), processes or os.cpu_count() or 1)
        if processes > 1 and "fork" in multiprocessing.get_all_start_methods():
            # Forked children inherit the data (nothing is pickled but the paths they return).
            with multiprocessing.get_context("fork").Pool(processes, initializer=_quiet_worker) as pool:
                written = pool.map(_draw_and_save, range(len(jobs)), chunksize=1)
        else:
            written = [_draw_and_save(i) for i in range(len(jobs))]
    finally:
        _JOBS = []
    fresh = {p for drawing in written if drawing for p in drawing.paths}
    for stale in [*out.glob("*.png"), *out.glob("*.svg")]:  # an earlier report's (say, its SVGs)
        if stale not in fresh:
            stale.unlink()
    return {title: drawing for (title, _, _), drawing in zip(jobs, written) if drawing}


_JOBS: list[tuple[Callable[..., Drawn | None], tuple, Path, bool]] = []


def _quiet_worker() -> None:
    """A drawing process dies quietly: it does not inherit the CLI's SIGTERM handler (the
    pool's exit terminates it; the handler would print a traceback per worker), and Ctrl-C
    is the parent's to handle."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _draw_and_save(index: int) -> Drawing | None:
    draw, args, out, svg = _JOBS[index]
    drawn = draw(*args)
    return _save(drawn[0], out, drawn[1], svg) if drawn else None
