"""Running one cell: gradient statistics at fixed parameters, or a training run.

Runs inside a worker process; returns a plain dict (status, metrics, series) that the
driver writes. Any exception marks the cell ``failed`` with its traceback; a non-finite
objective or gradient ends a training run as ``diverged`` at that step.
"""

from __future__ import annotations

import math
import time
import traceback
from typing import Any

import torch

from estimators.registry import ESTIMATORS
from harness.devices import Stopwatch
from harness.enumeration import exact_objective_and_gradient
from harness.gradstats import flatten, gradient_statistics, replicated_gradients
from harness.seeding import derive_seed, make_generator
from harness.suites import Cell
from problems.base import Problem
from problems.registry import PROBLEMS

SCALAR_STATS = ("bias_norm", "bias_z_max", "variance_mean", "variance_total", "mse", "cosine", "snr_mean")


def build(cell: Cell, device: torch.device) -> tuple[Problem, Any]:
    """The cell's problem (initialised from a seed that ignores the estimator) and estimator."""
    torch.manual_seed(derive_seed("init", cell.problem, cell.options, cell.seed))
    problem = PROBLEMS[cell.problem](**cell.options, device=device)
    estimator = ESTIMATORS[cell.estimator](problem.family, **cell.hyperparameters).to(device)
    return problem, estimator


# The many-sample reference: RLOO (unbiased, any family) with this many samples per
# estimate, averaged over REFERENCE_REPLICAS vectorised estimates.
REFERENCE_SAMPLES = 64
REFERENCE_REPLICAS = 200


def reference_gradient(problem: Problem, generator: torch.Generator) -> tuple[torch.Tensor, str, float]:
    """The gradient bias is measured against, its source, and its standard error (norm).

    Closed form if the problem has one, else enumeration if the node is small enough,
    else the mean of many unbiased RLOO estimates with its own standard error.
    """
    closed = problem.exact_gradient()
    if closed is not None:
        return flatten(closed), "closed-form", 0.0
    try:
        return flatten(exact_objective_and_gradient(problem)[1]), "enumeration", 0.0
    except ValueError:
        pass
    rloo = ESTIMATORS["rloo"](problem.family, samples=REFERENCE_SAMPLES)
    estimates = replicated_gradients(problem, rloo, REFERENCE_REPLICAS, generator)
    standard_error = float((estimates.var(0) / REFERENCE_REPLICAS).sum().sqrt())
    return estimates.mean(0), "sampled", standard_error


def _statistics(problem, estimator, replicas, generator, device) -> dict[str, float]:
    reference, source, reference_se = reference_gradient(problem, generator)
    stats, seconds = gradient_statistics(problem, estimator, reference, replicas, generator, device)
    out = {name: getattr(stats, name) for name in SCALAR_STATS}
    out["seconds_per_estimate"] = seconds
    out["reference_is_exact"] = float(source != "sampled")
    out["reference_standard_error"] = reference_se
    return out


def _gradstats(cell: Cell, device: torch.device) -> dict[str, Any]:
    problem, estimator = build(cell, device)
    generator = make_generator(derive_seed("gradstats", cell.problem, cell.options, cell.seed), device)
    metrics = _statistics(problem, estimator, cell.settings["replicas"], generator, device)
    event_shape = problem.logits().shape[-estimator.node.event_dims:]
    metrics["evals_per_estimate"] = estimator.evals_per_estimate(event_shape)
    return {"status": "done", "metrics": metrics}


def _train(cell: Cell, device: torch.device) -> dict[str, Any]:
    s = cell.settings
    problem, estimator = build(cell, device)
    params = list(problem.parameters()) + list(estimator.parameters())
    optimizer = (torch.optim.Adam if s["optimizer"] == "adam" else torch.optim.SGD)(params, lr=s["lr"])
    generator = make_generator(derive_seed("train", cell.problem, cell.options, cell.seed), device)
    variance_generator = make_generator(derive_seed("train-variance", cell.problem, cell.options, cell.seed), device)
    sign = 1.0 if problem.minimize else -1.0
    watch, series, status, reason = Stopwatch(device), [], "done", None
    objective, evaluation = math.nan, {}
    for step in range(1, s["steps"] + 1):
        with watch.time():
            optimizer.zero_grad(set_to_none=True)
            loss = problem.loss(estimator, generator)
            (sign * loss).backward()
            objective = float(loss.detach())
            finite = math.isfinite(objective) and all(
                p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params
            )
            if finite:
                optimizer.step()
        if step % s["log_every"] == 0 or not finite:
            series.append((step, watch.seconds, "objective", objective))
        if not finite:
            status, reason = "diverged", f"non-finite objective or gradient at step {step}"
            break
        if step % s["eval_every"] == 0 or step == s["steps"]:
            evaluation = problem.evaluate()
            series.extend((step, watch.seconds, k, v) for k, v in evaluation.items())
        if step % s["variance_every"] == 0 and estimator.evals_per_sample is not None:
            stats = _statistics(problem, estimator, s["variance_replicas"], variance_generator, device)
            series.extend((step, watch.seconds, f"grad_{k}", stats[k]) for k in ("variance_mean", "bias_norm", "mse"))
    event_shape = problem.logits().shape[-estimator.node.event_dims:]
    metrics = {
        "steps_run": step,
        "final_objective": objective,
        "seconds_per_step": watch.seconds / step,
        "evals_per_step": estimator.evals_per_estimate(event_shape),
    }
    if status == "diverged":  # the last evaluation predates the divergence
        evaluation = problem.evaluate()
    metrics.update({f"final_{k}": v for k, v in evaluation.items()})
    return {"status": status, "reason": reason, "metrics": metrics, "series": series}


RUNNERS = {"gradstats": _gradstats, "train": _train}


def run_cell(cell: Cell, device: str = "cpu") -> dict[str, Any]:
    """Run one cell; never raises (failures are results)."""
    started = time.time()
    if cell.skip_reason:
        return {"status": "skipped", "reason": cell.skip_reason, "started": started, "finished": started}
    try:
        result = RUNNERS[cell.kind](cell, torch.device(device))
    except Exception as err:
        result = {"status": "failed", "reason": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    result.update(started=started, finished=time.time())
    return result
