"""The registry of estimators: id -> class.

Built-in estimators register themselves with the :func:`dgbench.estimators.base.builtin`
decorator, one line in their own file; this module imports every module of the package
(a module that fails to import fails here, loudly) and collects them, ordered by group
and id. Plugins join at run time through :func:`register`.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from dgbench.estimators.base import GROUPS, Estimator, builtins

# Modules that define no estimator and import this one.
_NOT_ESTIMATORS = {"registry", "plugin"}

for _module in pkgutil.iter_modules([str(Path(__file__).parent)]):
    if _module.name not in _NOT_ESTIMATORS:
        importlib.import_module(f"{__package__}.{_module.name}")

ESTIMATORS: dict[str, type[Estimator]] = {
    cls.id: cls for cls in sorted(builtins().values(), key=lambda c: (GROUPS.index(c.group), c.id))
}

BUILTIN = frozenset(ESTIMATORS)


def register(cls: type[Estimator]) -> None:
    """Add a validated plugin class under its id (``dgbench compare``); built-in ids are refused."""
    if cls.id in BUILTIN and ESTIMATORS[cls.id] is not cls:
        raise ValueError(f"estimator id {cls.id!r} is taken by a built-in estimator; give the plugin another id")
    ESTIMATORS[cls.id] = cls


def get(estimator_id: str) -> type[Estimator]:
    """The estimator class registered as ``estimator_id``."""
    try:
        return ESTIMATORS[estimator_id]
    except KeyError:
        raise KeyError(f"unknown estimator {estimator_id!r}; known: {', '.join(ESTIMATORS)}") from None
