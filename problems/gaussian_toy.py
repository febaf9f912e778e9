"""The Gaussian counterpart of the Bernoulli toy: a quadratic objective of Gaussian units.

    f(z) = sum_i (z_i - t)^2,   z_i ~ N(mu_i, sigma_i^2),   minimised.

Closed forms, with the node's parameters ``[mu, log sigma]``:

    E f = sum_i (mu_i - t)^2 + sigma_i^2
    d E f / d mu_i = 2 (mu_i - t),   d E f / d log sigma_i = 2 sigma_i^2

A check of the Gaussian node and of the estimators that run on it (the pathwise gradient
and the score-function family) against an exact gradient.

Options: ``dim`` (D), ``target`` (t), ``init_mean``, ``init_log_scale``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench.domains import Integer, Real
from dgbench.problems.base import Problem, Score, builtin


@builtin
class GaussianToy(Problem):
    id = "gaussian-toy"
    unbiasedness_gate = {"dim": 2}
    option_domains = {"dim": Integer(1), "target": Real(), "init_mean": Real(), "init_log_scale": Real()}
    family = "gaussian"
    minimize = True
    seed_batching = True
    stacks_on_cpu = True
    description = "f(z) = sum_i (z_i - t)^2, z ~ N(mu, sigma^2); exact gradient in closed form"
    test_options = {"dim": 2}
    scores = (Score("exact_objective", "exact objective E_q[f]", higher_is_better=False),)

    def __init__(
        self,
        *,
        dim: int = 3,
        target: float = 0.5,
        init_mean: float = 0.0,
        init_log_scale: float = 0.0,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,  # deterministic initialisation: unused
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim, self.target, self.init_mean, self.init_log_scale = dim, target, init_mean, init_log_scale
        init = torch.cat([torch.full((dim,), float(init_mean)), torch.full((dim,), float(init_log_scale))])
        self.theta = torch.nn.Parameter(init.to(dtype=dtype, device=device))

    def logits(self) -> Tensor:
        return self.theta

    def f(self, z: Tensor) -> Tensor:
        return ((z - self.target) ** 2).sum(-1)

    def exact_objective(self) -> Tensor:
        mu, log_sigma = self.theta.chunk(2)
        return ((mu - self.target) ** 2 + torch.exp(2 * log_sigma)).sum()

    def exact_gradient(self) -> dict[str, Tensor]:
        mu, log_sigma = self.theta.detach().chunk(2)
        return {"theta": torch.cat([2 * (mu - self.target), 2 * torch.exp(2 * log_sigma)])}
