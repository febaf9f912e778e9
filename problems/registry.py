"""The registry of built-in problems: one line per problem, id -> class."""

from __future__ import annotations

from dgbench.problems.base import Problem
from dgbench.problems.bernoulli_toy import BernoulliToy
from dgbench.problems.categorical_toy import CategoricalToy
from dgbench.problems.hard_attention import HardAttention, HardAttentionCategorical
from dgbench.problems.sbn import SBNTwoLayer
from dgbench.problems.vae import (
    VAEBernoulliDigits,
    VAEBernoulliLinear,
    VAEBernoulliNonlinear,
    VAEBernoulliTiny,
    VAECategorical,
    VAECategoricalDigits,
)

PROBLEMS: dict[str, type[Problem]] = {
    cls.id: cls
    for cls in (
        BernoulliToy,
        CategoricalToy,
        VAEBernoulliLinear,
        VAEBernoulliNonlinear,
        VAECategorical,
        VAEBernoulliDigits,
        VAECategoricalDigits,
        VAEBernoulliTiny,
        SBNTwoLayer,
        HardAttention,
        HardAttentionCategorical,
    )
}


def get(problem_id: str) -> type[Problem]:
    """The problem class registered as ``problem_id``."""
    try:
        return PROBLEMS[problem_id]
    except KeyError:
        raise KeyError(f"unknown problem {problem_id!r}; known: {', '.join(PROBLEMS)}") from None
