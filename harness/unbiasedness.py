"""A test of an estimator's declared unbiasedness that states what it could have detected.

**Two tests, one family-wise level.** From R independent estimates and the exact
gradient g (closed form or enumeration):

* *along g*: the projections ``s_r = estimate_r . u`` onto ``u = g / |g|`` have mean
  ``|g|`` under unbiasedness; ``z = (mean s - |g|) / se(s)`` is tested two-sided. One test
  instead of P, and the one a scaled or shrunk gradient (``c g``) cannot escape;
* *per coordinate*: the largest ``|bias_j| / se_j`` against its Bonferroni critical value
  over the P coordinates, for a bias orthogonal to g.

Each gets half of the level ``alpha`` (default 1e-3), so the pair has family-wise level
``alpha``; over several tests (problems, parameter points) ``alpha`` is split evenly
(Bonferroni).

**Minimum detectable bias.** The relative bias along g that the test detects with power
``power`` (default 0.9): ``(z_{1 - a/2} + z_power) * se(s) / |g|`` for the along-g test at
level ``a``. It is reported next to every "not refuted".

**Replicas from a pilot.** The gate draws a pilot of ``PILOT_REPLICAS`` estimates to
measure ``sd(s)`` and the seconds per estimate, then draws, independently of the pilot,
``R = ((z_{1 - a/2} + z_power) * sd(s) / (delta |g|))^2`` estimates, so that a relative
bias ``delta`` (default 10%) is detected with the stated power, within a time budget (a
smaller R where the budget cannot afford it, with the minimum detectable bias it achieved).

**Where.** :func:`gate` tests at several parameter points of every registered problem that
declares ``unbiasedness_gate`` options (small problems with an exact gradient): the
initial parameters and points perturbed by N(0, 1) noise on the logit parameters, because
an estimator can be exactly unbiased at one point and biased everywhere else
(straight-through on the quadratic toy at sigmoid(theta) = 1/2).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from scipy.stats import norm

from dgbench.estimators.base import Estimator
from dgbench.harness.cells import make_problem, node_estimators, reference_gradient
from dgbench.harness.gradstats import GradientStatistics, gradient_statistics
from dgbench.harness.seeding import derive_seed, make_generator
from dgbench.harness.suites import MAX_REPLICAS, incompatibility
from dgbench.problems.registry import PROBLEMS

ALPHA = 1e-3
POWER = 0.9
RELATIVE_BIAS = 0.10
PILOT_REPLICAS = 2000
GATE_SECONDS = 60.0
GATE_POINTS = 3


def critical_values(alpha: float, coordinates: int) -> tuple[float, float]:
    """|z| critical values of the along-g test and of the per-coordinate maximum, each at
    level ``alpha / 2`` (two-sided; the coordinates Bonferroni-corrected)."""
    return float(norm.isf(alpha / 4)), float(norm.isf(alpha / 4 / max(1, coordinates)))


def minimum_detectable_bias(se_along: float, gradient_norm: float, alpha: float = ALPHA,
                            power: float = POWER) -> float:
    """The relative bias along g (a fraction of |g|) detected with probability ``power``."""
    if not (gradient_norm > 0 and math.isfinite(se_along)):
        return math.inf
    return (critical_values(alpha, 1)[0] + float(norm.ppf(power))) * se_along / gradient_norm


def replicas_for(sd_along: float, gradient_norm: float, alpha: float = ALPHA, power: float = POWER,
                 relative_bias: float = RELATIVE_BIAS) -> int:
    """Estimates needed so that :func:`minimum_detectable_bias` is ``relative_bias``."""
    if not gradient_norm > 0:
        return MAX_REPLICAS
    needed = ((critical_values(alpha, 1)[0] + float(norm.ppf(power))) * sd_along / (relative_bias * gradient_norm))
    return int(min(MAX_REPLICAS, max(2, math.ceil(needed**2))))


@dataclass
class Verdict:
    """The outcome of the two tests on one set of estimates."""

    verdict: str  # "refuted", "not refuted", "bias detected", "bias not detected", "no power"
    refuted: bool  # the data refute the estimator's declared claim
    z_along: float
    z_max: float
    critical_along: float
    critical_max: float
    minimum_detectable_bias: float  # a fraction of |g|, along g
    relative_bias_along: float  # (mean s - |g|) / |g|
    alpha: float
    power: float

    def text(self) -> str:
        mdb = (f"{100 * self.minimum_detectable_bias:.3g}% of |g|" if math.isfinite(self.minimum_detectable_bias)
               else "none (the exact gradient is zero here)")
        return (f"{self.verdict}: along g z = {self.z_along:+.3g} (|z| critical {self.critical_along:.3g}), "
                f"max coordinate |z| = {self.z_max:.3g} (critical {self.critical_max:.3g}), family-wise level "
                f"{self.alpha:g}; minimum detectable bias {mdb} (power {self.power:.0%})")


def verdict_of(stats: GradientStatistics, declared_unbiased: bool, alpha: float = ALPHA,
               power: float = POWER) -> Verdict:
    """Test ``stats`` (from :func:`gradient_statistics`) at family-wise level ``alpha``."""
    critical_along, critical_max = critical_values(alpha, len(stats.exact_gradient))
    z_along = stats.z_along
    detected = (math.isfinite(z_along) and abs(z_along) > critical_along) or stats.bias_z_max > critical_max
    mdb = minimum_detectable_bias(stats.se_along, stats.gradient_norm, alpha, power)
    relative = stats.bias_along / stats.gradient_norm if stats.gradient_norm > 0 else math.nan
    if declared_unbiased:
        verdict = "refuted" if detected else ("not refuted" if math.isfinite(mdb) else "no power")
    else:
        verdict = "bias detected" if detected else "bias not detected"
    return Verdict(verdict, declared_unbiased and detected, z_along, stats.bias_z_max, critical_along, critical_max,
                   mdb, relative, alpha, power)


@dataclass
class GateTest:
    """One problem at one parameter point."""

    problem: str
    options: dict[str, Any]
    point: int  # 0: the initial parameters; k > 0: perturbed by N(0, 1) noise
    replicas: int
    seconds: float
    gradient_norm: float
    verdict: Verdict

    def line(self) -> str:
        where = "initial parameters" if self.point == 0 else f"perturbed point {self.point}"
        return f"{self.problem} {self.options} at {where}, R = {self.replicas:,}: {self.verdict.text()}"


@dataclass
class GateResult:
    """The gate's tests and what they say together."""

    estimator: str
    alpha: float
    power: float
    relative_bias: float
    seconds_budget: float
    tests: list[GateTest] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def refuted(self) -> bool:
        return any(t.verdict.refuted for t in self.tests)

    @property
    def minimum_detectable_bias(self) -> float:
        """The largest over the tests: a bias at least this large at every tested point
        would be detected by each test with the stated power."""
        return max((t.verdict.minimum_detectable_bias for t in self.tests), default=math.inf)

    def summary(self) -> str:
        worst = max(self.tests, key=lambda t: abs(t.verdict.z_along) if math.isfinite(t.verdict.z_along) else 0,
                    default=None)
        mdb = self.minimum_detectable_bias
        achieved = f"{100 * mdb:.3g}% of |g|" if math.isfinite(mdb) else "none"
        what = "REFUTED" if self.refuted else "not refuted"
        z = f"; largest |z| along g {abs(worst.verdict.z_along):.3g}" if worst else ""
        return (f"unbiasedness of {self.estimator}: {what} ({len(self.tests)} tests, family-wise level {self.alpha:g}"
                f"{z}); minimum detectable bias along g {achieved} at {self.power:.0%} power (target "
                f"{100 * self.relative_bias:g}%), {sum(t.seconds for t in self.tests):.0f} s")

    def as_dict(self) -> dict[str, Any]:
        return {"estimator": self.estimator, "refuted": self.refuted, "alpha": self.alpha, "power": self.power,
                "relative_bias": self.relative_bias, "seconds_budget": self.seconds_budget,
                "minimum_detectable_bias": self.minimum_detectable_bias, "summary": self.summary(),
                "tests": [{**asdict(t), "verdict": {**asdict(t.verdict), "text": t.verdict.text()}}
                          for t in self.tests],
                "skipped": self.skipped}


def _perturb(problem: Any, point: int, problem_id: str) -> None:
    if point == 0:
        return
    generator = torch.Generator().manual_seed(derive_seed("unbiasedness-point", problem_id, point))
    with torch.no_grad():
        for parameter in problem.logit_parameters().values():
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.add_(noise.to(parameter.device))


def gate_problems() -> list[tuple[str, dict[str, Any]]]:
    """The problems (with their options) that declare ``unbiasedness_gate``."""
    return [(pid, dict(cls.unbiasedness_gate)) for pid, cls in PROBLEMS.items() if cls.unbiasedness_gate is not None]


def gate(cls: type[Estimator], hyperparameters: dict[str, Any] | None = None, *, seconds: float = GATE_SECONDS,
         alpha: float = ALPHA, power: float = POWER, relative_bias: float = RELATIVE_BIAS,
         points: int = GATE_POINTS, seed: int = 0, device: str = "cpu") -> GateResult:
    """Test ``cls``'s declared unbiasedness on every gate problem it supports, at ``points``
    parameter points each, within about ``seconds`` (see the module docstring)."""
    result = GateResult(cls.id, alpha, power, relative_bias, seconds)
    hyperparameters = dict(hyperparameters or {})
    chosen = []
    for pid, options in gate_problems():
        why = incompatibility(PROBLEMS[pid], cls, options)
        if why:
            result.skipped.append(f"{pid}: {why}")
        else:
            chosen.append((pid, options))
    tests = [(pid, options, point) for pid, options in chosen for point in range(points)]
    if not tests:
        return result
    level = alpha / len(tests)  # Bonferroni over the tests
    budget = seconds / len(tests)
    torch_device = torch.device(device)
    for pid, options, point in tests:
        started = time.perf_counter()
        problem = make_problem(pid, options, seed, torch_device, torch.float64)
        _perturb(problem, point, pid)
        estimators = node_estimators(problem, cls, hyperparameters, torch_device)
        exact, source, _ = reference_gradient(problem, make_generator(derive_seed("gate-reference", pid, point),
                                                                      torch_device))
        if source == "sampled":
            result.skipped.append(f"{pid} point {point}: no exact gradient")
            continue
        pilot_generator = make_generator(derive_seed("gate-pilot", pid, options, point, seed), torch_device)
        gradient_statistics(problem, estimators, exact, 16, pilot_generator, torch_device)  # warm-up: time the pilot, not its first call
        pilot, per_estimate = gradient_statistics(problem, estimators, exact, PILOT_REPLICAS, pilot_generator,
                                                  torch_device)
        if not pilot.gradient_norm > 0:
            result.skipped.append(f"{pid} point {point}: the exact gradient is zero (no relative bias to detect)")
            continue
        sd_along = pilot.se_along * math.sqrt(PILOT_REPLICAS)
        wanted = replicas_for(sd_along, pilot.gradient_norm, level, power, relative_bias)
        affordable = int(max(0.0, budget - (time.perf_counter() - started)) / max(per_estimate, 1e-9))
        replicas = max(PILOT_REPLICAS, min(wanted, affordable))
        generator = make_generator(derive_seed("gate", pid, options, point, seed), torch_device)
        stats, _ = gradient_statistics(problem, estimators, exact, replicas, generator, torch_device)
        result.tests.append(GateTest(pid, options, point, replicas, time.perf_counter() - started,
                                     stats.gradient_norm, verdict_of(stats, cls.unbiased, level, power)))
    return result
