"""Gradient statistics at fixed parameters: R independent estimates, vectorised.

The R replicas are a leading batch dimension of the logits: the estimator is called once
on logits of shape ``(R, *logits.shape)``, one backward pass gives every replica's
gradient with respect to its own copy of the logits, and one batched vector-Jacobian
product (``is_grads_batched=True``) maps those to the parameters that produce the logits.
There is no Python loop over replicas (only over memory-bounded chunks of them).

The gradient measured is the estimator's gradient through the first node's logits with
respect to ``problem.logit_parameters()``, including the exact gradient of the problem's
analytic part and any pathwise dependence of its objective on those logits. On problems
with several stochastic layers the deeper layers' estimators act inside the first
node's objective (their values, hence their bias and noise, are part of the estimate);
their own parameters' gradients are exercised by training cells, not measured here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from dgbench.harness.devices import Stopwatch
from dgbench.problems.base import Estimators, Problem
from dgbench.sequences import is_sequence

# Elements of replicated logits times f-evaluations processed at once; bounds memory.
CHUNK_ELEMENTS = 2**21
ROUNDOFF_ULPS = 1024


def flatten(grads: dict[str, Tensor] | list[Tensor], batched: bool = False) -> Tensor:
    """Concatenate gradients into one vector (or ``(R, P)`` matrix when ``batched``)."""
    tensors = list(grads.values()) if isinstance(grads, dict) else list(grads)
    if batched:
        return torch.cat([g.reshape(g.shape[0], -1) for g in tensors], dim=1)
    return torch.cat([g.reshape(-1) for g in tensors])


def replicated_gradients(
    problem: Problem,
    estimators: Estimators,
    replicas: int,
    generator: torch.Generator,
    chunk: int | None = None,
) -> Tensor:
    """``(replicas, P)`` independent gradient estimates w.r.t. ``problem.logit_parameters()``."""
    return torch.cat(list(gradient_chunks(problem, estimators, replicas, generator, chunk)))


def gradient_chunks(
    problem: Problem,
    estimators: Estimators,
    replicas: int,
    generator: torch.Generator,
    chunk: int | None = None,
) -> Iterator[Tensor]:
    """The estimates of :func:`replicated_gradients` as ``(n, P)`` chunks, drawn one at a
    time (the same numbers in the same order), so that a consumer keeps O(P) memory."""
    if replicas < 2:
        raise ValueError(f"replicas must be >= 2 to estimate a variance, got {replicas}")
    estimators = problem.node_estimators(estimators)
    params = list(problem.logit_parameters().values())
    modes = {name: est.training for name, est in estimators.items() if isinstance(est, torch.nn.Module)}
    for name in modes:
        estimators[name].train(False)
    try:
        with torch.enable_grad():
            logits = problem.logits()
            if is_sequence(logits):
                yield from _replicated_sequence_gradients(problem, estimators, params, logits, replicas, generator,
                                                          chunk)
                return
            if chunk is None:
                per_replica = logits.numel() * max(1, problem.evals_per_estimate(estimators))
                chunk = max(1, min(replicas, CHUNK_ELEMENTS // per_replica))
            for start in range(0, replicas, chunk):
                n = min(chunk, replicas - start)
                leaf = logits.detach().unsqueeze(0).expand(n, *logits.shape).clone().requires_grad_(True)
                out = problem.objective(estimators, leaf, generator)
                (per_replica,) = torch.autograd.grad(out.sum(), leaf)
                grads = torch.autograd.grad(
                    logits, params, grad_outputs=per_replica, is_grads_batched=True,
                    retain_graph=True, allow_unused=True,
                )
                grads = [torch.zeros((n, *p.shape), dtype=p.dtype, device=p.device) if g is None else g
                         for g, p in zip(grads, params)]
                yield flatten(grads, batched=True)
    finally:
        for name, mode in modes.items():
            estimators[name].train(mode)


# Replicas per chunk on an autoregressive node: the batched backward costs chunk^2.
SEQUENCE_CHUNK = 32


def _replicated_sequence_gradients(problem, estimators, params, logits, replicas, generator, chunk) -> Iterator[Tensor]:
    """Replicated gradients on an autoregressive node: there is no logits tensor to branch
    the replicas from, so each chunk draws ``n`` replicas through :meth:`replicate` and takes
    the ``n`` per-replica gradients w.r.t. the parameters in one batched backward pass
    (one-hot output gradients)."""
    chunk = chunk or SEQUENCE_CHUNK
    for start in range(0, replicas, chunk):
        n = min(chunk, replicas - start)
        out = problem.objective(estimators, logits.replicate(n), generator)
        eye = torch.eye(n, dtype=out.dtype, device=out.device)
        grads = torch.autograd.grad(out, params, grad_outputs=eye, is_grads_batched=True,
                                    retain_graph=True, allow_unused=True)
        grads = [torch.zeros((n, *p.shape), dtype=p.dtype, device=p.device) if g is None else g
                 for g, p in zip(grads, params)]
        yield flatten(grads, batched=True)


@dataclass
class GradientStatistics:
    """Summary of R gradient estimates against a reference gradient (per coordinate lists)."""

    replicas: int
    exact_gradient: list[float]
    mean_gradient: list[float]
    standard_error: list[float]
    bias: list[float]
    bias_norm: float
    bias_z_max: float
    variance_mean: float
    variance_total: float
    mse: float
    cosine: float
    cosine_single_mean: float
    snr_mean: float
    # Along the exact gradient's direction u = g / |g|: the bias of the projections
    # s_r = estimate_r . u (mean s - |g|), its standard error (the reference's along u
    # combined in quadrature when it is sampled) and their ratio; NaN where g = 0.
    gradient_norm: float = math.nan
    bias_along: float = math.nan
    se_along: float = math.nan
    z_along: float = math.nan

    def as_dict(self) -> dict:
        return asdict(self)


def _cosine(a: Tensor, b: Tensor) -> float:
    denominator = float(a.norm() * b.norm())
    return float(a @ b) / denominator if denominator > 0 else math.nan


class RunningStatistics:
    """Per-coordinate mean and sum of squared deviations of gradient estimates, and the
    per-estimate quantities the summary averages (squared error, cosine to the exact
    gradient), merged chunk by chunk (Chan, Golub & LeVeque, 1979), so that R estimates
    need O(P) memory, not O(R P)."""

    def __init__(self, exact: Tensor) -> None:
        self.exact = exact.detach().to(torch.float64).reshape(-1)
        self.count = 0
        self.mean = torch.zeros_like(self.exact)
        self.m2 = torch.zeros_like(self.exact)
        self.squared_error = 0.0
        self.cosine_sum = 0.0
        self.cosine_count = 0
        self.eps = 0.0
        norm = self.exact.norm()
        self.direction = self.exact / norm if norm > 0 else None
        self.along_mean = 0.0
        self.along_m2 = 0.0

    def add(self, estimates: Tensor) -> None:
        if estimates.dtype.is_floating_point:
            self.eps = max(self.eps, torch.finfo(estimates.dtype).eps)
        x = estimates.detach().to(torch.float64)
        n = x.shape[0]
        if n == 0:
            return
        mean = x.mean(0)
        m2 = ((x - mean) ** 2).sum(0)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        if self.direction is not None:
            along = x @ self.direction
            along_mean = float(along.mean())
            along_delta = along_mean - self.along_mean
            self.along_mean += along_delta * (n / total)
            self.along_m2 += float(((along - along_mean) ** 2).sum()) + along_delta**2 * (self.count * n / total)
        self.count = total
        self.squared_error += float(((x - self.exact) ** 2).sum())
        norms = x.norm(dim=1) * self.exact.norm()
        single = (x @ self.exact)[norms > 0] / norms[norms > 0]
        self.cosine_sum += float(single.sum())
        self.cosine_count += int(single.numel())


def summarise(estimates: Tensor, exact: Tensor, reference_se: Tensor | None = None) -> GradientStatistics:
    """Bias, variance, MSE, cosine and SNR of ``estimates`` ``(R, P)`` against ``exact`` ``(P,)``
    (:func:`summarise_running` of one chunk)."""
    running = RunningStatistics(exact)
    running.add(estimates)
    return summarise_running(running, exact, reference_se)


def summarise_running(running: RunningStatistics, exact: Tensor,
                      reference_se: Tensor | None = None) -> GradientStatistics:
    """Bias, variance, MSE, cosine and SNR of the estimates ``running`` has seen.

    ``reference_se`` (per coordinate) is the standard error of a sampled reference; the
    bias z-scores then use ``sqrt(se^2 + reference_se^2)``, the standard error of the
    difference of two independent means.
    """
    # Round-off follows the precision the gradients were computed in (float32 problems too).
    eps = max(running.eps, torch.finfo(exact.dtype).eps if exact.dtype.is_floating_point else 0.0)
    exact = running.exact
    r = running.count
    mean = running.mean
    variance = running.m2 / (r - 1)
    se = (variance / r).sqrt()
    bias = mean - exact
    combined = se if reference_se is None else (se**2 + reference_se.detach().to(torch.float64).reshape(-1) ** 2).sqrt()
    # Float round-off alone makes |bias| ~ eps * max|g|; an estimator with (near) zero
    # variance would otherwise get an enormous z-score for a bias of 1e-17.
    scale = torch.maximum(exact.abs().max(), mean.abs().max())  # round-off follows the largest terms
    roundoff = ROUNDOFF_ULPS * eps * scale
    z = bias.abs() / torch.maximum(combined, roundoff).clamp_min(torch.finfo(torch.float64).tiny)
    std = variance.sqrt()
    snr = torch.where(std > 0, mean.abs() / std, torch.full_like(std, math.inf))
    along = {}
    if running.direction is not None:
        u = running.direction
        se_along = math.sqrt(running.along_m2 / (r - 1) / r)
        if reference_se is not None:  # the reference's error along u, its coordinates independent
            ref = reference_se.detach().to(torch.float64).reshape(-1)
            se_along = math.sqrt(se_along**2 + float((ref**2 * u**2).sum()))
        norm = float(exact.norm())
        bias_along = running.along_mean - norm
        floor = ROUNDOFF_ULPS * eps * norm  # round-off, as for the coordinates
        along = {"gradient_norm": norm, "bias_along": bias_along, "se_along": se_along,
                 "z_along": bias_along / max(se_along, floor, torch.finfo(torch.float64).tiny)}
    return GradientStatistics(
        replicas=r,
        exact_gradient=exact.tolist(),
        mean_gradient=mean.tolist(),
        standard_error=se.tolist(),
        bias=bias.tolist(),
        bias_norm=float(bias.norm()),
        bias_z_max=float(z.max()),
        variance_mean=float(variance.mean()),
        variance_total=float(variance.sum()),
        mse=running.squared_error / r,
        cosine=_cosine(mean, exact),
        cosine_single_mean=running.cosine_sum / running.cosine_count if running.cosine_count else math.nan,
        snr_mean=float(snr.mean()),
        **along,
    )


def gradient_statistics(
    problem: Problem,
    estimators: Estimators,
    exact: Tensor,
    replicas: int,
    generator: torch.Generator,
    device: torch.device,
    reference_se: Tensor | None = None,
) -> tuple[GradientStatistics, float]:
    """Statistics of ``replicas`` estimates and the wall-clock seconds per estimate."""
    watch = Stopwatch(device)
    running = RunningStatistics(exact)
    with watch.time():
        for chunk in gradient_chunks(problem, estimators, replicas, generator):
            running.add(chunk)
    return summarise_running(running, exact, reference_se), watch.seconds / replicas
