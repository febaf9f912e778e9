"""The registry of built-in estimators: one line per estimator, id -> class.

Imports are explicit so that a broken estimator fails loudly at import time.
"""

from __future__ import annotations

from estimators.arm import ARM
from estimators.base import Estimator
from estimators.darn import DARN
from estimators.disarm import DisARM
from estimators.disarm_categorical import DisARMCategorical
from estimators.exact import Exact
from estimators.gumbel_rao import GumbelRao
from estimators.gumbel_softmax import GumbelSoftmax
from estimators.indecater import IndeCateR
from estimators.muprop import MuProp
from estimators.nvil import NVIL
from estimators.rebar import REBAR
from estimators.reinforce import Reinforce
from estimators.reinforce_ema import ReinforceEMA
from estimators.reinforce_optimal import ReinforceOptimal
from estimators.reinmax import ReinMax
from estimators.relax import RELAX
from estimators.rloo import RLOO
from estimators.st_gumbel_softmax import STGumbelSoftmax
from estimators.straight_through import StraightThrough
from estimators.vimco import VIMCO

ESTIMATORS: dict[str, type[Estimator]] = {
    cls.id: cls
    for cls in (
        Exact,
        Reinforce,
        ReinforceEMA,
        ReinforceOptimal,
        RLOO,
        MuProp,
        DARN,
        StraightThrough,
        GumbelSoftmax,
        STGumbelSoftmax,
        ARM,
        DisARM,
        NVIL,
        REBAR,
        RELAX,
        GumbelRao,
        ReinMax,
        IndeCateR,
        VIMCO,
        DisARMCategorical,
    )
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
