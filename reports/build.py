"""``dgbench report``: tables, figures and one self-contained HTML page for a results directory."""

from __future__ import annotations

from pathlib import Path

import json

from reports.comparison import comparison_table
from reports.figures import all_figures
from reports.page import index_html, write_tables
from reports.results import ReportError, load
from reports.summary import long_summary, wide_table

FORMATS = ("html", "md", "tex", "csv")


def build_report(directory: str | Path, formats: list[str] | None = None, out: str | Path | None = None) -> list[Path]:
    """Write the report of ``directory`` into ``out`` (default ``DIRECTORY/report``); the paths written."""
    formats = list(formats or FORMATS)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ReportError(f"unknown report format(s) {', '.join(unknown)} (valid: {', '.join(FORMATS)})")
    results = load(directory)
    out = Path(out) if out else Path(directory) / "report"
    out.mkdir(parents=True, exist_ok=True)
    long = long_summary(results)  # the bootstrap work, done once for tables, figures and comparison
    display, numeric = wide_table(results, long)
    written = write_tables(display, numeric, out, formats)
    comparison = None
    record_path = Path(directory) / "compare.json"
    if record_path.is_file():  # a `dgbench compare` directory: the new estimator comes first
        record = json.loads(record_path.read_text())
        comparison = (record, comparison_table(results, long, record["estimator"], record.get("unbiased", False)))
        table_path = out / "comparison.csv"
        comparison[1].to_csv(table_path, index=False)
        written.append(table_path)
    if "html" in formats:
        figures = all_figures(results, long, out / "figures")
        title = f"dgbench report: suite {results.suite.get('name', '?')} ({Path(directory).name})"
        page = out / "index.html"
        page.write_text(index_html(results, display, figures, title, comparison), encoding="utf-8")
        written += [page] + [p for paths in figures.values() for p in paths]
    return written
