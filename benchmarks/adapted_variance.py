"""Gradient variance at equal f-evaluations, with learned control variates at their initial
values and after adapting them at fixed model parameters.

    .venv/bin/python -m benchmarks.adapted_variance [--replicas 10000] [--steps 500] [--json FILE]

For each (problem, estimator, samples) it prints the mean per-coordinate variance of the
encoder-logit gradient at the initial parameters (as ``dgbench gradcheck`` does), and for
estimators with learned parts the same after ``--steps`` Adam steps (lr 0.01) on their
auxiliary loss at the same parameters and minibatch: an upper bound on what adapting them
during training gains, since training moves both.
"""

from __future__ import annotations

import argparse
import json

import torch

from dgbench.estimators import ESTIMATORS
from dgbench.harness.cells import make_problem, materialize, node_estimators, reference_gradient
from dgbench.harness.gradstats import flatten, replicated_gradients, summarise
from dgbench.harness.seeding import make_generator

CASES = [
    ("vae-bernoulli-tiny", {}, [("rloo", 4), ("disarm", 2), ("arms", 4), ("double-cv", 4), ("rodeo", 4)]),
    ("bernoulli-toy", {"dim": 16, "target": 0.499},
     [("rloo", 4), ("disarm", 2), ("arms", 4), ("double-cv", 4), ("rodeo", 4)]),
]


def variance(problem, estimators, exact: torch.Tensor, replicas: int) -> tuple[float, float]:
    """Mean per-coordinate variance and largest bias z-score of ``replicas`` estimates."""
    stats = summarise(replicated_gradients(problem, estimators.eval(), replicas, make_generator(11)), exact)
    return stats.variance_mean, stats.bias_z_max


def measure(replicas: int, steps: int) -> list[dict]:
    rows = []
    for pid, options, estimators in CASES:
        for eid, samples in estimators:
            problem = make_problem(pid, options, 0, torch.device("cpu"))
            ests = node_estimators(problem, ESTIMATORS[eid], {"samples": samples}, torch.device("cpu"))
            materialize(problem, ests, torch.Generator().manual_seed(1))
            exact, _, _ = reference_gradient(problem, make_generator(2))

            row = {"problem": pid, "options": options, "estimator": eid, "samples": samples}
            row["initial"], row["bias_z_initial"] = variance(problem, ests, flatten(exact), replicas)
            learned = [p for p in ests.parameters() if p.requires_grad]
            if learned:
                ests.train()
                optimizer, generator = torch.optim.Adam(learned, lr=0.01), make_generator(3)
                for _ in range(steps):
                    optimizer.zero_grad()
                    problem.loss(ests, generator)
                    sum(e.auxiliary_loss() for e in ests.values()).backward()
                    optimizer.step()
                row["adapted"], row["bias_z_adapted"] = variance(problem, ests, flatten(exact), replicas)
            print(row, flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = measure(args.replicas, args.steps)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
