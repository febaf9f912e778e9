"""What training seeds as one batched model can buy: a measurement for the design of
seed-batched cells (issue 16), not the feature.

    .venv/bin/python -m benchmarks.member_batching                 # 1 thread, members 1, 2, 5, 10
    .venv/bin/python -m benchmarks.member_batching --members 1,5 --json out.json

A hand-written REINFORCE step (one sample) of ``vae-bernoulli-linear`` (784-200-784,
linear, learned prior, batch 50, analytic KL, fused Adam), written once for M members with
a leading member dim: stacked weights ``(M, out, in)``, every member its own minibatch,
batched matmuls (``baddbmm``), one optimiser step over the stacked parameters. M = 1 is the
single-seed step. Reports the time per step and per member-step (the issue's target:
per-member time at M = 5 at most 0.5x the single-seed step). Rounds alternate between
member counts; each figure is the median over rounds of the mean step time in a round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from dgbench.problems.datasets import image_splits

LATENTS, BATCH = 200, 50


class MemberVAE:
    """M independent linear Bernoulli VAEs as stacked tensors."""

    def __init__(self, members: int, data: torch.Tensor, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        pixels = data.shape[1]
        self.data, self.members = data, members
        self.mean = data.mean(0)
        bound_e, bound_d = 1 / pixels**0.5, 1 / LATENTS**0.5

        def uniform(*shape, bound):
            return ((torch.rand(shape, generator=g) * 2 - 1) * bound).requires_grad_(True)

        self.params = [uniform(members, LATENTS, pixels, bound=bound_e), uniform(members, 1, LATENTS, bound=bound_e),
                       uniform(members, pixels, LATENTS, bound=bound_d), uniform(members, 1, pixels, bound=bound_d),
                       torch.zeros(members, 1, LATENTS, requires_grad=True)]
        self.optimizer = torch.optim.Adam(self.params, lr=1e-4, fused=True)
        self.noise = torch.Generator().manual_seed(seed + 1)
        self.order = torch.Generator().manual_seed(seed + 2)

    def step(self) -> None:
        we, be, wd, bd, prior = self.params
        index = torch.randint(self.data.shape[0], (self.members, BATCH), generator=self.order)
        x = self.data[index]  # (M, B, pixels): each member its own minibatch
        self.optimizer.zero_grad(set_to_none=True)
        logits = torch.baddbmm(be, x - self.mean, we.transpose(1, 2))  # (M, B, D)
        p = torch.sigmoid(logits)
        z = (torch.rand(p.shape, generator=self.noise) < p.detach()).to(p.dtype)
        out = torch.baddbmm(bd, z, wd.transpose(1, 2))
        log_lik = -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)  # (M, B)
        log_q1, log_q0 = F.logsigmoid(logits), F.logsigmoid(-logits)
        kl = (p * (log_q1 - F.logsigmoid(prior)) + (1 - p) * (log_q0 - F.logsigmoid(-prior))).sum(-1)
        surrogate = (log_lik.detach().unsqueeze(-1) * (z - p.detach()) * logits).sum(-1)
        elbo = log_lik + surrogate - surrogate.detach() - kl
        (-elbo.mean(-1).sum()).backward()  # members are independent: each gets its own gradient
        self.optimizer.step()


def measure(members_list: list[int], data: torch.Tensor, rounds: int, steps: int) -> dict[int, float]:
    models = {m: MemberVAE(m, data) for m in members_list}
    for model in models.values():
        for _ in range(10):
            model.step()
    times: dict[int, list[float]] = {m: [] for m in members_list}
    for _ in range(rounds):
        for m, model in models.items():
            start = time.perf_counter()
            for _ in range(steps):
                model.step()
            times[m].append((time.perf_counter() - start) / steps)
    return {m: statistics.median(t) for m, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", default="1,2,5,10")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    members = sorted({int(m) for m in args.members.split(",")} | {1})
    data = image_splits("mnist", torch.float32, "cpu")["train"]
    seconds = measure(members, data, args.rounds, args.steps)
    single = seconds[1]
    print(f"vae-bernoulli-linear, hand-written REINFORCE step, batch {BATCH}, {args.threads} thread(s)")
    print(f"{'members':>8} {'ms/step':>9} {'ms/member-step':>15} {'vs single':>10}")
    rows = []
    for m in members:
        per_member = seconds[m] / m
        rows.append({"members": m, "ms_per_step": 1e3 * seconds[m], "ms_per_member_step": 1e3 * per_member,
                     "ratio_to_single": per_member / single})
        print(f"{m:>8} {1e3 * seconds[m]:>9.3f} {1e3 * per_member:>15.3f} {per_member / single:>10.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"threads": args.threads, "torch": torch.__version__, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
