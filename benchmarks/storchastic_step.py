"""The storchastic side of :mod:`benchmarks.storchastic_side_by_side`: one training step of
the linear Bernoulli VAE (784-200-784, learned prior, batch 50, analytic KL, fused Adam)
written with storchastic's API, timed in its own process (storchastic patches torch
functions on import, so it never shares a process with dgbench).

Runs under any Python with torch and storchastic; prints one JSON object. The minibatches
are random binary images of MNIST's size and mean (timing does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch


def make_method(storch, eid: str):
    m = storch.method
    if eid == "reinforce":
        return m.ScoreFunction("z", n_samples=1)
    if eid == "rloo":  # two samples, each baselined by the other's (batch average leaves one out)
        return m.ScoreFunction("z", n_samples=2, baseline_factory="batch_average")
    if eid == "disarm":
        return m.DisARM("z", n_samples=1)
    if eid == "gumbel-softmax":
        return m.GumbelSoftmax("z", n_samples=1, initial_temperature=0.5, min_temperature=0.5)
    if eid == "relax":
        return m.RELAX("z", n_samples=1, in_dim=(200,))
    raise ValueError(f"no storchastic step for {eid!r}")


def build_step(eid: str, seed: int = 0):
    import storch
    from torch.distributions import Bernoulli

    torch.manual_seed(seed)
    pixels, latents, batch = 784, 200, 50
    data = (torch.rand(5000, pixels) < 0.13).float()
    mean = data.mean(0)
    encoder, decoder = torch.nn.Linear(pixels, latents), torch.nn.Linear(latents, pixels)
    prior_logits = torch.nn.Parameter(torch.zeros(latents))
    method = make_method(storch, eid)
    params = [*encoder.parameters(), *decoder.parameters(), prior_logits, *method.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-4, fused=True)
    position = [0]

    def step() -> None:
        storch.reset()
        start = position[0] % (data.shape[0] - batch)
        position[0] += batch
        x = storch.denote_independent(data[start:start + batch], 0, "data")
        q = Bernoulli(logits=encoder(x - mean))
        prior = Bernoulli(logits=prior_logits.expand(batch, latents))
        storch.add_cost(torch.distributions.kl_divergence(q, prior).sum(-1), "kl")
        z = method(q)
        logits = decoder(z.float() if z.dtype == torch.bool else z)
        nll = torch.nn.functional.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
        storch.add_cost(nll.sum(-1), "reconstruction")
        optimizer.zero_grad(set_to_none=True)
        storch.backward()
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--estimators", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-round-seconds", type=float, default=0.3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        import storch  # noqa: F401
    except ImportError as err:
        print(json.dumps({"error": f"storchastic is not importable here: {err}"}))
        return 3
    out = {"torch": torch.__version__, "times_ms": {}}
    for eid in args.estimators.split(","):
        step = build_step(eid)
        for _ in range(3):
            step()
        start = time.perf_counter()
        step()
        per = max(time.perf_counter() - start, 1e-6)
        size = max(3, int(args.min_round_seconds / per))
        rounds = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for _ in range(size):
                step()
            rounds.append((time.perf_counter() - start) / size)
        out["times_ms"][eid] = 1e3 * statistics.median(rounds)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
