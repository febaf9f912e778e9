"""GitHub-flavoured Markdown tables written directly (no optional dependency decides the format)."""

from __future__ import annotations

import math

import pandas as pd


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` as a pipe table: a header row, a delimiter row, one row per record.

    Numeric columns are right-aligned; ``|`` in cells is escaped."""
    if frame.columns.empty:
        return ""
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in frame.columns]
    lines = ["| " + " | ".join(_text(c) for c in frame.columns) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_text(v) for v in row) + " |")
    return "\n".join(lines)
