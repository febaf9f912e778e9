"""dgbench's training step, eager and compiled (``torch.compile``), on the same model and noise.

    .venv/bin/python -m benchmarks.compiled_step                  # vae-bernoulli-linear, 1 thread
    .venv/bin/python -m benchmarks.compiled_step --estimators reinforce,gumbel-softmax --json out.json

The compiled step is :func:`dgbench.harness.training.train_step` as a training cell with
``[training] compile = true`` runs it (:mod:`dgbench.harness.compiled`): the objective
estimate compiled as one graph, its noise drawn before the graph from the same generator in
the same order. The compiled run sees the eager run's noise, and the two differ only in
float rounding: ``max |diff|`` is the largest parameter difference after
:data:`AGREEMENT_STEPS` steps of each from the same parameters and seeds.

Reported: ms per step (median of interleaved rounds), compiled / eager, the seconds of the
first compiled call (tracing and compiling; inductor's cache on disk makes a second process
faster), and the steps after which the compilation pays for itself. An estimator whose
estimate does not trace as one graph is reported with dynamo's reason (those that call
``torch.autograd.grad`` inside their estimate, for one).

dgbench compiles only where a suite asks (``compile = true``, or ``"auto"`` for cells of at
least 20,000 steps): a ``quick`` cell has 100-200 steps, far fewer than a compilation needs
to pay back, and compiling needs a C++ compiler on the user's machine.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from benchmarks.step_overhead import Step, build_dgbench_step, build_training, interleaved_times, print_measurement
from benchmarks.storchastic_side_by_side import ESTIMATORS as COMPARED
from dgbench.errors import NotApplicable
from dgbench.harness.compiled import CompiledLoss
from dgbench.harness.training import train_step

AGREEMENT_STEPS = 20


def build_compiled_step(problem_id: str, eid: str, options: dict | None = None, seed: int = 0
                        ) -> tuple[Step, torch.nn.Module]:
    """:func:`~benchmarks.step_overhead.build_dgbench_step` with the estimate compiled as a
    training cell with ``compile = true`` runs it (:class:`~dgbench.harness.compiled.CompiledLoss`).
    The second call compiles; after it, the step raises :class:`NotCompiled` if the estimate
    was not compiled (where the cell would train eagerly)."""
    problem, estimators, optimizer, generator, data_generator = build_training(problem_id, eid, options, seed)
    loss = CompiledLoss(problem, estimators, torch.device("cpu"))
    calls = [0]

    def step() -> None:
        train_step(problem, estimators, optimizer, generator, data_generator, loss_fn=loss)
        calls[0] += 1
        if calls[0] >= 2 and not loss.compiled:
            raise NotCompiled(loss.reason)

    return step, problem


class NotCompiled(RuntimeError):
    """The estimate was not compiled: not one graph, or no compiler (the reason is the message)."""


def measure_one(problem_id: str, eid: str, rounds: int, options: dict) -> dict:
    eager, eager_problem = build_dgbench_step(problem_id, eid, options)
    compiled, compiled_problem = build_compiled_step(problem_id, eid, options)
    eager()
    compiled()  # eager, recording the noise's shapes
    eager()
    start = time.perf_counter()
    compiled()  # traces and compiles
    compile_seconds = time.perf_counter() - start
    for _ in range(AGREEMENT_STEPS):
        eager()
        compiled()
    diff = max((a - b).abs().max().item() for a, b in zip(eager_problem.parameters(), compiled_problem.parameters()))
    times = interleaved_times({"eager": eager, "compiled": compiled}, rounds)
    saved = times["eager"] - times["compiled"]
    return {"estimator": eid, "eager_ms": 1e3 * times["eager"], "compiled_ms": 1e3 * times["compiled"],
            "ratio": times["compiled"] / times["eager"], "compile_seconds": compile_seconds,
            "payback_steps": compile_seconds / saved if saved > 0 else None, "max_param_diff": diff}


def measure(problem_id: str, estimators: list[str], rounds: int) -> dict:
    rows = []
    for eid in estimators:
        try:
            row = measure_one(problem_id, eid, rounds, {"eval_examples": 1})
        except NotCompiled as err:
            row = {"estimator": eid, "failed": f"not compiled: {err}"}
        except NotApplicable as err:
            row = {"estimator": eid, "failed": f"not applicable: {err}"}
        rows.append(row)
        print(_line(row), file=sys.stderr, flush=True)
    return {"problem": problem_id, "threads": torch.get_num_threads(), "rounds": rounds,
            "torch": torch.__version__, "agreement_steps": AGREEMENT_STEPS, "rows": rows}


def _line(row: dict) -> str:
    if "failed" in row:
        return f"| {row['estimator']} | | | | | | {row['failed']} |"
    payback = f"{row['payback_steps']:,.0f}" if row["payback_steps"] is not None else "never"
    return (f"| {row['estimator']} | {row['eager_ms']:.2f} | {row['compiled_ms']:.2f} | {row['ratio']:.2f} "
            f"| {row['compile_seconds']:.1f} | {payback} | {row['max_param_diff']:.1e} |")


def table(result: dict) -> str:
    lines = [f"{result['problem']}, {result['threads']} thread(s), torch {result['torch']}, median of "
             f"{result['rounds']} interleaved rounds; max |diff| after {result['agreement_steps']} steps of each",
             "",
             "| estimator | eager ms | compiled ms | compiled / eager | compile s | steps to pay back | max \\|diff\\| |",
             "|---|---|---|---|---|---|---|"]
    lines += [_line(row) for row in result["rows"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", default="vae-bernoulli-linear")
    parser.add_argument("--estimators", default=",".join(COMPARED),
                        help="comma-separated ids (default: those of the storchastic comparison)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the measurements to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    return print_measurement(lambda: measure(args.problem, args.estimators.split(","), args.rounds), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
