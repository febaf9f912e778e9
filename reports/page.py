"""The report's tables in several formats and the self-contained ``index.html``.

The page opens with the answer (the leaderboard and the overall ranking), then says how to
read it, then the details: per configuration, its panels of the score, time-to-target and
variance-vs-cost figures (cut out of the whole figures) above its sortable table; the other
figures; cells that did not finish, provenance and the suite.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path

import pandas as pd
from PIL import Image, features

from dgbench.reports.figures import Drawing
from dgbench.reports.leaderboard import Board
from dgbench.reports.markdown import markdown_table
from dgbench.reports.results import Results
from dgbench.reports.significance import ALPHA_BIAS, ALPHA_TIE

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em 1em; max-width: 1500px; color: #222; }
h1 { font-size: 1.5em; margin: 0 0 0.2em 0; }
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1em; margin-bottom: 0.3em; }
.meta { color: #555; margin: 0 0 0.8em 0; font-size: 13px; }
table { border-collapse: collapse; font-size: 12px; margin-bottom: 1em; }
th, td { border: 1px solid #ddd; padding: 2px 4px; text-align: right; vertical-align: top; }
th { background: #f3f3f3; }
td.text, th.text { text-align: left; }
table.board td, table.board th { text-align: left; }
table.board td.config { font-weight: 600; max-width: 16em; }
table.board td.config .options { display: block; font-weight: 400; color: #666; font-size: 11px; }
table.board td.config a { color: inherit; text-decoration: none; }
table.board td.config a:hover { text-decoration: underline; }
td.wrap { min-width: 12em; max-width: 22em; }
td.wrap .ci, td.text .ci { white-space: normal; }
.best { font-weight: 700; }
.tied { color: #333; }
.over { color: #a15c00; }
.flag { color: #8a3b00; font-size: 0.9em; }
.banner { border-left: 4px solid #4a7ab5; background: #f3f7fc; padding: 0.2em 1em; margin: 0.5em 0 1em; }
.banner.warn { border-left-color: #c77c00; background: #fdf6ea; }
.banner ul { margin: 0.4em 0; padding-left: 1.2em; }
.muted { color: #777; font-size: 11px; }
.biased { color: #b00; }
.scroll { overflow-x: auto; }
th { max-width: 9em; }
.ci { display: block; color: #888; font-size: 10px; white-space: nowrap; }
.ci.interval { white-space: normal; }
.ci.interval span { display: inline-block; white-space: nowrap; }
table.sortable th { cursor: pointer; }
table.sortable th:after { content: " \\2195"; color: #aaa; font-size: 10px; }
img { max-width: 100%; border: 1px solid #eee; margin-bottom: 1em; }
.panels { display: flex; flex-wrap: wrap; gap: 6px; align-items: flex-start; }
.panels img { margin-bottom: 0.4em; }
pre { background: #f7f7f7; padding: 0.5em; overflow-x: auto; font-size: 12px; }
.note { font-size: 12px; color: #444; max-width: 1100px; }
"""

# Click a header to sort its table: numbers by value (the leading number of the cell), text
# alphabetically; a second click reverses.
SORT_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var dir = th.getAttribute('data-dir') === 'asc' ? -1 : 1;
      th.setAttribute('data-dir', dir === 1 ? 'asc' : 'desc');
      function key(row) {
        var text = (row.cells[col] ? row.cells[col].textContent : '').trim();
        var num = parseFloat(text.replace('\\u2212', '-'));
        return isNaN(num) ? [1, text.toLowerCase()] : [0, num];
      }
      rows.sort(function (a, b) {
        var ka = key(a), kb = key(b);
        if (ka[0] !== kb[0]) return ka[0] - kb[0];
        return (ka[1] < kb[1] ? -1 : ka[1] > kb[1] ? 1 : 0) * dir;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""

# A self-check for browsers and tests: how many figures decoded once the page loaded, where
# the leaderboard starts, and whether every table fits the window's width.
IMAGE_CHECK = """
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-images-loaded', imgs.filter(function (i) {
    return i.complete && i.naturalWidth > 0; }).length);
  var board = document.querySelector('table.board');
  if (board) {
    var box = board.getBoundingClientRect();
    document.body.setAttribute('data-leaderboard-top', Math.round(box.top + window.scrollY));
  }
  var right = 0;
  document.querySelectorAll('table').forEach(function (t) {
    right = Math.max(right, t.getBoundingClientRect().right); });
  document.body.setAttribute('data-tables-right', Math.round(right));
  document.body.setAttribute('data-viewport-width', document.documentElement.clientWidth);
});
"""

TOP = 3  # leaderboard cells name this many and summarise the rest
# Figures whose panels are shown with each configuration's table (the rest as whole figures).
BESIDE_TABLES = ("score_steps", "pareto_seconds", "time_to_target")
NO_CATALOG = ("This results database predates recorded declarations (its catalog table is empty): references "
              "are ranked like estimators and declared-biased ones are not kept off the variance boards. Run the "
              "same `dgbench run` command again to record them (finished cells are not recomputed).")


def method_text(seeds: int) -> str:
    """How the leaderboard's calls are made (shown on the page and in summary.md)."""
    if seeds == 1:
        weak = " With one seed nothing is tested (\"untested\"); run more seeds (<code>--seeds 5</code>)."
    elif 1 < seeds < 5:
        weak = (f" With {seeds} seeds the test has {seeds - 1} degree{'s' if seeds > 2 else ''} of freedom, so only "
                "large, consistent differences are called; run more seeds (<code>--seeds 5</code>) for sharper calls.")
    else:
        weak = ""
    return (
        "<b>Score</b>: the problem's true score at the end of training (held-out ELBO, test accuracy, or the exact "
        "objective at hard samples), never a relaxed estimator's own training surrogate. "
        "<b>Best</b>: best mean over seeds. <b>≈ tied</b>: not shown worse than the best by a one-sided paired "
        f"t-test across common seeds, Holm-corrected within the configuration at family-wise level {ALPHA_TIE:g}; "
        "a tie means \"not shown to differ\", not \"equal\"." + weak +
        " <b>Variance</b>: mean per-coordinate gradient variance at the initial parameters, ranked (same test, on "
        "log10) only among estimators at the suite's f-evaluation budget that declare themselves unbiased and whose "
        "bias was not detected (compare biased ones by MSE in the details); "
        "<b>variance × time</b> ranks every cost. <b>Bias</b> (at the initial parameters): <i>biased</i> when the "
        "test along the exact gradient (the estimates projected on g/|g| against |g|) or the largest |bias|/se over "
        "coordinates exceeds its two-sided Bonferroni critical value, the two sharing family-wise level "
        f"{ALPHA_BIAS:g} over the seeds; every \"not detected\" states its minimum detectable bias, the relative "
        "bias along g found with 90% power. Against a sampled reference its standard error enters se. "
        "<b>Over budget</b>: estimators spending more f-evaluations than the suite's budget are listed apart, never "
        "ranked with the others. <b>Flags</b>: an estimator shown better than the exact-gradient reference, or "
        "identical to another here. References (enumeration) are shown, never ranked."
    )


def write_tables(numeric: pd.DataFrame, markdown: str, out: Path, formats: list[str],
                 tables: dict[str, pd.DataFrame]) -> list[Path]:
    written = []
    if "csv" in formats:
        path = out / "summary.csv"
        numeric.reset_index().to_csv(path, index=False)
        written.append(path)
    if "md" in formats:
        path = out / "summary.md"
        path.write_text(markdown, encoding="utf-8")
        written.append(path)
    if "tex" in formats:
        path = out / "summary.tex"
        frames = [t.assign(configuration=c) for c, t in tables.items()]
        combined = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        path.write_text(combined.to_latex(index=False, escape=True), encoding="utf-8")
        written.append(path)
    return written


def _encoded(image: Image.Image, png_bytes: bytes | None = None) -> tuple[str, bytes]:
    """``(mime type, bytes)`` of ``image`` as lossless WebP where Pillow can write it (the
    same pixels in about 18% fewer bytes than PNG, for 0.1 s per figure; where the PNG is
    at hand, ``png_bytes``, whichever is smaller), else as PNG."""
    if features.check("webp"):
        buffer = io.BytesIO()
        image.save(buffer, format="webp", lossless=True, method=2)
        if png_bytes is None or buffer.tell() < len(png_bytes):
            return "image/webp", buffer.getvalue()
    if png_bytes is None:
        buffer = io.BytesIO()
        image.save(buffer, format="png", optimize=True)
        png_bytes = buffer.getvalue()
    return "image/png", png_bytes


def _img(alt: str, mime: str, payload: bytes, attributes: str = "") -> str:
    data = base64.b64encode(payload).decode("ascii")
    return f'<img alt="{html.escape(alt)}"{attributes} src="data:{mime};base64,{data}">'


def _image(path: Path) -> str:
    """The figure inlined (the page is self-contained)."""
    payload = path.read_bytes()
    return _img(path.stem, *_encoded(Image.open(path), payload))


def _panel(drawing: Drawing, image: Image.Image, config: str, title: str) -> str:
    """Configuration ``config``'s panel of ``drawing``, cut out of its PNG ``image`` (same pixels)."""
    box = drawing.panels[config]
    crop = image.crop(box)
    attributes = (f' title="{html.escape(title)}" data-figure="{html.escape(drawing.png.stem)}"'
                  f' data-box="{",".join(map(str, box))}"')
    return _img(f"{drawing.png.stem}: {config}", *_encoded(crop), attributes)


def _fmt(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else ""


def _names(standings: dict, value_format, limit: int = TOP, selected: dict[str, str] | None = None) -> str:
    """HTML: best first in bold, then the tied ones (names beyond ``limit`` summarised);
    with ``selected``, each name's selected grid point after its value."""
    if not standings:
        return '<span class="muted">no finished cells</span>'
    selected = selected or {}

    def point(name: str) -> str:
        return f' <span class="muted">({html.escape(selected[name])})</span>' if name in selected else ""

    ordered = sorted(standings.items(), key=lambda kv: kv[1].rank)
    best_name, best = ordered[0]
    parts = [f'<span class="best">{html.escape(best_name)}</span> {value_format(best.mean)}{point(best_name)}']
    tied = [(n, s) for n, s in ordered[1:] if s.tied]
    untested = [n for n, s in ordered[1:] if s.tied is None]
    shown = ", ".join(f"{html.escape(n)} {value_format(s.mean)}{point(n)}" for n, s in tied[: limit - 1])
    if tied:
        more = len(tied) - (limit - 1)
        title = html.escape(", ".join(n for n, _ in tied))
        parts.append(f'<br><span class="tied" title="{title}">≈ {shown}'
                     + (f" and {more} more tied" if more > 0 else "") + "</span>")
    worse = len(ordered) - 1 - len(tied) - len(untested)
    summary = []
    if worse:
        summary.append(f"{worse} shown worse")
    if untested:
        summary.append(f"{len(untested)} untested (one seed)")
    if summary:
        parts.append(f'<br><span class="muted">{", ".join(summary)} of {len(ordered)}</span>')
    return "".join(parts)


def _log10(value: float) -> str:
    return f"10<sup>{value:.2f}</sup>" if math.isfinite(value) else ""


def _flags_html(board: Board) -> str:
    """What a reader must know before trusting the order: estimators that beat the
    exact-gradient reference, and estimators identical here."""
    notes = []
    beating = board.beats_reference
    if beating:
        called = sorted(e for e, (_, p, _) in beating.items() if math.isfinite(p) and p < ALPHA_TIE)
        ref = next(iter(beating.values()))[0]
        shown = called or sorted(beating, key=lambda e: -beating[e][2])
        how = (f"shown better by a paired test, Holm-corrected at level {ALPHA_TIE:g}" if called
               else "better on average by " + ", ".join(f"{100 * beating[e][2]:.0f}%" for e in shown[:6])
               + ", not shown to differ at these seeds")
        notes.append(f"⚠ {len(shown)} estimator(s) end better than the reference {html.escape(ref)} ({how}): "
                     + ", ".join(map(html.escape, shown[:6])) + ("…" if len(shown) > 6 else "")
                     + ". A reference with the exact gradient should not lose: at one shared learning rate the step "
                     "size, not the gradient, can decide this (an estimator with a normalised or larger effective "
                     "step moves further), and on a non-convex problem the exact gradient can stop at a local "
                     "optimum that noise escapes.")
    for group in board.identical:
        notes.append("identical here (same numbers on every seed, ranked alike): "
                     + " = ".join(map(html.escape, group)))
    return "".join(f"<br><span class='flag'>{n}</span>" for n in notes)


def _over_budget_html(board: Board) -> str:
    """The estimators over the f-evaluation budget, with their counts and scores: shown,
    never ranked among those within the budget."""
    if not board.over_budget:
        return ""
    ordered = sorted(board.over_budget, key=lambda e: board.over_budget_by_score[e].rank
                     if e in board.over_budget_by_score else math.inf)
    names = ", ".join(f"{html.escape(e)} ({board.over_budget[e]:g} evals"
                      + (f", {_fmt(board.over_budget_by_score[e].mean)}" if e in board.over_budget_by_score else "")
                      + ")" for e in ordered)
    return (f"<br><span class='over'>over budget ({board.eval_budget:g} f-evals), not ranked with the others: "
            f"{names}</span>")


def leaderboard_html(board_map: dict[str, Board]) -> str:
    rows = ["<table class='board'><thead><tr><th>problem configuration</th><th>true score</th>"
            "<th>best by score (≈ tied with best)</th><th>lowest gradient variance at equal f-evaluations</th>"
            "<th>lowest variance × seconds per estimate</th></tr></thead><tbody>"]
    for config, board in board_map.items():
        if board.score is not None:
            score = f"{html.escape(board.score.label)}<br><span class='muted'>{board.score.direction}</span>"
        else:
            score = "<span class='muted'>none declared</span>"
        refs = "".join(f"<br><span class='muted'>reference {html.escape(e)}: {_fmt(v)}"
                       + (f" ({html.escape(board.selected[e])})" if e in board.selected else "") + "</span>"
                       for e, v in board.references.items()) + _flags_html(board)
        variance = _names(board.by_variance, _log10) if board.by_variance else "<span class='muted'>—</span>"
        if math.isfinite(board.budget) and board.by_variance:
            variance = f"<span class='muted'>{board.budget:g} evals:</span> " + variance
        notes = []
        if board.zero_variance:
            notes.append("zero variance at the initial parameters (exact there, not elsewhere): "
                         + ", ".join(map(html.escape, board.zero_variance)))
        if board.biased:
            notes.append(f"{len(board.biased)} biased (declared or detected), not ranked")
        if notes:
            variance += "<br><span class='muted'>" + "; ".join(notes) + "</span>"
        work = _names(board.by_work, _log10) if board.by_work else "<span class='muted'>—</span>"
        rows.append(f"<tr><td class='config'><a href='#{config_anchor(config)}'>{config_html(config)}</a></td>"
                    f"<td>{score}</td>"
                    f"<td>{_names(board.by_score, _fmt, selected=board.selected)}{refs}{_over_budget_html(board)}</td><td>{variance}</td>"
                    f"<td>{work}</td></tr>")
    rows.append("</tbody></table>")
    return "".join(rows)


def config_anchor(config: str) -> str:
    """The id of a configuration's details on the page (the leaderboard links to it)."""
    return "config-" + re.sub(r"[^a-z0-9]+", "-", config.lower()).strip("-")


def config_html(config: str) -> str:
    """A configuration's name, its options set small beneath it (``problem(a=1, b=2)``: the
    options took half the leaderboard's width on one line)."""
    name, bracket, options = config.partition("(")
    if not bracket:
        return html.escape(config)
    return f"{html.escape(name)}<span class='options'>({html.escape(options)}</span>"


WRAPPED_COLUMNS = ("bias", "bias at init")  # a verdict and its test's numbers: wrapped, not one wide line


def table_html(frame: pd.DataFrame, sortable: bool = True, text_columns: tuple[str, ...] = ()) -> str:
    cls = "sortable" if sortable else ""
    head = "".join(f"<th class='{'text' if c in text_columns else ''}'>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for c in frame.columns:
            value = row[c]
            text = "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else str(value)
            if isinstance(value, float) and math.isfinite(value):
                text = f"{value:.3g}"
            klass = "text" if c in text_columns else ""
            if c in WRAPPED_COLUMNS:
                klass += " wrap" + (" biased" if text.startswith("biased") else "")
            cells.append(f"<td class='{klass.strip()}'>{_cell_html(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div class='scroll'><table class='{cls}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _cell_html(text: str) -> str:
    """Escaped cell text; a trailing ``[low, high]`` interval and any further lines set
    small beneath the first."""
    first, *rest = text.split("\n")
    interval = ""
    if first.endswith("]") and " [" in first:
        first, bounds = first.split(" [", 1)
        low, comma, high = bounds.partition(", ")
        if comma:  # the bounds stay whole; the line breaks between them only where the window is narrow
            interval = (f"<span class='ci interval'><span>[{html.escape(low)},</span> "
                        f"<span>{html.escape(high)}</span></span>")
        else:
            rest.insert(0, "[" + bounds)
    return html.escape(first) + interval + "".join(f"<span class='ci'>{html.escape(line)}</span>" for line in rest)


def index_html(results: Results, board_map: dict[str, Board], overall: pd.DataFrame,
               tables: dict[str, pd.DataFrame], not_run: dict[str, dict[str, list[str]]],
               figures: dict[str, Drawing], title: str, comparison: str | None = None,
               banner: str = "") -> str:
    provenance = results.provenance()
    problems = results.cells[results.cells["status"].isin(["failed", "diverged", "skipped"])]
    issues = (problems.groupby(["status", "config", "estimator", "reason"], dropna=False).size()
              .reset_index(name="cells").sort_values(["status", "config", "estimator"]))
    seeds = max((b.seeds for b in board_map.values()), default=0)
    n_est = results.cells["estimator"].nunique()
    meta = (f"{len(board_map)} problem configurations · {n_est} estimators · up to {seeds} seeds · "
            f"commit {html.escape(str(provenance.get('git_commit', '?'))[:10])} · "
            "<a href='#how'>how to read</a> · <a href='#details'>details</a> · <a href='#figures'>figures</a>")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>", f"<p class='meta'>{meta}</p>",
    ]
    if not results.estimators:
        parts.append(f"<p class='biased'>{html.escape(NO_CATALOG)}</p>")
    if comparison is not None:
        parts.append(comparison)
    parts += ["<h2 id='leaderboard'>Leaderboard</h2>", banner, leaderboard_html(board_map),
              f"<p class='note'>{method_text(seeds)}</p>"]
    if not overall.empty:
        parts += ["<h2>Overall: mean rank by true score</h2>",
                  "<p class='note'>Across the configurations where each estimator ran; relative rank is "
                  "(rank − 1)/(estimators − 1), 0 = best, so that configurations with different numbers of "
                  "estimators weigh the same. Sorted by it, except that estimators run on fewer than a quarter as many "
                  "configurations as the most widely run one (e.g. <code>pathwise</code>, Gaussian-only) come "
                  "last.</p>",
                  table_html(overall, text_columns=("estimator",))]
    parts += [f"<h2 id='how'>How to read this report</h2><p class='note'>{method_text(seeds)} "
              "Values are means over seeds with a 95% percentile-bootstrap interval [low, high] of the mean; a "
              "constant or single-seed value is shown alone. ↑ higher is better, ↓ lower is better. "
              "Gradient statistics are taken at the initial parameters; timings exclude evaluation.</p>"]
    beside = {title: d for title, d in figures.items() if d.png.stem in BESIDE_TABLES}
    sources = {title: Image.open(d.png) for title, d in beside.items()}  # decoded once, cut per configuration
    shown = f"Each configuration's panels ({'; '.join(map(html.escape, beside))}), then its table. " if beside else ""
    parts.append(f"<h2 id='details'>Details per problem configuration</h2><p class='note'>{shown}"
                 "Click a column header to sort.</p>")
    for config, table in tables.items():
        parts.append(f"<h3 id='{config_anchor(str(config))}'>{html.escape(str(config))} "
                     "<a class='muted' href='#leaderboard'>↑ leaderboard</a></h3>")
        panels = [_panel(d, sources[title], str(config), title) for title, d in beside.items()
                  if str(config) in d.panels]
        if panels:
            parts.append("<div class='panels'>" + "".join(panels) + "</div>")
        parts.append(table_html(table, text_columns=("estimator", "bias at init", "vs best", "cells not done")))
        for reason, names in sorted(not_run.get(config, {}).items()):
            parts.append(f"<p class='muted'>Not run ({html.escape(reason)}): {html.escape(', '.join(sorted(names)))}</p>")
    parts.append("<h2 id='figures'>Figures</h2>")
    for name, drawing in figures.items():
        if name in beside:
            link = f"figures/{drawing.png.name}"
            parts.append(f"<h3>{html.escape(name)}</h3><p class='note'>Shown panel by panel under "
                         f"<a href='#details'>each configuration's details</a>; the whole figure: "
                         f"<a href='{html.escape(link)}'>{html.escape(link)}</a>.</p>")
        else:
            parts.append(f"<h3>{html.escape(name)}</h3>{_image(drawing.png)}")
    parts.append("<h2>Skipped, diverged and failed cells</h2>")
    if issues.empty:
        parts.append("<p>None.</p>")
    else:
        parts.append(table_html(issues, text_columns=("status", "config", "estimator", "reason")))
    parts += ["<h2>Provenance</h2>", f"<pre>{html.escape(json.dumps(provenance, indent=2))}</pre>",
              "<h2>Suite</h2>", f"<pre>{html.escape(results.suite.get('source', ''))}</pre>",
              f"<script>{SORT_SCRIPT}{IMAGE_CHECK}</script>", "</body></html>"]
    return "\n".join(parts)


def summary_markdown(title: str, board_map: dict[str, Board], overall: pd.DataFrame,
                     tables: dict[str, pd.DataFrame], catalog: bool = True, banner: str = "") -> str:
    """summary.md: the leaderboard, the overall ranking and the detailed tables as Markdown."""
    seeds = max((b.seeds for b in board_map.values()), default=0)

    def names(standings: dict) -> str:
        ordered = sorted(standings.items(), key=lambda kv: kv[1].rank)
        if not ordered:
            return ""
        text = f"**{ordered[0][0]}**"
        tied = [n for n, s in ordered[1:] if s.tied]
        return text + (f" (≈ {', '.join(tied)})" if tied else "")

    rows = [{"configuration": config,
             "true score": f"{b.score.label}, {b.score.direction}" if b.score else "",
             "best by score (≈ tied)": names(b.by_score),
             "over budget, not ranked": ", ".join(f"{e} ({n:g} > {b.eval_budget:g} evals)"
                                                  for e, n in sorted(b.over_budget.items())),
             "flags": "; ".join(([f"better than the reference: {', '.join(sorted(b.beats_reference))} (step size "
                                  "or a local optimum, see the page)"] if b.beats_reference else [])
                                + [f"identical: {' = '.join(g)}" for g in b.identical]),
             "lowest variance at equal evals": names(b.by_variance),
             "lowest variance × time": names(b.by_work)} for config, b in board_map.items()]
    plain = method_text(seeds).replace("<b>", "**").replace("</b>", "**").replace("<i>", "*").replace("</i>", "*")
    plain = plain.replace("<code>", "`").replace("</code>", "`")
    parts = [f"# {title}", ""] + ([] if catalog else [f"**Note:** {NO_CATALOG}", ""])
    parts += ["## Leaderboard", ""] + ([banner, ""] if banner else []) + [markdown_table(pd.DataFrame(rows)), "",
                                                                         plain, ""]
    if not overall.empty:
        parts += ["## Overall: mean rank by true score", "",
                  "Sorted by mean relative rank; estimators run on fewer than a quarter as many configurations as the "
                  "most widely run one come last.", "", markdown_table(overall), ""]
    parts += ["## Details", ""]
    for config, table in tables.items():
        parts += [f"### {config}", "", markdown_table(table), ""]
    return "\n".join(parts)
