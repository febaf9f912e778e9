"""A categorical toy objective with a closed-form gradient.

    f(z) = sum_i ||z_i - t_i||^2,   z_i one-hot ~ Categorical(softmax(l_i)),   minimised,

with D variables of K categories. For one-hot z, ``||z - t||^2 = 1 - 2 t_k + ||t||^2``
where k is the chosen category, so with ``c_ik = -2 t_ik`` and ``p = softmax(l)``:

    E f = sum_i (1 + ||t_i||^2 + sum_k p_ik c_ik)
    d E f / d l_ij = p_ij (c_ij - sum_k p_ik c_ik)

f is quadratic (not linear) on the relaxed simplex, so relaxed and straight-through
estimators are biased on it.

Options: ``dim`` (D, default 1), ``categories`` (K, default 3), ``target`` (the K entries
of t_i shared by all variables, comma-separated; default t_k = 2(k+1) / (K(K+1)),
a probability vector increasing in k, i.e. 1/6, 1/3, 1/2 for K = 3), ``init``
(initial logit of category k as a comma-separated list of K values, default all 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench.domains import Integer, RealList
from dgbench.problems.base import Problem, builtin


def _vector(spec: str | None, k: int, default: list[float], name: str) -> list[float]:
    if spec is None or spec == "":
        return default
    values = [float(x) for x in str(spec).split(",")]
    if len(values) == 1:
        values = values * k
    if len(values) != k:
        raise ValueError(f"{name} needs {k} comma-separated values (one per category), got {len(values)}")
    return values


@builtin
class CategoricalToy(Problem):
    id = "categorical-toy"
    unbiasedness_gate = {"dim": 2, "categories": 3}
    option_domains = {"dim": Integer(1), "categories": Integer(2), "target": RealList(allow_none=True),
                      "init": RealList(allow_none=True)}
    test_options = {"dim": 2, "categories": 3}  # small enough for the generic tests
    family = "categorical"
    minimize = True
    seed_batching = True
    stacks_on_cpu = True
    description = "f(z) = sum_i ||z_i - t||^2 over one-hot z_i ~ Categorical(softmax(l_i)); exact gradient in closed form"

    def __init__(
        self,
        *,
        dim: int = 1,
        categories: int = 3,
        target: str | None = None,
        init: str | None = None,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,  # deterministic initialisation: unused
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if categories < 2:
            raise ValueError(f"categories must be >= 2, got {categories}")
        self.dim, self.categories, self.target, self.init = dim, categories, target, init
        k = categories
        t = _vector(target, k, [2.0 * (j + 1) / (k * (k + 1)) for j in range(k)], "target")
        l0 = _vector(init, k, [0.0] * k, "init")
        self.theta = torch.nn.Parameter(torch.tensor([l0] * dim, dtype=dtype, device=device))
        self.register_buffer("t", torch.tensor([t] * dim, dtype=dtype, device=device))

    def logits(self) -> Tensor:
        return self.theta

    def f(self, z: Tensor) -> Tensor:
        return ((z - self.t) ** 2).sum((-1, -2))

    def exact_objective(self) -> Tensor:
        p = torch.softmax(self.theta, -1)
        c = -2 * self.t
        return (1 + (self.t**2).sum(-1) + (p * c).sum(-1)).sum()

    def exact_gradient(self) -> dict[str, Tensor]:
        p = torch.softmax(self.theta.detach(), -1)
        c = -2 * self.t
        return {"theta": p * (c - (p * c).sum(-1, keepdim=True))}
