"""Return types of objectives beyond one value per sample, declared here because both
estimators and problems use them (and never import each other)."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class LogWeightWithInnerLogQ(NamedTuple):
    """What a k-sample-bound objective returns to a multi-sample-bound estimator (VIMCO)
    when deeper stochastic layers are drawn inside it (the SBN): ``log_weight``, the log
    importance weight per joint sample, and ``inner_log_q``, the summed log q of the deeper
    layers' samples, differentiable in their logits, so that the estimator's leave-one-out
    learning signals multiply their scores too. Both have shape ``(k, *batch)``."""

    log_weight: Tensor
    inner_log_q: Tensor
