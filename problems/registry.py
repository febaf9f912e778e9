"""The registry of built-in problems: id -> class.

Problems register themselves with the :func:`dgbench.problems.base.builtin` decorator, one
line in their own file; this module imports every module of the package (a module that
fails to import fails here, loudly) and collects them.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from dgbench.problems.base import Problem, builtins

for _module in pkgutil.iter_modules([str(Path(__file__).parent)]):
    if _module.name != "registry":
        importlib.import_module(f"{__package__}.{_module.name}")

PROBLEMS: dict[str, type[Problem]] = builtins()


def get(problem_id: str) -> type[Problem]:
    """The problem class registered as ``problem_id``."""
    try:
        return PROBLEMS[problem_id]
    except KeyError:
        raise KeyError(f"unknown problem {problem_id!r}; known: {', '.join(PROBLEMS)}") from None
