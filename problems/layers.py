"""Layers initialised from an explicit generator, never from torch's global RNG.

:func:`linear` draws PyTorch's default ``nn.Linear`` initialisation (He-uniform with
``a = sqrt(5)`` for the weight, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for the bias) from
the generator it is given, in float32 on the CPU as ``nn.Linear`` itself does, so a
problem built with a generator seeded ``s`` has the parameters a global ``manual_seed(s)``
would have given it, without touching global state: cells can be built concurrently.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def linear(inputs: int, outputs: int, generator: torch.Generator) -> nn.Linear:
    """``nn.Linear(inputs, outputs)`` with its default initialisation drawn from ``generator``."""
    # Built without nn.Linear.__init__ (whose initialisation would draw from the global RNG)
    # and without nn.utils.skip_init (whose first call imports torch._refs: 0.4 s per process).
    layer = nn.Linear.__new__(nn.Linear)
    nn.Module.__init__(layer)
    layer.in_features, layer.out_features = inputs, outputs
    layer.weight = nn.Parameter(torch.empty(outputs, inputs))
    layer.bias = nn.Parameter(torch.empty(outputs))
    with torch.no_grad():
        # The same draws, in the same order, as nn.Linear.reset_parameters.
        gain = math.sqrt(2.0 / (1 + math.sqrt(5) ** 2))
        bound = math.sqrt(3.0) * (gain / math.sqrt(inputs)) if inputs else 0.0
        layer.weight.uniform_(-bound, bound, generator=generator)
        bias_bound = 1 / math.sqrt(inputs) if inputs else 0.0
        layer.bias.uniform_(-bias_bound, bias_bound, generator=generator)
    return layer


def default_generator(generator: torch.Generator | None) -> torch.Generator:
    """``generator``, or a fixed one (seed 0) for problems built outside the harness."""
    return generator if generator is not None else torch.Generator().manual_seed(0)
