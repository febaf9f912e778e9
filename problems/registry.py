"""The registry of built-in problems: one line per problem, id -> class."""

from __future__ import annotations

from problems.base import Problem
from problems.bernoulli_toy import BernoulliToy
from problems.categorical_toy import CategoricalToy

PROBLEMS: dict[str, type[Problem]] = {cls.id: cls for cls in (BernoulliToy, CategoricalToy)}


def get(problem_id: str) -> type[Problem]:
    """The problem class registered as ``problem_id``."""
    try:
        return PROBLEMS[problem_id]
    except KeyError:
        raise KeyError(f"unknown problem {problem_id!r}; known: {', '.join(PROBLEMS)}") from None
