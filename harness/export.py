"""Export a results database as long-format tables (cells, metrics, series) for pandas."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd

from dgbench.harness.store import DB_NAME

CELL_COLUMNS = "c.key AS cell, c.kind, c.problem, c.options, c.estimator, c.hyperparameters, c.seed, c.status"


class ExportError(ValueError):
    pass


def tables(directory: Path) -> dict[str, pd.DataFrame]:
    path = directory / DB_NAME
    if not path.is_file():
        raise ExportError(f"{directory} holds no results database ({DB_NAME})")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return {
            "runs": pd.read_sql("SELECT * FROM runs", db),
            "cells": pd.read_sql("SELECT * FROM cells", db),
            "metrics": pd.read_sql(f"SELECT {CELL_COLUMNS}, m.name, m.value FROM metrics m JOIN cells c ON c.key = m.cell_key", db),
            "series": pd.read_sql(f"SELECT {CELL_COLUMNS}, s.step, s.wall, s.name, s.value FROM series s JOIN cells c ON c.key = s.cell_key", db),
        }


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
