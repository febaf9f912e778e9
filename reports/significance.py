"""The statistical calls a report makes: which estimators are tied with the best, and
whether an estimator's gradient is biased.

**Tied with the best.** Within one problem configuration, estimators are ranked by their
mean score over seeds. Every ordered pair ``(a, b)`` is compared on the seeds both
finished (seeds share data order, initialisation and noise, so they pair): the per-seed
differences ``d_s = a_s - b_s`` (signed so that positive favours ``a``) enter a one-sided
paired t-test of ``mean d <= 0`` against ``mean d > 0``, with ``n - 1`` degrees of
freedom. All ``E (E - 1)`` p-values of the configuration are adjusted together by Holm's
step-down procedure at family-wise level ``ALPHA_TIE`` = 0.05. An estimator is called
*worse* (than the best) when some other estimator is shown better than it; the others
are *tied with the best*: they form a confidence set for the best estimator, which
misses a truly best one with probability at most 0.05. (Testing each estimator only
against the observed best would ignore that the best was selected by the same data: in
simulation its false-alarm rate was 12-32% instead of 5%.) With fewer than two common
seeds nothing is tested ("untested"). With few seeds the test has little power (one
degree of freedom with two seeds), so ties are common: a tie means "not shown to
differ", never "shown equal".

**Bias.** A gradient-statistics cell stores ``bias_z_max``: the largest over the
gradient's ``c`` coordinates of ``|mean - reference| / se``, where ``se`` combines the
estimate's standard error with the reference's when the reference is sampled. Over the
``n`` seeds of a configuration the ``c * n`` z-scores are tested two-sided at family-wise
level ``ALPHA_BIAS`` = 1e-3 with a Bonferroni correction: the estimator is *biased* when
the largest exceeds ``Phi^-1(1 - ALPHA_BIAS / (2 c n))``, else *bias not detected*. Cells
that also store the test along the exact gradient (``z_along``: the projections of the
estimates onto g / |g| against |g|; :mod:`dgbench.harness.unbiasedness`) split the level:
``ALPHA_BIAS / 2`` for the ``n`` along-g tests and ``ALPHA_BIAS / 2`` for the ``c * n``
coordinates. Every "not detected" states its minimum detectable bias: the relative bias
along g that the most sensitive cell detects with 90% power. These verdicts hold at the
initial parameters, where the cells measure; ``dgbench compare`` adds a gate at several
parameter points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm
from scipy.stats import t as student_t

ALPHA_TIE = 0.05
ALPHA_BIAS = 1e-3


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values (family-wise error control over the given tests)."""
    order = sorted(p_values, key=p_values.get)
    m = len(order)
    adjusted, running = {}, 0.0
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[key]))
        adjusted[key] = running
    return adjusted


def paired_p_value(best: np.ndarray, other: np.ndarray, higher_is_better: bool) -> float:
    """One-sided paired t-test p-value that ``best`` beats ``other`` (aligned by seed)."""
    d = (best - other) if higher_is_better else (other - best)
    n = d.size
    if n < 2:
        return math.nan
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        # No spread, no variance estimate: quantised scores (accuracy on a few hundred
        # examples) repeat differences by coincidence, so no call is made.
        return 1.0
    return float(student_t.sf(mean / (sd / math.sqrt(n)), n - 1))


@dataclass
class Standing:
    """One estimator's place on one board: rank by mean, and the tie call."""

    mean: float
    seeds: int
    rank: int
    p_adjusted: float  # Holm-adjusted p-value against the best (0 for the best, NaN untested)
    tied: bool | None  # tied with the best (True for the best itself); None: not testable

    @property
    def mark(self) -> str:
        if self.rank == 1:
            return "best"
        return {True: "tied", False: "worse", None: "untested"}[self.tied]


def standings(per_seed: pd.DataFrame, higher_is_better: bool, alpha: float = ALPHA_TIE) -> dict[str, Standing]:
    """Rank the columns of ``per_seed`` (index: seed, columns: estimator) by their mean and
    call each tied with the best or worse (see the module docstring)."""
    means = per_seed.mean(skipna=True).dropna()
    if means.empty:
        return {}
    ordered = means.sort_values(ascending=not higher_is_better, kind="stable")
    names = [str(e) for e in ordered.index]
    values = per_seed[list(ordered.index)].to_numpy(dtype=float)
    finite = np.isfinite(values)
    p_values: dict[tuple[str, str], float] = {}
    for i, better in enumerate(names):
        for j, worse in enumerate(names):
            if i == j:
                continue
            both = finite[:, i] & finite[:, j]
            p = paired_p_value(values[both, i], values[both, j], higher_is_better)
            if math.isfinite(p):
                p_values[(better, worse)] = p
    adjusted = holm(p_values)
    ranks = ordered.rank(ascending=not higher_is_better, method="min")
    out = {}
    for estimator, mean in ordered.items():
        against = [adjusted[(other, estimator)] for other in names if (other, estimator) in adjusted]
        p = min(against) if against else math.nan
        tied = None if not against else bool(p >= alpha)
        rank = int(ranks[estimator])
        if rank == 1:
            tied = True if tied is None else tied
        out[str(estimator)] = Standing(float(mean), int(per_seed[estimator].notna().sum()), rank, p, tied)
    return out


def bias_critical_value(coordinates: float, cells: int, alpha: float = ALPHA_BIAS) -> float:
    """Two-sided Bonferroni critical value of |z| over ``coordinates * cells`` tests."""
    return float(norm.isf(alpha / (2.0 * max(1.0, coordinates) * max(1, cells))))


@dataclass
class BiasVerdict:
    verdict: str  # "biased" or "not detected"
    z_max: float
    critical: float
    cells: int
    reference: str  # "exact" or "sampled"
    z_along: float = math.nan  # the largest |z| of the test along the exact gradient
    critical_along: float = math.nan
    detectable: float = math.nan  # the relative bias along g detected with 90% power (a fraction of |g|)

    def text(self) -> str:
        """Two lines: the verdict with where it was measured, then the tests and what they
        could have detected."""
        ref = " (sampled reference)" if self.reference == "sampled" else ""
        relation = ">" if self.z_max > self.critical else "≤"
        details = f"max |z| {self.z_max:.3g} {relation} {self.critical:.3g}{ref}"
        if math.isfinite(self.z_along):
            details += f"; along g |z| {self.z_along:.3g} {'>' if self.z_along > self.critical_along else '≤'} " \
                       f"{self.critical_along:.3g}"
        if self.verdict != "biased" and math.isfinite(self.detectable):
            details += f"; min. detectable bias {100 * self.detectable:.2g}% of |g|"
        return f"{self.verdict} (at the initial parameters)\n{details}"


def bias_verdict(z_max: np.ndarray, coordinates: np.ndarray, reference_is_exact: np.ndarray,
                 alpha: float = ALPHA_BIAS, z_along: np.ndarray | None = None, se_along: np.ndarray | None = None,
                 gradient_norm: np.ndarray | None = None, power: float = 0.9) -> BiasVerdict | None:
    """The verdict over one configuration's gradient-statistics cells (one per seed).

    With the test along the exact gradient recorded (``z_along``, ``se_along``,
    ``gradient_norm``), the level is split: half for the along-g tests, half for the
    per-coordinate maxima, each Bonferroni-corrected over the cells; the minimum
    detectable bias is the smallest over the cells of ``(z_crit + z_power) se_along / |g|``.
    """
    z_max = np.asarray(z_max, dtype=float)
    keep = np.isfinite(z_max)
    if not keep.any():
        return None
    z, coords = z_max[keep], np.asarray(coordinates, dtype=float)[keep]
    cells = int(keep.sum())
    exact = bool(np.all(np.asarray(reference_is_exact, dtype=float)[keep] == 1.0))
    along = np.asarray(z_along, dtype=float)[keep] if z_along is not None else np.full(cells, np.nan)
    if np.isfinite(along).any():
        critical = bias_critical_value(float(np.nanmax(coords)), cells, alpha / 2)
        critical_along = bias_critical_value(1.0, cells, alpha / 2)
        worst_along = float(np.nanmax(np.abs(along)))
        se = np.asarray(se_along, dtype=float)[keep]
        norms = np.asarray(gradient_norm, dtype=float)[keep]
        with np.errstate(divide="ignore", invalid="ignore"):
            detectable = (critical_along + float(norm.ppf(power))) * se / norms
        detectable = detectable[np.isfinite(detectable) & (norms > 0)]
        biased = float(z.max()) > critical or worst_along > critical_along
        return BiasVerdict("biased" if biased else "not detected", float(z.max()), critical, cells,
                           "exact" if exact else "sampled", worst_along, critical_along,
                           float(detectable.min()) if detectable.size else math.nan)
    critical = bias_critical_value(float(np.nanmax(coords)), cells, alpha)
    verdict = "biased" if float(z.max()) > critical else "not detected"
    return BiasVerdict(verdict, float(z.max()), critical, cells, "exact" if exact else "sampled")
