"""The report's tables in several formats and the self-contained ``index.html``."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from reports.results import Results

STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1400px; }
table { border-collapse: collapse; font-size: 12px; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; }
img { max-width: 100%; border: 1px solid #ddd; margin-bottom: 1em; }
pre { background: #f7f7f7; padding: 0.5em; overflow-x: auto; font-size: 12px; }
"""


def write_tables(display: pd.DataFrame, numeric: pd.DataFrame, out: Path, formats: list[str]) -> list[Path]:
    written = []
    if "csv" in formats:
        path = out / "summary.csv"
        numeric.reset_index().to_csv(path, index=False)
        written.append(path)
    if "md" in formats:
        path = out / "summary.md"
        path.write_text(display.reset_index().to_markdown(index=False) if _has_tabulate() else
                        display.reset_index().to_string(index=False))
        written.append(path)
    if "tex" in formats:
        path = out / "summary.tex"
        path.write_text(display.reset_index().to_latex(index=False, escape=True))
        written.append(path)
    return written


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def index_html(results: Results, display: pd.DataFrame, figures: dict[str, list[Path]], title: str,
               comparison: tuple[dict, pd.DataFrame] | None = None) -> str:
    provenance = results.provenance()
    problems = results.cells[results.cells["status"].isin(["failed", "diverged", "skipped"])]
    issues = (problems.groupby(["status", "config", "estimator", "reason"], dropna=False).size()
              .reset_index(name="cells").sort_values(["status", "config", "estimator"]))
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if comparison is not None:
        record, table = comparison
        parts += [
            f"<h2>Comparison: {html.escape(record['estimator'])}</h2>",
            f"<p>{html.escape(record['spec'])} on suite {html.escape(record['suite'])}: "
            f"{html.escape(record['reuse_note'])} ({record['cells_reused']} cells reused, "
            f"{record['cells_computed']} computed). Ratios are new / best built-in estimator "
            "(lowest variance, bias and time; best final objective).</p>",
            table.to_html(index=False, escape=True, na_rep="", float_format=lambda v: f"{v:.3g}"),
        ]
    parts += [
        "<h2>Provenance</h2>", f"<pre>{html.escape(json.dumps(provenance, indent=2))}</pre>",
        "<h2>Summary</h2>",
        "<p>Mean over seeds with a 95% bootstrap interval [low, high]; gradient statistics at the "
        "initial parameters; rank 1 is best (by final objective where trained, else gradient MSE); "
        "status columns count cells.</p>",
    ]
    for config, table in display.groupby(level=0):
        parts.append(f"<h3>{html.escape(str(config))}</h3>")
        parts.append(table.droplevel(0).to_html(escape=True, na_rep=""))
    parts.append("<h2>Figures</h2>")
    for name, paths in figures.items():
        png = next(p for p in paths if p.suffix == ".png")
        parts.append(f"<h3>{html.escape(name)}</h3>{_image(png)}")
    parts.append("<h2>Skipped, diverged and failed cells</h2>")
    if issues.empty:
        parts.append("<p>None.</p>")
    else:
        parts.append(issues.to_html(index=False, escape=True, na_rep=""))
    parts.append("<h2>Suite</h2>")
    parts.append(f"<pre>{html.escape(results.suite.get('source', ''))}</pre>")
    # A self-check for browsers and tests: how many figures decoded once the page loaded.
    parts.append("<script>window.addEventListener('load', function () {"
                 "var imgs = Array.from(document.images);"
                 "document.body.setAttribute('data-images', imgs.length);"
                 "document.body.setAttribute('data-images-loaded', imgs.filter(function (i) {"
                 "return i.complete && i.naturalWidth > 0; }).length); });</script>")
    parts.append("</body></html>")
    return "\n".join(parts)
