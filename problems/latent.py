"""Factorised discrete distributions as the models see them (problems do not import estimators).

Bernoulli layers have logits ``(..., D)`` and samples in {0, 1} (or relaxed values in
[0, 1]); categorical layers have logits ``(..., D, K)`` and one-hot samples (or points of
the simplex). All functions broadcast leading sample/replica dims of ``z`` against
``logits`` and reduce over the event dims.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

FAMILY_EVENT_DIMS = {"bernoulli": 1, "categorical": 2}


def event_dims(family: str) -> int:
    return FAMILY_EVENT_DIMS[family]


def log_prob(family: str, z: Tensor, logits: Tensor) -> Tensor:
    """``log q(z)`` summed over the event: ``z l - softplus(l)`` or ``<z, log softmax(l)>``.

    Also defined (and differentiable) at relaxed ``z``.
    """
    if family == "bernoulli":
        return (z * logits - F.softplus(logits)).sum(-1)
    return (z * torch.log_softmax(logits, -1)).sum((-1, -2))


def kl_divergence(family: str, logits: Tensor, prior_logits: Tensor) -> Tensor:
    """``KL(q || p)`` between factorised nodes with logits ``logits`` and ``prior_logits``."""
    if family == "bernoulli":
        q = torch.sigmoid(logits)
        log_q1, log_q0 = F.logsigmoid(logits), F.logsigmoid(-logits)
        log_p1, log_p0 = F.logsigmoid(prior_logits), F.logsigmoid(-prior_logits)
        return (q * (log_q1 - log_p1) + (1 - q) * (log_q0 - log_p0)).sum(-1)
    log_q = torch.log_softmax(logits, -1)
    log_p = torch.log_softmax(prior_logits, -1)
    return (log_q.exp() * (log_q - log_p)).sum((-1, -2))


def sample(family: str, logits: Tensor, samples: int, generator: torch.Generator | None) -> Tensor:
    """``samples`` hard draws, shape ``(samples, *logits.shape)`` (evaluation only)."""
    u = torch.rand((samples, *logits.shape), generator=generator, dtype=logits.dtype, device=logits.device)
    if family == "bernoulli":
        return (u < torch.sigmoid(logits)).to(logits.dtype)
    tiny = torch.finfo(u.dtype).tiny
    gumbel = -torch.log((-torch.log(u.clamp_min(tiny))).clamp_min(tiny))
    return F.one_hot(torch.argmax(logits + gumbel, -1), logits.shape[-1]).to(logits.dtype)


def flatten_event(family: str, z: Tensor) -> Tensor:
    """Samples as feature vectors: Bernoulli ``(..., D)`` as is, categorical ``(..., D, K) -> (..., D*K)``."""
    return z if family == "bernoulli" else z.flatten(-2)


def bernoulli_log_likelihood(x: Tensor, logits: Tensor) -> Tensor:
    """``log p(x)`` of binary data ``x`` under independent Bernoulli(sigmoid(logits)), summed over the last dim."""
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)


def logmeanexp(x: Tensor, dim: int) -> Tensor:
    return torch.logsumexp(x, dim) - torch.log(torch.tensor(float(x.shape[dim]), dtype=x.dtype, device=x.device))
