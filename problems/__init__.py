"""Problems: models, data and objectives, each declaring its discrete node."""

from problems.base import Problem
from problems.registry import PROBLEMS, get

__all__ = ["PROBLEMS", "Problem", "get"]
