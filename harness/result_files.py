"""The files cells keep in a results directory besides the database: checkpoints of
training cells and shared reference gradients (workers write them; the driver alone
writes the database)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgbench.harness.cells import run_cell
from dgbench.harness.checkpoints import Checkpoint, checkpoint_path
from dgbench.harness.defaults import DEFAULT_CHECKPOINT_SECONDS  # noqa: E402,F401  (re-exported)
from dgbench.harness.references import DIRECTORY as REFERENCES
from dgbench.harness.seed_batching import CellGroup, run_group
from dgbench.harness.suites import Cell


@dataclass
class ResultFiles:
    """The files cells keep in the results directory: checkpoints of training cells
    (written every ``checkpoint_seconds``) and shared reference gradients."""

    directory: Path
    checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS

    def checkpoint(self, cell: Cell) -> Checkpoint | None:
        if cell.kind != "train":
            return None
        return Checkpoint(checkpoint_path(self.directory, cell.key), cell.key, self.checkpoint_seconds)

    @property
    def references(self) -> Path:
        return self.directory / REFERENCES


def run_with_files(cell: Cell | CellGroup, device: str, files: ResultFiles | None) -> dict[str, Any]:
    """:func:`run_cell` (or, for a seed-batched group, :func:`run_group`) with the cell's
    checkpoint and the shared references, if any."""
    if isinstance(cell, CellGroup):
        return run_group(cell, device, files.checkpoint(cell) if files else None)
    if files is None:
        return run_cell(cell, device)
    return run_cell(cell, device, files.checkpoint(cell), files.references)
