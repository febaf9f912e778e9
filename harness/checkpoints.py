"""Checkpoints of long training cells, so that a crash, a preemption or Ctrl-C loses at
most ``every_seconds`` of a cell's work.

A training cell saves its whole state (problem and estimator parameters and buffers, the
optimiser, the current position in the data, every generator, the step, the series so
far and the timed seconds) to ``OUT/checkpoints/KEY.pt`` every ``every_seconds`` of wall
time, atomically (written beside, then renamed). A rerun of the same cell continues from
that state and produces the series an uninterrupted run produces (on the CPU, bit for
bit). The driver removes the file once the cell is stored.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

DIRECTORY = "checkpoints"
FORMAT = 1


def checkpoint_path(out: Path, key: str) -> Path:
    return Path(out) / DIRECTORY / f"{key}.pt"


def remove_checkpoint(out: Path, key: str) -> None:
    checkpoint_path(out, key).unlink(missing_ok=True)


@dataclass
class Checkpoint:
    """The checkpoint file of one cell and the policy for writing it."""

    path: Path
    key: str
    every_seconds: float = 60.0

    def __post_init__(self) -> None:
        self._last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_seconds

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.partial")
        torch.save({"format": FORMAT, "key": self.key, **state}, partial)
        os.replace(partial, self.path)
        self._last = time.monotonic()

    def load(self) -> dict[str, Any] | None:
        """The saved state of this cell, or None (no file, another format or another cell;
        an unreadable file is ignored: the cell starts over)."""
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return None
        except Exception:  # truncated or from another torch: start over rather than fail
            return None
        if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("key") != self.key:
            return None
        return state
