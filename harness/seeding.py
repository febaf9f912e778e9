"""Seeds derived by hashing, so that every estimator sees the same randomness.

A seed depends on (problem, configuration, seed index) and never on the estimator:
all estimators of one seed get the same initial parameters, data order and noise
generator seed (common random numbers), and any cell can be replayed on its own.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from a stable hash of ``parts`` (JSON-encoded, keys sorted)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big") >> 1


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(seed)
