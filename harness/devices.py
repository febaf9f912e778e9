"""Device selection and synchronised wall-clock timing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


class DeviceUnavailable(RuntimeError):
    """The requested device does not exist on this machine."""


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"``/``"cuda:N"`` or ``"auto"`` (CUDA when available) as a device.

    Asking for CUDA where there is none raises :class:`DeviceUnavailable`; dgbench never
    silently falls back to the CPU.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise DeviceUnavailable(f"unknown device {name!r}: {err}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"device {name!r} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type != "cpu":
        raise DeviceUnavailable(f"device type {device.type!r} is not supported (use cpu or cuda)")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Elapsed wall-clock seconds of the timed blocks, synchronising the device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = 0.0

    @contextmanager
    def time(self) -> Iterator[None]:
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds += time.perf_counter() - start


class EventStopwatch:
    """Elapsed seconds of the timed blocks from CUDA events: no host sync per block; the
    events are read (one sync) when :attr:`seconds` is asked for, at logging strides."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._settled = 0.0
        self._pending: list[tuple[Any, Any]] = []

    @contextmanager
    def time(self) -> Iterator[None]:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        try:
            yield
        finally:
            end.record()
            self._pending.append((start, end))

    @property
    def seconds(self) -> float:
        if self._pending:
            self._pending[-1][1].synchronize()
            self._settled += sum(start.elapsed_time(end) for start, end in self._pending) / 1000.0
            self._pending = []
        return self._settled

    @seconds.setter
    def seconds(self, value: float) -> None:
        self._pending, self._settled = [], value


def stopwatch(device: torch.device) -> Stopwatch | EventStopwatch:
    """CUDA events on a GPU (no sync per step), synchronised wall-clock time elsewhere."""
    return EventStopwatch(device) if device.type == "cuda" else Stopwatch(device)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory measurement on ``device`` (CUDA only; a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak memory allocated by tensors on ``device`` since the last reset, in MiB
    (``torch.cuda.max_memory_allocated``); None on the CPU, where no per-cell figure exists."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20
