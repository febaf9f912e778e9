"""Shared test utilities: objectives with known derivatives, replicated gradients, z-tests."""

from __future__ import annotations

import functools
import os
import tempfile

import torch
from scipy.stats import norm
from torch import Tensor

from dgbench.estimators.base import Estimator
from dgbench.estimators.exact import Exact

DTYPE = torch.float64
SHAPES = {"bernoulli": (3,), "categorical": (2, 3)}
# Distinct, non-zero logits so that every coordinate has a non-trivial gradient.
LOGITS = {
    "bernoulli": torch.tensor([-1.2, 0.3, 1.7], dtype=DTYPE),
    "categorical": torch.tensor([[0.5, -0.4, 0.1], [-1.0, 0.8, 0.3]], dtype=DTYPE),
}


def z_critical(alpha: float, comparisons: int) -> float:
    """Two-sided critical value at family-wise false-alarm rate ``alpha`` (Bonferroni)."""
    return float(norm.ppf(1.0 - alpha / (2.0 * comparisons)))


class CoupledQuadratic:
    """f(z) = (w . vec(z) - c)^2 + a . vec(z): non-linear and non-separable across units.

    ``grad(z)`` is its derivative with respect to z, for hand-written formulas.
    """

    def __init__(self, node: str) -> None:
        n = 1
        for s in SHAPES[node]:
            n *= s
        self.shape = SHAPES[node]
        self.event_dims = len(self.shape)
        self.w = torch.linspace(-1.0, 1.5, n, dtype=DTYPE).reshape(self.shape)
        self.a = torch.linspace(0.5, -0.7, n, dtype=DTYPE).reshape(self.shape)
        self.c = 0.3

    def _sum(self, x: Tensor) -> Tensor:
        return x.sum(tuple(range(-self.event_dims, 0)))

    def __call__(self, z: Tensor) -> Tensor:
        return (self._sum(self.w * z) - self.c) ** 2 + self._sum(self.a * z)

    def grad(self, z: Tensor) -> Tensor:
        inner = self._sum(self.w * z) - self.c
        return 2 * inner.reshape(inner.shape + (1,) * self.event_dims) * self.w + self.a


class CoupledSine:
    """f(z) = 2 sin(w . vec(z)) + a . vec(z): non-polynomial and non-separable.

    DARN is unbiased for objectives of degree <= 2 per unit, so its bias needs this one.
    """

    def __init__(self, node: str) -> None:
        base = CoupledQuadratic(node)
        self.w, self.a, self._sum = 2 * base.w, base.a, base._sum
        self.event_dims = base.event_dims

    def __call__(self, z: Tensor) -> Tensor:
        return 2 * torch.sin(self._sum(self.w * z)) + self._sum(self.a * z)

    def grad(self, z: Tensor) -> Tensor:
        inner = torch.cos(self._sum(self.w * z))
        return 2 * inner.reshape(inner.shape + (1,) * self.event_dims) * self.w + self.a


class Linear:
    """f(z) = w . vec(z) + 0.25."""

    def __init__(self, node: str) -> None:
        self.shape = SHAPES[node]
        self.event_dims = len(self.shape)
        n = 1
        for s in self.shape:
            n *= s
        self.w = torch.linspace(-0.8, 1.3, n, dtype=DTYPE).reshape(self.shape)

    def __call__(self, z: Tensor) -> Tensor:
        return (self.w * z).sum(tuple(range(-self.event_dims, 0))) + 0.25


def exact_logit_gradient(node: str, logits: Tensor, f) -> Tensor:
    """d E_q[f] / d logits by enumeration."""
    leaf = logits.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(Exact(node)(leaf, f).sum(), leaf)
    return grad


def replicated_logit_gradients(estimator: Estimator, logits: Tensor, f, replicas: int, seed: int) -> Tensor:
    """``(replicas, *logits.shape)`` independent estimates, vectorised over a batch dim."""
    leaf = logits.detach().unsqueeze(0).expand(replicas, *logits.shape).clone().requires_grad_(True)
    out = estimator(leaf, f, generator=torch.Generator().manual_seed(seed))
    (grad,) = torch.autograd.grad(out.sum(), leaf)
    return grad


def z_scores(estimates: Tensor, exact: Tensor) -> Tensor:
    """|mean - exact| / standard error, per coordinate."""
    mean = estimates.mean(0)
    se = estimates.std(0) / estimates.shape[0] ** 0.5
    return (mean - exact).abs() / se


# Small, fast options for every registered problem (float64 where the problem allows).
# A meta-test requires an entry for each registered problem, so a new problem joins the
# generic contract tests by adding one line here.
def _small_options() -> dict[str, dict]:
    from dgbench.problems import PROBLEMS

    return {pid: dict(cls.test_options) for pid, cls in PROBLEMS.items()}


SMALL_OPTIONS = _small_options()  # each problem's declared test_options
REQUIRE_DATA = "DGBENCH_REQUIRE_DATA"  # set by .ci/run: a data test that cannot find its data fails


@functools.cache
def mnist_available() -> bool:
    """Whether binarized MNIST is in the data directory (never downloads)."""
    from dgbench.problems.data import DataUnavailable, load_binarized_mnist

    try:
        load_binarized_mnist(download=False)
    except DataUnavailable:
        return False
    return True


def skip_without_mnist(detail: str = "") -> None:
    """Skip (with the reason) when binarized MNIST is absent; fail instead under
    ``DGBENCH_REQUIRE_DATA=1`` (CI), so that CI never passes by skipping what it must run."""
    import pytest

    if mnist_available():
        return
    message = "binarized MNIST unavailable (set DGBENCH_DATA_DIR=../shared/data)" + (f": {detail}" if detail else "")
    if os.environ.get(REQUIRE_DATA):
        pytest.fail(f"{message}; {REQUIRE_DATA} is set")
    pytest.skip(message)


def _needs_mnist(pid: str) -> bool:
    """Whether ``pid`` with its small options needs MNIST: its data preparation fails in an
    empty data directory with no download (derived from the registry, not a list)."""
    from dgbench.problems import PROBLEMS
    from dgbench.problems.data import DataUnavailable

    saved = {k: os.environ.get(k) for k in ("DGBENCH_DATA_DIR", "DGBENCH_MNIST_URL")}
    with tempfile.TemporaryDirectory() as empty:
        os.environ["DGBENCH_DATA_DIR"] = empty
        os.environ["DGBENCH_MNIST_URL"] = "http://127.0.0.1:9/"  # refused at once: nothing is fetched
        try:
            PROBLEMS[pid].prepare_data(SMALL_OPTIONS[pid])
        except DataUnavailable:
            return True
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return False


def _mnist_problems() -> frozenset[str]:
    from dgbench.problems import PROBLEMS

    return frozenset(pid for pid in PROBLEMS if _needs_mnist(pid))


MNIST_PROBLEMS = _mnist_problems()


def small_problem(pid: str, dtype: torch.dtype = DTYPE, seed: int = 0, **overrides):
    """``pid`` with its small options, in ``dtype``; skips when binarized MNIST is unavailable."""

    from dgbench.problems import PROBLEMS
    from dgbench.problems.data import DataUnavailable

    try:
        return PROBLEMS[pid](**{**SMALL_OPTIONS[pid], **overrides}, dtype=dtype,
                             generator=torch.Generator().manual_seed(seed))
    except DataUnavailable as err:
        skip_without_mnist(str(err))
        raise
