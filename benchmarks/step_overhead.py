"""dgbench's training step against hand-written PyTorch steps of the same estimators.

    .venv/bin/python -m benchmarks.step_overhead                  # vae-bernoulli-linear, batch 50, 1 thread
    .venv/bin/python -m benchmarks.step_overhead --problem vae-bernoulli-digits --estimators reinforce,disarm
    .venv/bin/python -m benchmarks.step_overhead --json step-overhead.json

For each estimator it times :func:`dgbench.harness.cells.train_step` (what ``dgbench run`` times:
next minibatch, estimate, backward, the estimator's auxiliary step, finiteness check,
Adam step) and the estimator's hand-written step from :mod:`benchmarks.reference_steps`
(same model, noise convention and Adam step), the ``plain`` step with no estimator, and the
``floor``: the model's four GEMMs and a fused Adam step, nothing else.
Rounds of the three alternate so that drifts in machine load hit both alike; each time is
the median over rounds of the mean step time within a round. Ratios: dgbench step /
hand-written step (target <= 1.15), dgbench step / plain step, and dgbench step / floor
(target <= 1.6 for reinforce, rloo and disarm).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch

from benchmarks import reference_steps
from dgbench.estimators import ESTIMATORS
from dgbench.harness.cells import make_optimizer, make_problem, materialize, node_estimators, train_step
from dgbench.harness.devices import synchronize
from dgbench.problems.data import DataUnavailable

Step = Callable[[], None]
NO_ESTIMATOR_TARGETS = ("reinforce", "rloo", "disarm")


def build_problem(problem_id: str, options: dict | None = None, seed: int = 0) -> torch.nn.Module:
    """A fresh ``problem_id``, initialised from ``seed``."""
    return make_problem(problem_id, options or {}, seed, torch.device("cpu"))


def build_training(problem_id: str, eid: str, options: dict | None = None, seed: int = 0) -> tuple:
    """What the harness trains ``eid`` on a fresh ``problem_id`` with: ``(problem,
    estimators, optimizer, noise generator, data generator)``."""
    problem = build_problem(problem_id, options, seed)
    estimators = node_estimators(problem, ESTIMATORS[eid], {}, torch.device("cpu"))
    materialize(problem, estimators, torch.Generator().manual_seed(seed + 1))
    optimizer = make_optimizer("adam", list(problem.parameters()) + list(estimators.parameters()), 1e-4, torch.device("cpu"))
    return problem, estimators, optimizer, torch.Generator().manual_seed(seed + 2), torch.Generator().manual_seed(seed + 3)


def build_dgbench_step(problem_id: str, eid: str, options: dict | None = None, seed: int = 0) -> tuple[Step, torch.nn.Module]:
    """The harness's training step of estimator ``eid`` on a fresh ``problem_id``."""
    problem, estimators, optimizer, generator, data_generator = build_training(problem_id, eid, options, seed)

    def step() -> None:
        train_step(problem, estimators, optimizer, generator, data_generator)

    return step, problem


def build_reference_step(problem: torch.nn.Module, eid: str, seed: int = 0) -> Step:
    """``eid``'s hand-written step (or ``plain``) on a copy of ``problem``'s parameters."""
    model = reference_steps.LinearVAE(problem)
    reference, own = reference_steps.make_reference(eid, model)
    optimizer = make_optimizer("adam", model.parameters() + own, 1e-4, torch.device("cpu"))
    generator, data_generator = torch.Generator().manual_seed(seed + 2), torch.Generator().manual_seed(seed + 3)
    data, batch, dtype = problem._train_inputs, problem._batch_size, problem.input_mean.dtype  # as dgbench stores it
    state = {"order": torch.randperm(data.shape[0], generator=data_generator), "position": 0}

    def step() -> None:
        if state["position"] + batch > data.shape[0]:
            state["order"], state["position"] = torch.randperm(data.shape[0], generator=data_generator), 0
        x = data[state["order"][state["position"]:state["position"] + batch]].to(dtype)
        state["position"] += batch
        optimizer.zero_grad(set_to_none=True)
        reference(model, x, generator).backward()
        optimizer.step()

    return step


def build_floor_step(problem: torch.nn.Module) -> Step:
    """The arithmetic floor of a step of the linear VAE: its four GEMMs (encoder and decoder
    forward, both weight gradients) on a fixed minibatch and sample, then one fused Adam
    step over the model's parameters. No estimator, no elementwise work, no autograd."""
    model = reference_steps.LinearVAE(problem)
    params = model.parameters()
    optimizer = make_optimizer("adam", params, 1e-4, torch.device("cpu"))
    x = problem.training_inputs()[: problem._batch_size]
    z = (torch.rand(x.shape[0], model.enc_w.shape[0], generator=torch.Generator().manual_seed(0)) < 0.5).to(x.dtype)
    g_out = torch.randn(x.shape[0], x.shape[1], generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    for p in params:
        p.grad = torch.zeros_like(p)

    def step() -> None:
        h = x @ model.enc_w.detach().T  # encoder forward
        _ = z @ model.dec_w.detach().T  # decoder forward
        torch.mm(g_out.T, z, out=model.dec_w.grad)  # decoder weight gradient
        torch.mm(h.T, x, out=model.enc_w.grad)  # encoder weight gradient (h stands in for its upstream gradient)
        optimizer.step()

    return step


CPU = torch.device("cpu")


def _round(step: Step, steps: int, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def interleaved_times(steps_by_name: dict[str, Step], rounds: int, min_round_seconds: float = 0.2,
                      device: torch.device = CPU) -> dict[str, float]:
    """Median over ``rounds`` of each step's mean time (s) in a round; the rounds alternate
    (on CUDA the device is synchronised at the ends of a round)."""
    sizes = {}
    for name, step in steps_by_name.items():
        step()  # warm-up: lazy initialisation, allocator, first-call dispatch
        first = _round(step, 3, device)
        sizes[name] = max(3, int(min_round_seconds / max(first, 1e-6)))
    times: dict[str, list[float]] = {name: [] for name in steps_by_name}
    for _ in range(rounds):
        for name, step in steps_by_name.items():
            times[name].append(_round(step, sizes[name], device))
    return {name: statistics.median(t) for name, t in times.items()}


def measure(problem_id: str, estimators: list[str], rounds: int) -> dict:
    rows = []
    for eid in estimators:
        ours, problem = build_dgbench_step(problem_id, eid, {"eval_examples": 1})
        times = interleaved_times({"dgbench": ours, "reference": build_reference_step(problem, eid),
                                   "plain": build_reference_step(problem, reference_steps.PLAIN),
                                   "floor": build_floor_step(problem)}, rounds)
        rows.append({
            "estimator": eid,
            "dgbench_ms": 1e3 * times["dgbench"],
            "reference_ms": 1e3 * times["reference"],
            "plain_ms": 1e3 * times["plain"],
            "floor_ms": 1e3 * times["floor"],
            "ratio_to_reference": times["dgbench"] / times["reference"],
            "ratio_to_plain": times["dgbench"] / times["plain"],
            "ratio_to_floor": times["dgbench"] / times["floor"],
        })
        print(_line(rows[-1]), file=sys.stderr, flush=True)
    return {"problem": problem_id, "threads": torch.get_num_threads(), "rounds": rounds,
            "torch": torch.__version__, "rows": rows}


def _line(row: dict) -> str:
    return (f"| {row['estimator']} | {row['dgbench_ms']:.2f} | {row['reference_ms']:.2f} | {row['plain_ms']:.2f} "
            f"| {row['floor_ms']:.2f} | {row['ratio_to_reference']:.2f} | {row['ratio_to_plain']:.2f} "
            f"| {row['ratio_to_floor']:.2f} |")


def table(result: dict) -> str:
    lines = [f"{result['problem']}, {result['threads']} thread(s), torch {result['torch']}, "
             f"median of {result['rounds']} interleaved rounds",
             "",
             "| estimator | dgbench ms | hand-written ms | plain ms | floor ms | dgbench / hand-written "
             "| dgbench / plain | dgbench / floor |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [_line(row) for row in result["rows"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", default="vae-bernoulli-linear", choices=["vae-bernoulli-linear", "vae-bernoulli-digits"])
    parser.add_argument("--estimators", default=",".join(reference_steps.ESTIMATOR_IDS),
                        help="comma-separated ids (default: every estimator with a reference)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the measurements to this file")
    args = parser.parse_args(argv)
    unknown = [e for e in args.estimators.split(",") if e not in reference_steps.ESTIMATOR_IDS]
    if unknown:
        parser.error(f"no hand-written reference for {unknown}; known: {', '.join(reference_steps.ESTIMATOR_IDS)}")
    torch.set_num_threads(args.threads)
    return print_measurement(lambda: measure(args.problem, args.estimators.split(","), args.rounds), table, args.json)


def print_measurement(measure: Callable[[], dict], table: Callable[[dict], str], json_path: str | None) -> int:
    """A benchmark script's ending: run ``measure``, print its ``table`` and write it to
    ``json_path`` if given; exit status 2 (with the reason) where its data is missing."""
    try:
        result = measure()
    except DataUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table(result))
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
