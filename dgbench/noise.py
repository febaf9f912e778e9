"""Noise sources drawn from an explicit ``torch.Generator``.

Every sampling estimator in dgbench draws exactly one uniform tensor ``u`` per call,
through :func:`uniform`: of shape ``(S, *logits.shape)``, or ``(n, S, *logits.shape)`` for
estimators that need ``n`` independent noise sources per sample (REBAR and RELAX: the
sample's noise and the conditional noise, ``n = 2``; Gumbel-Rao: ``n = 1 + K``), with
``u[0]`` the sample's own noise. ``disarm-categorical`` draws ``(S, *batch, D, K - 1)``:
one uniform per stick-breaking decision. That convention is what
lets the harness give every estimator common random numbers, lets tests reproduce
an estimator's noise from a cloned generator, and keeps the global RNG untouched.

Seed-batched training (:mod:`dgbench.harness.seed_batching`) passes a
:class:`MemberGenerators` instead of a generator: the logits then carry a leading member
dim, and each member's slice of the noise is drawn from that member's own generator with
the shape a single-seed run draws, so every member sees its own run's noise.

Compiled training (:mod:`dgbench.harness.compiled`) passes a :class:`RecordingNoise` on
its first step, which notes the draws' shapes, and a :class:`PreDrawnNoise` afterwards,
which hands out noise drawn before the compiled graph runs, from the same generator in
the same order: the graph holds no random op, and the noise is the eager run's.
"""

from __future__ import annotations

import torch
from torch import Tensor


def uniform(shape: tuple[int, ...], generator: torch.Generator, like: Tensor) -> Tensor:
    """U(0, 1) noise with ``like``'s dtype and device, kept strictly inside (0, 1).

    The clamp keeps ``log u`` and ``log(1 - u)`` finite, so logistic and Gumbel noise
    derived from ``u`` never produce infinities.
    """
    if isinstance(generator, NoiseSource):
        return generator.uniform(shape, like)
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator, got {type(generator).__name__}; "
            "dgbench estimators never use the global RNG"
        )
    u = torch.rand(shape, generator=generator, dtype=like.dtype, device=like.device)
    eps = torch.finfo(like.dtype).eps
    return u.clamp(eps, 1.0 - eps)


def logistic(u: Tensor) -> Tensor:
    """Logistic(0, 1) noise from uniform noise: ``log u - log(1 - u)``, as one kernel
    (``torch.logit``; the relaxed estimators' step is dominated by such small ops)."""
    return torch.logit(u)


def gumbel(u: Tensor) -> Tensor:
    """Gumbel(0, 1) noise from uniform noise: ``-log(-log u)``."""
    return -torch.log(-torch.log(u))


class NoiseSource:
    """Something :func:`uniform` draws from instead of a ``torch.Generator``."""

    def uniform(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        raise NotImplementedError


class RecordingNoise(NoiseSource):
    """Draws from ``source`` (a generator or another source) and notes each draw's shape,
    dtype and device, in order (``draws``)."""

    def __init__(self, source: torch.Generator | NoiseSource) -> None:
        self.source, self.draws = source, []

    def uniform(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        self.draws.append((tuple(shape), like.dtype, like.device))
        return uniform(shape, self.source, like)


class PreDrawnNoise(NoiseSource):
    """Hands out ``tensors`` (drawn earlier by :func:`uniform`) in order, each checked
    against the shape asked for."""

    def __init__(self, tensors: list[Tensor]) -> None:
        self.tensors, self.taken = tensors, 0

    def uniform(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        if self.taken >= len(self.tensors):
            raise ValueError(f"a noise draw of shape {tuple(shape)} beyond the {len(self.tensors)} drawn in advance")
        u = self.tensors[self.taken]
        if tuple(u.shape) != tuple(shape):
            raise ValueError(f"noise drawn in advance has shape {tuple(u.shape)}; this draw asks for {tuple(shape)}")
        self.taken += 1
        return u


def predraw(draws: list[tuple[tuple[int, ...], torch.dtype, torch.device]],
            source: torch.Generator | NoiseSource) -> list[Tensor]:
    """The noise of ``draws`` (as :class:`RecordingNoise` noted them) from ``source``, in
    order: what the recorded calls of :func:`uniform` would have drawn."""
    return [uniform(shape, source, torch.empty((), dtype=dtype, device=device)) for shape, dtype, device in draws]


class MemberGenerators(NoiseSource):
    """The noise generators of the members of a seed-batched model, one per member.

    A draw of ``shape`` holds the member dim at ``axis`` (where the estimator's noise
    shape puts the logits' first dim); member m's slice is ``torch.rand`` of the shape
    without that dim from generator m: the draw of m's single-seed run.
    """

    def __init__(self, generators: list[torch.Generator], axis: int) -> None:
        self.generators, self.axis = list(generators), axis

    def uniform(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        shape = tuple(shape)
        if len(shape) <= self.axis or shape[self.axis] != len(self.generators):
            raise ValueError(f"a seed-batched noise draw of shape {shape} has no member dim of size "
                             f"{len(self.generators)} at position {self.axis}")
        single = shape[:self.axis] + shape[self.axis + 1:]
        parts = [uniform(single, g, like) for g in self.generators]
        return torch.stack(parts, self.axis)
