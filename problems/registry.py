"""The registry of built-in problems: one line per problem, id -> class."""

from __future__ import annotations

from problems.base import Problem
from problems.bernoulli_toy import BernoulliToy
from problems.categorical_toy import CategoricalToy
from problems.hard_attention import HardAttention, HardAttentionCategorical
from problems.sbn import SBNTwoLayer
from problems.vae import (
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
