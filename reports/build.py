"""``dgbench report``: tables, figures and one self-contained HTML page for a results directory."""

from __future__ import annotations

import json
from pathlib import Path

from dgbench.reports.banner import banner
from dgbench.reports.comparison import Comparison, compare_estimator, comparison_html
from dgbench.reports.figures import all_figures
from dgbench.reports.leaderboard import boards, overall
from dgbench.reports.page import index_html, summary_markdown, write_tables
from dgbench.reports.results import ReportError, load
from dgbench.reports.summary import config_tables, long_summary, not_run, numeric_table

FORMATS = ("html", "md", "tex", "csv", "svg")
DEFAULT_FORMATS = ("html", "md", "tex", "csv")  # svg on request: it was more than half of a report's bytes


def build_report(directory: str | Path, formats: list[str] | None = None, out: str | Path | None = None) -> list[Path]:
    """Write the report of ``directory`` into ``out`` (default ``DIRECTORY/report``); the paths
    written. ``formats`` (default :data:`DEFAULT_FORMATS`): ``html`` is the page and its PNG
    figures, ``md``/``tex``/``csv`` the tables, ``svg`` vector copies of the figures."""
    formats = list(formats or DEFAULT_FORMATS)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ReportError(f"unknown report format(s) {', '.join(unknown)} (valid: {', '.join(FORMATS)})")
    results = load(directory)
    out = Path(out) if out else Path(directory) / "report"
    out.mkdir(parents=True, exist_ok=True)
    long = long_summary(results)  # the bootstrap work, done once for tables, figures and comparison
    board_map = boards(results)
    ranking = overall(board_map)
    tables = config_tables(results, long, board_map)
    title = f"dgbench report: suite {results.suite.get('name', '?')} ({Path(directory).name})"
    first_screen = banner(results, board_map, results.suite.get("name", "SUITE"), str(directory))
    markdown = summary_markdown(title, board_map, ranking, tables, bool(results.estimators), first_screen.markdown())
    written = write_tables(numeric_table(results, long, board_map), markdown, out, formats, tables)
    comparison: Comparison | None = None
    record_path = Path(directory) / "compare.json"
    if record_path.is_file():  # a `dgbench compare` directory: the new estimator comes first
        record = json.loads(record_path.read_text())
        comparison = compare_estimator(results, long, board_map, record)
        table_path = out / "comparison.csv"
        comparison.table.to_csv(table_path, index=False)
        written.append(table_path)
    figures = {}
    if "html" in formats or "svg" in formats:
        figures = all_figures(results, long, board_map, out / "figures", ranking, svg="svg" in formats)
        written += [p for drawing in figures.values() for p in drawing.paths]
    if "html" in formats:
        page = out / "index.html"
        page.write_text(index_html(results, board_map, ranking, tables, not_run(results), figures, title,
                                   comparison_html(comparison) if comparison else None, first_screen.html()),
                        encoding="utf-8")
        written.insert(0, page)
    return written
