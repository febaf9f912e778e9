"""Likelihood helpers of the latent-variable models. Everything that depends on the node
family (log-probabilities, KL divergences, samples) lives in :mod:`dgbench.nodes`, the one
distribution layer shared with the estimators."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def bernoulli_log_likelihood(x: Tensor, logits: Tensor) -> Tensor:
    """``log p(x)`` of binary data ``x`` under independent Bernoulli(sigmoid(logits)), summed over the last dim."""
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)


def logmeanexp(x: Tensor, dim: int) -> Tensor:
    return torch.logsumexp(x, dim) - torch.log(torch.tensor(float(x.shape[dim]), dtype=x.dtype, device=x.device))
