"""Figures of a results directory (matplotlib/seaborn, PNG and SVG).

One colour per estimator across every figure; labelled axes with units; log scales
where values span decades; one panel per problem configuration.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from reports.results import Results  # noqa: E402
from reports.summary import ranks  # noqa: E402

PANEL = (4.2, 3.2)


def palette(estimators: list[str]) -> dict[str, tuple]:
    names = sorted(set(estimators))
    return dict(zip(names, sns.color_palette("husl", len(names))))


def _grid(n: int) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(3, max(1, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL[0] * cols, PANEL[1] * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend(fig: plt.Figure, colors: dict[str, tuple], used: set[str]) -> None:
    handles = [plt.Line2D([], [], color=colors[e], lw=2, label=e) for e in sorted(used)]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, 0.0))


def _save(fig: plt.Figure, out: Path, name: str) -> list[Path]:
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    for path in paths:
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return paths


def _series_figure(results: Results, colors, out: Path, name: str, x: str, quantity: str, ylabel: str,
                   logy: bool) -> list[Path]:
    s = results.series[(results.series["name"] == quantity) & (results.series["status"].isin(["done", "diverged"]))]
    if s.empty:
        return []
    configs = sorted(s["config"].unique())
    fig, axes = _grid(len(configs))
    used = set()
    for ax, config in zip(axes, configs):
        for estimator, group in s[s["config"] == config].groupby("estimator"):
            stats = group.groupby("step").agg(x=(x, "mean"), mean=("value", "mean"), sd=("value", "std"),
                                              n=("value", "size"))
            values = stats["mean"].to_numpy()
            if logy and not (values > 0).any():
                continue
            half = 1.96 * stats["sd"].fillna(0).to_numpy() / np.sqrt(stats["n"].to_numpy())
            ax.plot(stats["x"], values, color=colors[estimator], lw=1.2)
            lower = np.maximum(values - half, values * 1e-3) if logy else values - half
            ax.fill_between(stats["x"], lower, values + half, color=colors[estimator], alpha=0.2, lw=0)
            used.add(estimator)
        if logy:
            ax.set_yscale("log")
        ax.set_title(config, fontsize=8)
        ax.set_xlabel("training step" if x == "step" else "wall-clock (s, training only)")
        ax.set_ylabel(ylabel)
    _legend(fig, colors, used)
    return _save(fig, out, name)


def bias_variance(long: pd.DataFrame, colors, out: Path) -> list[Path]:
    var = long[long["quantity"] == "log10 grad variance"].set_index(["config", "estimator"])["mean"]
    bias = long[long["quantity"] == "grad bias norm"].set_index(["config", "estimator"])["mean"]
    both = pd.concat({"log10var": var, "bias": bias}, axis=1).dropna()
    if both.empty:
        return []
    configs = sorted(both.index.get_level_values(0).unique())
    fig, axes = _grid(len(configs))
    used = set()
    for ax, config in zip(axes, configs):
        sub = both.loc[config]
        for estimator, row in sub.iterrows():
            ax.scatter(10 ** row["log10var"], max(row["bias"], 1e-12), color=colors[estimator], s=28)
            used.add(estimator)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(config, fontsize=8)
        ax.set_xlabel("gradient variance (mean per coordinate)")
        ax.set_ylabel("bias norm (floor 1e-12)")
    _legend(fig, colors, used)
    return _save(fig, out, "bias_variance")


def cost(long: pd.DataFrame, colors, out: Path) -> list[Path]:
    t = long[long["quantity"] == "seconds per step"]
    if t.empty:
        return []
    evals = long[long["quantity"] == "f evals per step"].set_index(["config", "estimator"])["mean"]
    configs = sorted(t["config"].unique())
    fig, axes = _grid(len(configs))
    for ax, config in zip(axes, configs):
        sub = t[t["config"] == config].sort_values("estimator")
        ax.barh(sub["estimator"], sub["mean"] * 1e3, color=[colors[e] for e in sub["estimator"]])
        for y, (estimator, value) in enumerate(zip(sub["estimator"], sub["mean"] * 1e3)):
            n = evals.get((config, estimator), math.nan)
            if math.isfinite(n):
                ax.text(value, y, f" {n:g} evals", va="center", fontsize=6)
        ax.set_xscale("log")
        ax.set_title(config, fontsize=8)
        ax.set_xlabel("time per training step (ms, log scale)")
        ax.tick_params(axis="y", labelsize=6)
    return _save(fig, out, "cost")


def rank_heatmap(long: pd.DataFrame, results: Results, out: Path) -> list[Path]:
    r = ranks(long, results)
    if r.empty:
        return []
    table = r.pivot(index="estimator", columns="config", values="rank")
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * table.shape[1], 1.0 + 0.35 * table.shape[0]))
    sns.heatmap(table, annot=True, fmt=".0f", cmap="viridis_r", cbar_kws={"label": "rank (1 = best)"}, ax=ax,
                annot_kws={"fontsize": 7})
    ax.set_xlabel("problem configuration")
    ax.set_ylabel("estimator")
    ax.tick_params(axis="x", labelsize=6, rotation=60)
    fig.tight_layout()
    paths = [out / "ranks.png", out / "ranks.svg"]
    for path in paths:
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return paths


def all_figures(results: Results, long: pd.DataFrame, out: Path) -> dict[str, list[Path]]:
    """Write every figure into ``out``; ``{title: [png, svg]}`` for those with data.

    ``long`` is :func:`reports.summary.long_summary` of ``results``, computed once by the caller.
    """
    out.mkdir(parents=True, exist_ok=True)
    colors = palette(list(results.cells["estimator"]))
    figures = {
        "Training objective vs step": _series_figure(results, colors, out, "objective_steps", "step", "objective",
                                                     "objective (per example)", False),
        "Training objective vs wall-clock": _series_figure(results, colors, out, "objective_wall", "wall", "objective",
                                                           "objective (per example)", False),
        "Gradient variance along training": _series_figure(results, colors, out, "variance_steps", "step",
                                                           "grad_variance_mean", "gradient variance (log scale)", True),
        "Bias and variance at the initial parameters": bias_variance(long, colors, out),
        "Time and f-evaluations per step": cost(long, colors, out),
        "Ranks": rank_heatmap(long, results, out),
    }
    return {title: paths for title, paths in figures.items() if paths}
