"""The Bernoulli toy objective of REBAR and RELAX.

    f(b) = sum_i (b_i - t_i)^2,   b_i ~ Bernoulli(sigmoid(theta_i)),   minimised.

Closed forms, with ``p_i = sigmoid(theta_i)``:

    E f = sum_i p_i (1 - t_i)^2 + (1 - p_i) t_i^2
    d E f / d theta_i = p_i (1 - p_i) ((1 - t_i)^2 - t_i^2) = p_i (1 - p_i) (1 - 2 t_i)

Options: ``dim`` (D, default 1), ``target`` (t for every unit, default 0.45 as in REBAR;
RELAX uses 0.499), ``init`` (initial logit of every unit, default 0).

Tucker et al. (2017), REBAR, NeurIPS; Grathwohl et al. (2018), Backpropagation
through the Void, ICLR.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench.domains import Integer, Real
from dgbench.problems.base import Problem, builtin


@builtin
class BernoulliToy(Problem):
    id = "bernoulli-toy"
    unbiasedness_gate = {"dim": 3, "target": 0.45}
    option_domains = {"dim": Integer(1), "target": Real(), "init": Real()}
    test_options = {"dim": 3}  # small enough for the generic tests
    family = "bernoulli"
    minimize = True
    seed_batching = True
    stacks_on_cpu = True
    description = "f(b) = sum_i (b_i - t)^2, b ~ Bernoulli(sigmoid(theta)); exact gradient in closed form"

    def __init__(
        self,
        *,
        dim: int = 1,
        target: float = 0.45,
        init: float = 0.0,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,  # deterministic initialisation: unused
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim, self.target, self.init = dim, target, init
        self.theta = torch.nn.Parameter(torch.full((dim,), float(init), dtype=dtype, device=device))
        self.register_buffer("t", torch.full((dim,), float(target), dtype=dtype, device=device))

    def logits(self) -> Tensor:
        return self.theta

    def f(self, z: Tensor) -> Tensor:
        return ((z - self.t) ** 2).sum(-1)

    def exact_objective(self) -> Tensor:
        p = torch.sigmoid(self.theta)
        return (p * (1 - self.t) ** 2 + (1 - p) * self.t**2).sum()

    def exact_gradient(self) -> dict[str, Tensor]:
        p = torch.sigmoid(self.theta.detach())
        return {"theta": p * (1 - p) * (1 - 2 * self.t)}
