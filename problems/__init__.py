"""Problems: models, data and objectives, each declaring its discrete node."""

from dgbench.problems.base import Problem
from dgbench.problems.registry import PROBLEMS, get

__all__ = ["PROBLEMS", "Problem", "get"]
