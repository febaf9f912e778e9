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


def save_atomically(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` beside ``path``, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    torch.save(state, partial)
    os.replace(partial, path)


def load_saved(path: Path, fmt: int) -> dict[str, Any] | None:
    """What :func:`save_atomically` wrote with ``format = fmt``; None when there is no such
    file or it cannot be read (truncated, another torch, another format): the caller starts over."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    return state if isinstance(state, dict) and state.get("format") == fmt else None


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
        save_atomically(self.path, {"format": FORMAT, "key": self.key, **state})
        self._last = time.monotonic()

    def load(self) -> dict[str, Any] | None:
        """The saved state of this cell, or None (no file, another format or another cell;
        an unreadable file is ignored: the cell starts over)."""
        state = load_saved(self.path, FORMAT)
        if state is None or state.get("key") != self.key:
            return None
        return state
