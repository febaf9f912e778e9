"""Reference gradients computed once per problem configuration and seed, shared by every
gradient-statistics cell that measures bias against them.

The reference (closed form, enumeration, or the mean of many RLOO estimates; see
:func:`dgbench.harness.cells.reference_gradient`) depends on the problem at its initial
parameters, never on the estimator, yet each gradient-statistics cell used to compute
it anew: about 9 s of a 10 s cell on ``vae-bernoulli-linear``. Workers now keep it in
``OUT/references/KEY.pt`` (written atomically, under a file lock so that concurrent
workers compute it once), together with the state of the cell's generator after the
reference was drawn: a cell that finds the file continues from that state, so its
numbers are bit for bit those of a cell that computed the reference itself.

The key hashes the problem's id, options, seed, device and dtype, the reference's
settings and the problem's initial state (parameters, buffers and first minibatch), so
a changed model can never pick up a stale reference.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from dgbench.harness.checkpoints import load_saved, save_atomically
from dgbench.problems.base import Problem

DIRECTORY = "references"
FORMAT = 1


def reference_key(problem: Problem, identity: list, settings: dict) -> str:
    digest = hashlib.sha256(json.dumps([FORMAT, identity, settings], sort_keys=True, default=str).encode())
    for name, tensor in sorted(problem.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for name in ("x", "y"):  # the current minibatch, if any
        value = getattr(problem, name, None)
        if isinstance(value, Tensor):
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def shared_reference(directory: Path, key: str, generator: torch.Generator,
                     compute: Callable[[], tuple[Tensor, str, Tensor]], device: torch.device) -> tuple[Tensor, str, Tensor]:
    """``compute()`` once per key across processes; later callers load it and take the
    generator state it left behind."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{key}.pt"
    with open(directory / f"{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the holder exits, however it exits
        try:
            saved = load_saved(path, FORMAT)
            if saved is not None:
                generator.set_state(saved["generator_state"])
                return saved["gradient"].to(device), saved["source"], saved["standard_error"].to(device)
            gradient, source, se = compute()
            save_atomically(path, {"format": FORMAT, "gradient": gradient.cpu(), "source": source,
                                   "standard_error": se.cpu(), "generator_state": generator.get_state()})
            return gradient, source, se
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

