"""Running one cell: gradient statistics at fixed parameters, or a training run.

Runs inside a worker process; returns a plain dict (status, metrics, series) that the
driver writes. An estimator that cannot run on the problem (:class:`NotApplicable`, e.g.
``exact`` beyond its state limit) marks the cell ``skipped`` with its reason; any other
exception marks it ``failed`` with its traceback; a non-finite
objective or gradient ends a training run as ``diverged`` at that step.
"""

from __future__ import annotations

import math
import time
import traceback
from typing import Any

import torch

from dgbench.errors import NotApplicable
from dgbench.estimators.base import Estimator
from dgbench.estimators.registry import ESTIMATORS
from dgbench.harness.checkpoints import Checkpoint
from dgbench.harness.devices import Stopwatch, peak_memory_mb, reset_peak_memory
from dgbench.harness.enumeration import exact_objective_and_gradient
from dgbench.harness.gradstats import flatten, gradient_statistics, replicated_gradients
from dgbench.harness.seeding import derive_seed, make_generator
from dgbench.harness.suites import Cell
from dgbench.problems.base import Problem
from dgbench.problems.registry import PROBLEMS

SCALAR_STATS = ("bias_norm", "bias_z_max", "variance_mean", "variance_total", "mse", "cosine", "snr_mean")


def node_estimators(problem: Problem, cls: type[Estimator], hyperparameters: dict[str, Any],
                    device: torch.device) -> torch.nn.ModuleDict:
    """One instance of ``cls`` per stochastic node of ``problem``."""
    return torch.nn.ModuleDict(
        {name: cls(problem.family, **hyperparameters) for name in problem.node_names()}
    ).to(device)


def make_problem(problem_id: str, options: dict[str, Any], seed: int, device: torch.device,
                 dtype: torch.dtype | None = None) -> Problem:
    """``problem_id`` with ``options``, its parameters (and first minibatch) drawn from a
    generator seeded by (problem, options, seed index) only, never by the estimator; torch's
    global RNG is neither used nor touched."""
    generator = torch.Generator().manual_seed(derive_seed("init", problem_id, options, seed))
    extra = {} if dtype is None else {"dtype": dtype}
    return PROBLEMS[problem_id](**options, **extra, device=device, generator=generator)


def build(cell: Cell, device: torch.device) -> tuple[Problem, torch.nn.ModuleDict]:
    """The cell's problem (initialised from a seed that ignores the estimator) and estimators."""
    problem = make_problem(cell.problem, cell.options, cell.seed, device)
    return problem, node_estimators(problem, cell.estimator_class, cell.hyperparameters, device)


# The many-sample reference: RLOO (unbiased, any family) with this many samples per
# estimate at the first node (2 at deeper nodes, whose cost multiplies), averaged over
# REFERENCE_REPLICAS vectorised estimates.
REFERENCE_SAMPLES = 64
REFERENCE_INNER_SAMPLES = 2
REFERENCE_REPLICAS = 200


def reference_gradient(problem: Problem, generator: torch.Generator) -> tuple[torch.Tensor, str, torch.Tensor]:
    """The gradient bias is measured against, its source, and its per-coordinate standard error.

    Closed form if the problem has one, else enumeration if the node is small enough
    (standard error 0), else the mean of many unbiased RLOO estimates with its own
    standard error.
    """
    closed = problem.exact_gradient()
    if closed is not None:
        grad = flatten(closed)
        return grad, "closed-form", torch.zeros_like(grad)
    try:
        grad = flatten(exact_objective_and_gradient(problem)[1])
        return grad, "enumeration", torch.zeros_like(grad)
    except NotApplicable:
        pass
    rloo = ESTIMATORS["rloo"]
    names = problem.node_names()
    device = problem.logits().device
    estimators = torch.nn.ModuleDict({
        name: rloo(problem.family, samples=REFERENCE_SAMPLES if i == 0 else REFERENCE_INNER_SAMPLES)
        for i, name in enumerate(names)
    }).to(device)
    estimates = replicated_gradients(problem, estimators, REFERENCE_REPLICAS, generator)
    return estimates.mean(0), "sampled", (estimates.var(0) / REFERENCE_REPLICAS).sqrt()


def _statistics(problem, estimators, replicas, generator, device) -> dict[str, float]:
    reference, source, reference_se = reference_gradient(problem, generator)
    stats, seconds = gradient_statistics(problem, estimators, reference, replicas, generator, device, reference_se)
    out = {name: getattr(stats, name) for name in SCALAR_STATS}
    out["seconds_per_estimate"] = seconds
    out["reference_is_exact"] = float(source != "sampled")
    out["reference_standard_error"] = float(reference_se.norm())
    out["coordinates"] = float(reference.numel())
    return out


def _gradstats(cell: Cell, device: torch.device) -> dict[str, Any]:
    problem, estimators = build(cell, device)
    generator = make_generator(derive_seed("gradstats", cell.problem, cell.options, cell.seed), device)
    metrics = _statistics(problem, estimators, cell.settings["replicas"], generator, device)
    metrics["evals_per_estimate"] = problem.evals_per_estimate(estimators)
    # SNR is infinite, and the cosine undefined, for legitimately zero variance or gradient.
    bad = [name for name in ("bias_norm", "variance_mean", "variance_total", "mse") if not math.isfinite(metrics[name])]
    if bad:  # a NaN/Inf in the estimates: recorded as such, never as a finished cell with holes
        return {"status": "diverged", "reason": f"non-finite gradient statistics ({', '.join(bad)}): "
                                                "the estimates contain NaN or Inf", "metrics": metrics}
    return {"status": "done", "metrics": metrics}


def materialize(problem: Problem, estimators: torch.nn.ModuleDict, generator: torch.Generator) -> None:
    """Give lazily-shaped estimator parameters (sized by the node) their shapes: one
    objective evaluation in eval mode, so that no estimator state changes."""
    if not any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in estimators.parameters()):
        return
    estimators.eval()
    with torch.no_grad():
        problem.loss(estimators, generator)
    estimators.train()


def _step_estimators(estimators: torch.nn.ModuleDict) -> dict[str, float]:
    """Gradients of each estimator's auxiliary loss w.r.t. its own parameters only."""
    losses = {}
    for name, estimator in estimators.items():
        aux = estimator.auxiliary_loss()
        if aux is None:
            continue
        params = [p for p in estimator.parameters() if p.requires_grad]
        grads = torch.autograd.grad(aux, params, allow_unused=True)
        for p, g in zip(params, grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        losses[name] = float(aux.detach())
    return losses


def train_step(problem: Problem, estimators: torch.nn.ModuleDict, optimizer: torch.optim.Optimizer,
               generator: torch.Generator, data_generator: torch.Generator) -> tuple[float, dict[str, float], bool]:
    """One timed training step: next minibatch, objective estimate, backward, the
    estimators' auxiliary step, and the optimiser step unless something is non-finite.

    Returns ``(objective, estimator_losses, finite)``. The speed benchmarks time exactly this.
    """
    problem.next_batch(data_generator)
    optimizer.zero_grad(set_to_none=True)
    loss = problem.loss(estimators, generator)
    (loss if problem.minimize else -loss).backward()
    estimator_losses = _step_estimators(estimators)
    objective = float(loss.detach())
    # One sum per gradient and one sync: NaN and inf propagate into the sums (a sum that
    # overflows counts as divergence too), at a tenth of the cost of isfinite per element.
    sums = [p.grad.sum() for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    finite = math.isfinite(objective) and (not sums or bool(torch.stack(sums).isfinite().all()))
    if finite:
        optimizer.step()
    return objective, estimator_losses, finite


def _train(cell: Cell, device: torch.device, checkpoint: Checkpoint | None = None) -> dict[str, Any]:
    s = cell.settings
    problem, estimators = build(cell, device)
    materialize(problem, estimators, make_generator(derive_seed("materialize", cell.problem, cell.options, cell.seed), device))
    params = list(problem.parameters()) + list(estimators.parameters())
    optimizer = (torch.optim.Adam if s["optimizer"] == "adam" else torch.optim.SGD)(params, lr=s["lr"])
    generator = make_generator(derive_seed("train", cell.problem, cell.options, cell.seed), device)
    variance_generator = make_generator(derive_seed("train-variance", cell.problem, cell.options, cell.seed), device)
    # Data order depends on (problem, options, seed) only: every estimator sees the same batches.
    data_generator = make_generator(derive_seed("data", cell.problem, cell.options, cell.seed), torch.device("cpu"))
    generators = {"noise": generator, "variance": variance_generator, "data": data_generator}
    deterministic = cell.estimator_class.evals_per_sample is None
    watch, series, status, reason = Stopwatch(device), [], "done", None
    objective, evaluation, first = math.nan, {}, 1
    saved = checkpoint.load() if checkpoint else None
    if saved is not None:
        problem.load_state_dict(saved["problem"])
        problem.load_batch_state(saved["batch"])
        estimators.load_state_dict(saved["estimators"])
        optimizer.load_state_dict(saved["optimizer"])
        for name, g in generators.items():
            g.set_state(saved["generators"][name].to(g.get_state().device))
        series, watch.seconds = saved["series"], saved["seconds"]
        objective, evaluation, first = saved["objective"], saved["evaluation"], saved["step"] + 1
        reason = f"resumed from a checkpoint at step {saved['step']}"
    step = first - 1
    for step in range(first, s["steps"] + 1):
        with watch.time():
            objective, estimator_losses, finite = train_step(problem, estimators, optimizer, generator, data_generator)
        if step % s["log_every"] == 0 or not finite:
            series.append((step, watch.seconds, "objective", objective))
            series.extend((step, watch.seconds, f"estimator_loss_{name}", v) for name, v in estimator_losses.items())
        if not finite:
            status, reason = "diverged", f"non-finite objective or gradient at step {step}"
            break
        if step % s["eval_every"] == 0 or step == s["steps"]:
            evaluation = problem.evaluate()
            series.extend((step, watch.seconds, k, v) for k, v in evaluation.items())
        if step % s["variance_every"] == 0 and not deterministic:
            stats = _statistics(problem, estimators, s["variance_replicas"], variance_generator, device)
            series.extend((step, watch.seconds, f"grad_{k}", stats[k]) for k in ("variance_mean", "bias_norm", "mse"))
        if checkpoint is not None and step < s["steps"] and checkpoint.due():
            checkpoint.save({
                "step": step, "problem": problem.state_dict(), "batch": problem.batch_state(),
                "estimators": estimators.state_dict(), "optimizer": optimizer.state_dict(),
                "generators": {name: g.get_state() for name, g in generators.items()},
                "series": series, "seconds": watch.seconds, "objective": objective, "evaluation": evaluation,
            })
    metrics = {
        "steps_run": step,
        "final_objective": objective,
        "seconds_per_step": watch.seconds / step,
        "evals_per_step": problem.evals_per_estimate(estimators),
        "minimize": float(problem.minimize),  # lets reports rank objectives without the registry
    }
    if status == "diverged":  # the last evaluation predates the divergence
        evaluation = problem.evaluate()
    metrics.update({f"final_{k}": v for k, v in evaluation.items()})
    return {"status": status, "reason": reason, "metrics": metrics, "series": series}


RUNNERS = {"gradstats": _gradstats, "train": _train}


def run_cell(cell: Cell, device: str = "cpu", checkpoint: Checkpoint | None = None) -> dict[str, Any]:
    """Run one cell; never raises (failures are results). A training cell given a
    ``checkpoint`` resumes from it if it exists and saves to it as it goes."""
    started = time.time()
    if cell.skip_reason:
        return {"status": "skipped", "reason": cell.skip_reason, "started": started, "finished": started}
    dev = torch.device(device)
    try:
        reset_peak_memory(dev)
        result = _train(cell, dev, checkpoint) if cell.kind == "train" and checkpoint else RUNNERS[cell.kind](cell, dev)
        peak = peak_memory_mb(dev)
        if peak is not None:
            result["metrics"]["peak_memory_mb"] = peak
    except NotApplicable as err:
        result = {"status": "skipped", "reason": str(err)}
    except Exception as err:
        result = {"status": "failed", "reason": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    result.update(started=started, finished=time.time())
    return result
