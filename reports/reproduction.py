"""The report of a reproduction: published and measured side by side, with a verdict per
entry, the row's ordering agreement, and every protocol difference.

Takes plain data (the reproduction's description and its entries, see
:mod:`dgbench.harness.reproduce`) and writes Markdown and CSV.
"""

from __future__ import annotations

import csv
import io
from typing import Any


def agrees(entry: Any, tolerance: float) -> bool | None:
    """Whether the measured mean matches the published value (within ``tolerance``) or
    satisfies the published bound; None when nothing was measured."""
    if entry.mean is None:
        return None
    if entry.bound == "<=":
        return entry.mean <= entry.published + tolerance
    if entry.bound == ">=":
        return entry.mean >= entry.published - tolerance
    return abs(entry.mean - entry.published) <= tolerance


def published_text(entry: Any) -> str:
    return f"{entry.bound} {entry.published:g}" if entry.bound else f"{entry.published:g}"


def verdict(entry: Any, tolerance: float, unit: str) -> str:
    if entry.mean is None:
        return entry.status
    if entry.bound:
        ok = agrees(entry, tolerance)
        return f"{'meets' if ok else 'misses'} the bound {published_text(entry)}" + ("" if ok else f" by more than {tolerance:g}")
    diff = entry.mean - entry.published
    if abs(diff) <= tolerance:
        return f"within {tolerance:g} {unit}".strip()
    return f"off by {diff:+.2f} {unit}".strip()


def ordering(entries: list[Any], lower_is_better: bool) -> tuple[int, int]:
    """Pairs of measured entries of one row ranked in the same order as published: (agree, pairs)."""
    measured = [e for e in entries if e.mean is not None]
    agree = pairs = 0
    for i, a in enumerate(measured):
        for b in measured[i + 1:]:
            if a.published == b.published:
                continue
            pairs += 1
            agree += (a.published < b.published) == (a.mean < b.mean)
    return agree, pairs


def _fmt(x: float | None, digits: int = 2) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _grid(selected: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in selected.items())


def csv_text(rep: Any, entries: list[Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "column", "estimator", "published", "measured_mean", "ci95_low", "ci95_high", "seeds",
                "difference", "verdict", "selected", "values"])
    for e in entries:
        ci = e.interval()
        col = rep.column(e.column)
        w.writerow([e.row, e.column, col["estimator"], published_text(e), _fmt(e.mean, 4), _fmt(ci and ci[0], 4),
                    _fmt(ci and ci[1], 4), len(e.values), _fmt(None if e.mean is None else e.mean - e.published, 4),
                    verdict(e, rep.tolerance, rep.unit), _grid(e.selected), " ".join(f"{v:.4f}" for v in e.values)])
    return buf.getvalue()


def markdown(rep: Any, entries: list[Any], notes: list[str], provenance: dict[str, Any], command: str) -> str:
    """The whole report: header, verdict table per row, protocol, filled-in details,
    differences, provenance (``command``: the commands that ran it, as Markdown)."""
    lines = [f"# Reproduction: {rep.title}", ""]
    if any(n.startswith("SHORTENED RUN") for n in notes):
        lines += ["**Shortened run: not a reproduction.** The numbers below only check that the protocol runs.", ""]
    better = "lower" if rep.lower_is_better else "higher"
    lines += [f"Source: {rep.source}", "",
              f"Measured: `{rep.metric}`"
              + (f" ({rep.series_summary.replace('_', ' ')})" if rep.metric.startswith("series:") else "")
              + f" (transform: {rep.transform}), {better} is better; "
              f"an entry is *within* when |measured mean - published| <= {rep.tolerance:g} {rep.unit} "
              "(for a published bound: when the mean meets it, to the same tolerance).", ""]
    mean_line = "mean and 95% t-interval over seeds"
    for row in rep.rows:
        es = [e for e in entries if e.row == row["id"]]
        if not es:
            continue
        agree, pairs = ordering(es, rep.lower_is_better)
        options = es[0].options or row.get("options", {})
        shown = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in options.items())
        lines += [f"## {row['label']}", "", f"Problem `{row['problem']}`"
                  + (f" with options {shown}" if shown else "") + f"; {mean_line}.", ""]
        lines += ["| column | estimator | published | measured | 95% interval | seeds | difference | verdict | selected |",
                  "|---|---|---:|---:|---|---:|---:|---|---|"]
        for e in es:
            col = rep.column(e.column)
            ci = e.interval()
            lines.append("| " + " | ".join([
                col["label"], f"`{col['estimator']}`", published_text(e), _fmt(e.mean),
                f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "", str(len(e.values)),
                _fmt(None if e.mean is None else e.mean - e.published, 2), verdict(e, rep.tolerance, rep.unit),
                _grid(e.selected)]) + " |")
        if pairs:
            lines += ["", f"Ordering: {agree} of {pairs} pairs of estimators ranked as published."]
        lines.append("")
    lines += ["## Protocol (as published)", ""]
    lines += [f"- **{k}**: {v}" for k, v in rep.protocol.items()] + [""]
    if rep.filled_in:
        lines += ["## Filled in where the paper is silent", ""]
        lines += [f"- **{d['detail']}**: {d['value']} (from {d['source']})" for d in rep.filled_in] + [""]
    lines += ["## Differences from the published protocol", ""]
    lines += [f"- {d}" for d in [*notes, *rep.differences]] or ["- none known"]
    lines += ["", "## Provenance", "", f"- command: {command}"]
    for key in ("git_commit", "torch_version", "python_version", "platform", "cpu", "workers", "threads_per_worker", "device"):
        if key in provenance:
            lines.append(f"- {key}: {provenance[key]}")
    return "\n".join(lines) + "\n"
