"""``dgbench.gradcheck``: gradient statistics of one estimator on one problem at its
initial parameters, against the exact gradient (closed form or enumeration) or, where
neither exists, a many-sample unbiased reference with its standard error."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from dgbench.errors import NotApplicable, UsageError
from dgbench.estimators.plugin import PluginError, resolve_estimator
from dgbench.harness.cells import make_problem, node_estimators, reference_gradient
from dgbench.harness.devices import DeviceUnavailable, resolve_device
from dgbench.harness.gradstats import GradientStatistics, gradient_statistics
from dgbench.harness.options import OptionError, coerce
from dgbench.harness.seeding import derive_seed, make_generator
from dgbench.harness.suites import MAX_REPLICAS, incompatibility
from dgbench.harness.unbiasedness import ALPHA, verdict_of
from dgbench.problems.data import DataUnavailable
from dgbench.problems.registry import get as get_problem

DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class GradcheckResult(GradientStatistics):
    """What ``dgbench gradcheck --json`` prints, as attributes: the gradient statistics
    (:class:`~dgbench.harness.gradstats.GradientStatistics`) and what they were measured on."""

    problem: str = ""
    estimator: str = ""
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    dtype: str = "float64"
    exact_source: str = ""  # "closed-form", "enumeration", "quadrature" (Gaussian nodes) or "sampled"
    reference_standard_error: float = 0.0
    evals_per_estimate: int = 0
    seconds_per_estimate: float = 0.0
    # The verdict on the estimator's declared claim (dgbench.harness.unbiasedness): "refuted" /
    # "not refuted" / "no power" for an estimator declared unbiased, "bias detected" / "bias not
    # detected" for one declared biased; the relative bias along g detectable with 90% power.
    declared_unbiased: bool = False
    verdict: str = ""
    verdict_text: str = ""
    refuted: bool = False
    minimum_detectable_bias: float = math.nan
    alpha: float = ALPHA


def gradcheck(problem: str, estimator: str, *, replicas: int = 10000, seed: int = 0,
              options: dict[str, Any] | None = None, hparams: dict[str, Any] | None = None,
              device: str = "cpu", dtype: str = "float64") -> GradcheckResult:
    """Draw ``replicas`` independent gradient estimates of ``estimator`` (an id, a
    ``FILE.py[:Class]`` or ``module:attr``) on ``problem`` at its initial parameters and
    summarise them against the reference gradient.

    ``options`` and ``hparams`` may hold strings (as from the command line) or values;
    both are checked against the declared defaults. Raises :class:`UsageError` on bad input.
    """
    if not 2 <= replicas <= MAX_REPLICAS:
        raise UsageError(f"replicas must be between 2 and {MAX_REPLICAS:,}, got {replicas:,}")
    if dtype not in DTYPES:
        raise UsageError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    try:
        problem_cls = get_problem(problem)
    except KeyError as err:
        raise UsageError(err.args[0]) from None
    try:
        estimator_cls = resolve_estimator(estimator)
    except PluginError as err:
        raise UsageError(str(err)) from None
    try:
        problem_options = coerce(dict(options or {}), problem_cls.default_options(), f"option for {problem}")
        estimator_hparams = coerce(dict(hparams or {}), estimator_cls.default_hyperparameters(),
                                   f"hyperparameter of {estimator_cls.id}")
        torch_device = resolve_device(device)
    except (OptionError, DeviceUnavailable) as err:
        raise UsageError(str(err)) from None
    errors = problem_cls.check_options(problem_options) + estimator_cls.check_hyperparameters(estimator_hparams)
    if errors:
        raise UsageError(errors[0])
    refusal = incompatibility(problem_cls, estimator_cls, problem_options)
    if refusal:
        raise UsageError(f"{estimator_cls.id} on {problem}: {refusal}")
    if estimator_cls.multi_sample_bound:
        estimator_hparams.setdefault("samples", problem_cls.bound_size(problem_options))
    try:
        problem_cls.prepare_data(problem_options)
    except DataUnavailable as err:
        raise UsageError(f"{problem}: {err}") from None
    try:
        # Seeded like a suite's cell of the same (problem, options, seed): reproducible.
        instance = make_problem(problem, problem_options, seed, torch_device, DTYPES[dtype])
        estimators = node_estimators(instance, estimator_cls, estimator_hparams, torch_device)
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None

    reference_generator = make_generator(derive_seed("gradcheck-reference", problem, instance.options(), seed),
                                         torch_device)
    exact, source, reference_se = reference_gradient(instance, reference_generator)
    generator = make_generator(derive_seed("gradcheck", problem, instance.options(), seed), torch_device)
    try:
        stats, seconds = gradient_statistics(instance, estimators, exact, replicas, generator, torch_device,
                                             reference_se)
    except NotApplicable as err:
        raise UsageError(str(err)) from None
    verdict = verdict_of(stats, estimator_cls.unbiased)
    return GradcheckResult(
        declared_unbiased=estimator_cls.unbiased, verdict=verdict.verdict, verdict_text=verdict.text(),
        refuted=verdict.refuted, minimum_detectable_bias=verdict.minimum_detectable_bias, alpha=verdict.alpha,
        **stats.as_dict(), problem=problem, estimator=estimator_cls.id, seed=seed, options=instance.options(),
        hyperparameters=next(iter(estimators.values())).hyperparameters(), device=str(torch_device), dtype=dtype,
        exact_source=source, reference_standard_error=float(reference_se.norm()),
        evals_per_estimate=instance.evals_per_estimate(estimators), seconds_per_estimate=seconds,
    )
