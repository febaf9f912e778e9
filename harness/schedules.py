"""Training-protocol schedules: learning-rate decay and temperature annealing.

Both are functions of the step alone (steps count from 1), so a resumed run follows the
same schedule as an uninterrupted one.

Learning rate, step decay (``lr_decay_every = 1`` makes it exponential per step)::

    lr(t) = lr * lr_decay ** floor((t - 1) / lr_decay_every)

Temperature of the relaxed estimators (Jang, Gu & Poole, 2017, Sec. 4.3: "tau =
max(0.5, exp(-r t)) of the global training step t, updated every N steps")::

    tau(t) = max(temperature_min, anneal_start * exp(-anneal_rate * N * floor((t - 1) / N))),  N = anneal_every

applied through :meth:`dgbench.estimators.base.Estimator.set_temperature` to every
estimator with a fixed temperature; an estimator without one is trained unchanged.
"""

from __future__ import annotations

import math
from typing import Any

# Optional [training] keys of a suite (absent: the protocol feature is off). They are not
# defaults of every cell, so suites that do not use them keep their cells' identities.
PROTOCOL_DEFAULTS: dict[str, Any] = {
    "momentum": 0.0,          # SGD momentum (optimizer = "sgd")
    "lr_decay": 1.0,          # factor applied every lr_decay_every steps
    "lr_decay_every": 1,
    "anneal_rate": 0.0,       # r; 0: the temperature is not annealed
    "anneal_every": 1,        # N
    "anneal_start": 1.0,      # the temperature before the first update
    "temperature_min": 0.0,
    "batch_loss": "mean",     # or "sum": differentiate the minibatch's summed loss (plain SGD's scale)
    "compile": False,         # or true, or "auto": the estimate as one compiled graph (harness/compiled.py)
}


def protocol(settings: dict[str, Any]) -> dict[str, Any]:
    """The protocol keys of a cell's settings, with their defaults filled in."""
    return {k: settings.get(k, v) for k, v in PROTOCOL_DEFAULTS.items()}


def learning_rate(settings: dict[str, Any], step: int) -> float:
    p = protocol(settings)
    return settings["lr"] * p["lr_decay"] ** ((step - 1) // p["lr_decay_every"])


def temperature(settings: dict[str, Any], step: int) -> float | None:
    """The annealed temperature at ``step``, or None when the protocol anneals nothing."""
    p = protocol(settings)
    if p["anneal_rate"] <= 0:
        return None
    every = p["anneal_every"]
    return max(p["temperature_min"], p["anneal_start"] * math.exp(-p["anneal_rate"] * every * ((step - 1) // every)))


def check(table: dict[str, Any], where: str) -> list[str]:
    """Errors in the protocol keys of a [training] table (empty: valid)."""
    errors = []

    def number(key: str) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            errors.append(f"{where}.{key} must be a finite number, got {value!r}")
            return None
        return float(value)

    momentum = number("momentum")
    if momentum is not None and not 0 <= momentum < 1:
        errors.append(f"{where}.momentum must be in [0, 1), got {momentum}")
    if momentum and table.get("optimizer") != "sgd":
        errors.append(f"{where}.momentum needs optimizer = \"sgd\", got {table.get('optimizer')!r}")
    decay = number("lr_decay")
    if decay is not None and not 0 < decay <= 1:
        errors.append(f"{where}.lr_decay must be in (0, 1], got {decay}")
    for key in ("lr_decay_every", "anneal_every"):
        value = table.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            errors.append(f"{where}.{key} must be an integer >= 1, got {value!r}")
    for key in ("anneal_rate", "temperature_min"):
        value = number(key)
        if value is not None and value < 0:
            errors.append(f"{where}.{key} must be >= 0, got {value}")
    if table.get("batch_loss", "mean") not in ("mean", "sum"):
        errors.append(f"{where}.batch_loss must be \"mean\" or \"sum\", got {table['batch_loss']!r}")
    if not (isinstance(table.get("compile", False), bool) or table["compile"] == "auto"):
        errors.append(f"{where}.compile must be true, false or \"auto\", got {table['compile']!r}")
    start = number("anneal_start")
    if start is not None and start <= 0:
        errors.append(f"{where}.anneal_start must be > 0, got {start}")
    return errors
