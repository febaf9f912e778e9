"""asv benchmarks (run from the repository root; see README, "Speed benchmarks").

``DGBENCH_ASV_SMOKE=1`` keeps a representative subset of estimators in every parameter
grid (CI's smoke run: each benchmark still runs, on fewer estimators).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

# Score function, antithetic pair, relaxation, learned control variate.
SMOKE_ESTIMATORS = ("reinforce", "disarm", "gumbel-softmax", "relax")


def grid(ids: Iterable[str]) -> list[str]:
    """``ids``, or only the smoke subset of them when ``DGBENCH_ASV_SMOKE=1``."""
    ids = list(ids)
    if os.environ.get("DGBENCH_ASV_SMOKE") == "1":
        return [e for e in ids if e in SMOKE_ESTIMATORS]
    return ids
