"""Small networks for learned control variates, sized by the node on their first call.

An estimator learns the node's event size only when it first sees logits, so the first
layer is lazy. Its initialisation draws from its own seeded generator, never the global
RNG (estimators take noise only from the generator they are given); the output layer
starts at zero, so a learned baseline or control variate starts as "none".
"""

from __future__ import annotations

import math

import torch

DTYPE = torch.float64


class SeededLazyLinear(torch.nn.LazyLinear):
    """``LazyLinear`` whose weights are drawn U(-1/sqrt(fan_in), 1/sqrt(fan_in)) from ``seed``."""

    def __init__(self, out_features: int, seed: int = 0, zero: bool = False) -> None:
        super().__init__(out_features, dtype=DTYPE)
        self.seed, self.zero = seed, zero

    def reset_parameters(self) -> None:
        if self.has_uninitialized_params() or self.in_features == 0:
            return
        with torch.no_grad():
            if self.zero:
                self.weight.zero_()
                self.bias.zero_()
                return
            bound = 1.0 / math.sqrt(self.in_features)
            generator = torch.Generator().manual_seed(self.seed)
            for p in (self.weight, self.bias):
                p.copy_((torch.rand(p.shape, generator=generator, dtype=DTYPE) * 2 - 1) * bound)


ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}


def control_network(hidden: int, activation: str = "tanh") -> torch.nn.Module:
    """``R^n -> R``: one hidden layer of ``hidden`` units (0: linear), ``tanh`` or ``relu``;
    output starts at zero."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if hidden == 0:
        return SeededLazyLinear(1, zero=True)
    out = torch.nn.Linear(hidden, 1, dtype=DTYPE)
    torch.nn.init.zeros_(out.weight)
    torch.nn.init.zeros_(out.bias)
    return torch.nn.Sequential(SeededLazyLinear(hidden), ACTIVATIONS[activation](), out)
