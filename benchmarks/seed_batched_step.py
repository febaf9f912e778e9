"""The seed-batched training step against the single-seed step (issue 16's target: per
member at most 0.5x the single-seed step at 5 members, one thread).

    .venv/bin/python -m benchmarks.seed_batched_step                     # vae-bernoulli-linear, M = 5
    .venv/bin/python -m benchmarks.seed_batched_step --members 2,5,10 --json out.json
    .venv/bin/python -m benchmarks.seed_batched_step --device cuda       # where there is a GPU

For each estimator it times what ``dgbench run`` times: the single-seed step
(:func:`dgbench.harness.cells.train_step`) and the seed-batched step of M members
(:func:`dgbench.harness.seed_batching.group_step` plus the optimiser step), built from
the same cells the harness builds (seeds 0..M-1). Rounds alternate between the two;
each figure is the median over rounds of the mean step time in a round (on CUDA the
device is synchronised at the ends of a round).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from benchmarks.step_overhead import interleaved_times, print_measurement
from dgbench.estimators.registry import ESTIMATORS
from dgbench.harness.cells import make_optimizer, make_problem, materialize, node_estimators, train_step
from dgbench.harness.seed_batching import group_step, member_axis, stack_problem
from dgbench.noise import MemberGenerators

ESTIMATOR_IDS = ("reinforce", "rloo", "disarm", "gumbel-softmax")
OPTIONS = {"eval_examples": 1}


def single_step(problem_id: str, eid: str, device: torch.device) -> Callable[[], None]:
    problem = make_problem(problem_id, OPTIONS, 0, device)
    estimators = node_estimators(problem, ESTIMATORS[eid], {}, device)
    materialize(problem, estimators, torch.Generator(device=device).manual_seed(1))
    optimizer = make_optimizer("adam", list(problem.parameters()), 1e-4, device)
    noise, data = torch.Generator(device=device).manual_seed(2), torch.Generator().manual_seed(3)
    return lambda: train_step(problem, estimators, optimizer, noise, data)


def batched_step(problem_id: str, eid: str, members: int, device: torch.device) -> Callable[[], None]:
    problems = [make_problem(problem_id, OPTIONS, seed, device) for seed in range(members)]
    shell = stack_problem(problems)
    estimators = node_estimators(shell, ESTIMATORS[eid], {}, device)
    shell.take_member_batches(problems)
    axis = member_axis(estimators["z"], shell.logits().shape)
    noise = MemberGenerators([torch.Generator(device=device).manual_seed(10 + m) for m in range(members)], axis)
    data = [torch.Generator().manual_seed(20 + m) for m in range(members)]
    optimizer = make_optimizer("adam", list(shell.parameters()), 1e-4, device)

    def step() -> None:
        group_step(shell, estimators, optimizer, noise, problems, data)
        optimizer.step()

    return step


def measure(problem_id: str, estimators: list[str], members: list[int], rounds: int, device: torch.device) -> dict:
    rows = []
    for eid in estimators:
        steps = {"single": single_step(problem_id, eid, device)}
        steps.update({f"M={m}": batched_step(problem_id, eid, m, device) for m in members})
        times = interleaved_times(steps, rounds, 0.3, device)
        for m in members:
            batched = times[f"M={m}"]
            rows.append({"estimator": eid, "members": m, "single_ms": 1e3 * times["single"],
                         "batched_ms": 1e3 * batched, "per_member_ms": 1e3 * batched / m,
                         "per_member_ratio": batched / m / times["single"]})
            print(_line(rows[-1]), file=sys.stderr, flush=True)
    return {"problem": problem_id, "device": str(device), "threads": torch.get_num_threads(), "rounds": rounds,
            "torch": torch.__version__, "rows": rows}


def _line(row: dict) -> str:
    return (f"| {row['estimator']} | {row['members']} | {row['single_ms']:.2f} | {row['batched_ms']:.2f} "
            f"| {row['per_member_ms']:.2f} | {row['per_member_ratio']:.2f} |")


def table(result: dict) -> str:
    lines = [f"{result['problem']}, {result['device']}, {result['threads']} thread(s), torch {result['torch']}, "
             f"median of {result['rounds']} interleaved rounds", "",
             "| estimator | members | single-seed ms | batched ms | per member ms | per member / single |",
             "|---|---:|---:|---:|---:|---:|"]
    return "\n".join(lines + [_line(row) for row in result["rows"]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", default="vae-bernoulli-linear")
    parser.add_argument("--estimators", default=",".join(ESTIMATOR_IDS))
    parser.add_argument("--members", default="5", help="comma-separated member counts (default 5)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the measurements to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    members = [int(m) for m in args.members.split(",")]
    return print_measurement(lambda: measure(args.problem, args.estimators.split(","), members, args.rounds,
                                             torch.device(args.device)), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
