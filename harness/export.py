"""Export a results database as long-format tables (cells, metrics, series) for pandas."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dgbench.store import NoResults, read_tables

CELL_COLUMNS = ["cell", "kind", "problem", "options", "estimator", "hyperparameters", "seed", "status"]


class ExportError(ValueError):
    pass


def tables(directory: Path) -> dict[str, pd.DataFrame]:
    """runs and cells as stored; metrics and series joined with their cell's description."""
    try:
        t = read_tables(directory)
    except NoResults as err:
        raise ExportError(str(err)) from None
    cells = t.cells.drop(columns=["traceback"])
    described = cells.rename(columns={"key": "cell"})[CELL_COLUMNS]
    join = described.rename(columns={"cell": "cell_key"})
    metrics = join.merge(t.metrics, on="cell_key").rename(columns={"cell_key": "cell"})
    series = join.merge(t.series, on="cell_key").rename(columns={"cell_key": "cell"})
    return {"runs": t.runs, "cells": t.cells, "metrics": metrics, "series": series}


def export(directory: Path, fmt: str, out: Path | None = None) -> list[Path]:
    out = out or directory / "export"
    frames = tables(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in frames.items():
        target = out / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(target, index=False)
        else:
            try:
                frame.to_parquet(target, index=False)
            except ImportError as err:
                raise ExportError(f"parquet export needs pyarrow ({err}); pip install pyarrow, or use --format csv") from None
        written.append(target)
    return written
