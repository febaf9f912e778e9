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

import hashlib
import io
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

DIRECTORY = "checkpoints"
FORMAT = 1


# A saved file is MAGIC, the SHA-256 of the payload, then the payload (torch.save bytes):
# a bit flip anywhere is detected before torch reads a byte of it.
MAGIC = b"DGBENCH-SAVED-1\n"
DIGEST_BYTES = 32


def save_atomically(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` beside ``path`` with a checksum, then rename: readers never see half a
    file, and :func:`load_saved` never uses a damaged one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as fh:
            fh.write(MAGIC + hashlib.sha256(payload).digest() + payload)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def load_saved(path: Path, fmt: int) -> dict[str, Any] | None:
    """What :func:`save_atomically` wrote with ``format = fmt``; None when there is no such
    file. A file that fails its checksum or cannot be read (damaged, truncated, another
    torch, another format) is discarded, with a note on stderr: the caller recomputes."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        _discard(path, f"unreadable ({err.strerror or err})")
        return None
    head = len(MAGIC) + DIGEST_BYTES
    if not blob.startswith(MAGIC) or len(blob) < head:
        _discard(path, "not a dgbench file of this version")
        return None
    payload = blob[head:]
    if hashlib.sha256(payload).digest() != blob[len(MAGIC):head]:
        _discard(path, "checksum mismatch: the file is damaged")
        return None
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:
        _discard(path, f"cannot be loaded ({type(err).__name__})")
        return None
    if not isinstance(state, dict) or state.get("format") != fmt:
        _discard(path, "another format")
        return None
    return state


def _discard(path: Path, why: str) -> None:
    print(f"dgbench: note: discarded {path} ({why}); it is recomputed", file=sys.stderr, flush=True)
    path.unlink(missing_ok=True)


def remove_stale_files(out: Path, keep: set[str] | None = None) -> int:
    """Remove what a results directory no longer needs; the number of files removed.

    Always: the ``.partial`` files of checkpoints and references whose writer (the PID in
    the name) is no longer alive. With ``keep`` (at the end of a run that finished): every
    checkpoint whose key is not in ``keep`` (the failed cells and groups, whose retry
    continues from it), and empty folders."""
    removed = 0
    for folder in (Path(out) / DIRECTORY, Path(out) / "references"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.endswith(".partial"):
                pid = path.name.rsplit(".", 2)[-2]
                if not (pid.isdigit() and _alive(int(pid))):
                    path.unlink(missing_ok=True)
                    removed += 1
            elif keep is not None and folder.name == DIRECTORY and path.suffix == ".pt" and path.stem not in keep:
                path.unlink(missing_ok=True)
                removed += 1
        if keep is not None and folder.name == DIRECTORY and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
