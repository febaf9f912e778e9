"""Gradient estimators for discrete (Bernoulli and categorical) stochastic nodes.

``Estimator`` is the contract (see :mod:`dgbench.estimators.base`); ``ESTIMATORS`` maps ids to
the built-in classes; :func:`dgbench.estimators.plugin.load_estimator` loads and validates a
user's estimator from a file or ``module:attr``.
"""

from dgbench.estimators.base import Estimator, Objective, ObjectiveShapeError, score_function
from dgbench.estimators.registry import ESTIMATORS, get
from dgbench.nodes import BERNOULLI, CATEGORICAL, Node, get_node

__all__ = [
    "BERNOULLI",
    "CATEGORICAL",
    "ESTIMATORS",
    "Estimator",
    "Node",
    "Objective",
    "ObjectiveShapeError",
    "get",
    "get_node",
    "score_function",
]
