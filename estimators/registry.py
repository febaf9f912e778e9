"""The registry of built-in estimators: one line per estimator, id -> class.

Imports are explicit so that a broken estimator fails loudly at import time.
"""

from __future__ import annotations

from dgbench.estimators.arm import ARM
from dgbench.estimators.base import Estimator
from dgbench.estimators.darn import DARN
from dgbench.estimators.disarm import DisARM
from dgbench.estimators.disarm_categorical import DisARMCategorical
from dgbench.estimators.exact import Exact
from dgbench.estimators.gumbel_rao import GumbelRao
from dgbench.estimators.gumbel_softmax import GumbelSoftmax
from dgbench.estimators.indecater import IndeCateR
from dgbench.estimators.muprop import MuProp
from dgbench.estimators.nvil import NVIL
from dgbench.estimators.rebar import REBAR
from dgbench.estimators.reinforce import Reinforce
from dgbench.estimators.reinforce_ema import ReinforceEMA
from dgbench.estimators.reinforce_optimal import ReinforceOptimal
from dgbench.estimators.reinmax import ReinMax
from dgbench.estimators.relax import RELAX
from dgbench.estimators.rloo import RLOO
from dgbench.estimators.st_gumbel_softmax import STGumbelSoftmax
from dgbench.estimators.straight_through import StraightThrough
from dgbench.estimators.vimco import VIMCO

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
