"""dgbench's training step against storchastic's, side by side, each in its own process.

    .venv/bin/python -m benchmarks.storchastic_side_by_side --storchastic-python /path/to/venv/bin/python
    .venv/bin/python -m benchmarks.storchastic_side_by_side --json out.json --alternations 3

The model is the linear Bernoulli VAE (784-200-784, learned prior, batch 50, analytic KL,
fused Adam, one thread); dgbench times :func:`dgbench.harness.cells.train_step` on
``vae-bernoulli-linear`` and storchastic the same model written with its API
(:mod:`benchmarks.storchastic_step`). storchastic patches torch functions on import, so
each side runs in a process of its own; the sides alternate ``--alternations`` times and
each figure is the median over alternations of a process's median round. storchastic is
an optional dependency (AGPL, and pinned to old libraries): without it the benchmark says
so and exits 0. Target (issue 16): storchastic / dgbench >= 2 for every estimator.

The dgbench process also times the estimator's hand-written PyTorch step
(:mod:`benchmarks.reference_steps`, the same model without dgbench), interleaved with
dgbench's: ``storchastic / hand-written`` is what an eager PyTorch step of this model can
reach at all, the ceiling of ``storchastic / dgbench`` short of fusing kernels. With
``--compiled`` it also times dgbench's step as a cell with ``[training] compile = true``
runs it (:mod:`benchmarks.compiled_step`: the estimate fused into one graph, its noise drawn
before it); an estimator whose estimate is not one graph gets no compiled figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ESTIMATORS = ("reinforce", "rloo", "disarm", "gumbel-softmax", "relax")
STEP_SCRIPT = Path(__file__).with_name("storchastic_step.py")


def dgbench_worker(estimators: list[str], rounds: int, threads: int, compiled: bool = False) -> dict:
    import torch

    from benchmarks.compiled_step import NotCompiled, build_compiled_step
    from benchmarks.step_overhead import build_dgbench_step, build_reference_step, interleaved_times

    torch.set_num_threads(threads)
    times, hand_written, compiled_times = {}, {}, {}
    for eid in estimators:  # defaults match the storchastic side: rloo 2 samples, disarm one antithetic pair
        step, problem = build_dgbench_step("vae-bernoulli-linear", eid, {"eval_examples": 1})
        steps = {"dgbench": step, "hand-written": build_reference_step(problem, eid)}
        if compiled:
            compiled_step, _ = build_compiled_step("vae-bernoulli-linear", eid, {"eval_examples": 1})
            try:
                compiled_step()  # eager, recording the noise
                compiled_step()  # compiles, or refuses (not one graph)
                steps["compiled"] = compiled_step
            except NotCompiled:
                compiled_times[eid] = None
        measured = interleaved_times(steps, rounds, min_round_seconds=0.3)
        times[eid], hand_written[eid] = 1e3 * measured["dgbench"], 1e3 * measured["hand-written"]
        if "compiled" in measured:
            compiled_times[eid] = 1e3 * measured["compiled"]
    return {"torch": torch.__version__, "times_ms": times, "hand_written_ms": hand_written,
            "compiled_ms": compiled_times}


def _run(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]}
    return json.loads(lines[-1])


def measure(storch_python: str, estimators: list[str], rounds: int, alternations: int, threads: int,
            compiled: bool = False) -> dict:
    sides = {  # storchastic first: without it nothing else needs to run
        "storchastic": [storch_python, str(STEP_SCRIPT), "--estimators", ",".join(estimators),
                        "--rounds", str(rounds), "--threads", str(threads)],
        "dgbench": [sys.executable, "-m", "benchmarks.storchastic_side_by_side", "--worker",
                    "--estimators", ",".join(estimators), "--rounds", str(rounds), "--threads", str(threads),
                    *(["--compiled"] if compiled else [])],
    }
    runs: dict[str, list[dict]] = {side: [] for side in (*sides, "hand_written", "compiled")}
    for _ in range(alternations):
        for side, command in sides.items():
            result = _run(command)
            if "error" in result:
                return {"skipped": f"{side}: {result['error']}"}
            runs[side].append(result["times_ms"])
            if side == "dgbench":
                runs["hand_written"].append(result["hand_written_ms"])
                runs["compiled"].append(result.get("compiled_ms", {}))
    rows = []
    for eid in estimators:
        ours = statistics.median(r[eid] for r in runs["dgbench"])
        theirs = statistics.median(r[eid] for r in runs["storchastic"])
        by_hand = statistics.median(r[eid] for r in runs["hand_written"])
        row = {"estimator": eid, "dgbench_ms": ours, "storchastic_ms": theirs, "speedup": theirs / ours,
               "hand_written_ms": by_hand, "hand_written_speedup": theirs / by_hand}
        if compiled:
            fused = [r.get(eid) for r in runs["compiled"]]
            row["compiled_ms"] = statistics.median(fused) if all(t is not None for t in fused) else None
            row["compiled_speedup"] = theirs / row["compiled_ms"] if row["compiled_ms"] else None
        rows.append(row)
    return {"threads": threads, "rounds": rounds, "alternations": alternations, "rows": rows}


def table(result: dict) -> str:
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    compiled = "compiled_ms" in result["rows"][0]
    lines = [f"vae-bernoulli-linear, batch 50, {result['threads']} thread(s); median over {result['alternations']} "
             "alternations of each process's median round", "",
             "| estimator | dgbench ms | storchastic ms | storchastic / dgbench | hand-written ms "
             "| storchastic / hand-written |" + (" compiled ms | storchastic / compiled |" if compiled else ""),
             "|---|---|---|---|---|---|" + ("---|---|" if compiled else "")]
    for r in result["rows"]:
        line = (f"| {r['estimator']} | {r['dgbench_ms']:.2f} | {r['storchastic_ms']:.2f} | {r['speedup']:.2f} "
                f"| {r['hand_written_ms']:.2f} | {r['hand_written_speedup']:.2f} |")
        if compiled:
            line += (f" {r['compiled_ms']:.2f} | {r['compiled_speedup']:.2f} |" if r["compiled_ms"]
                     else " not compiled | |")
        lines.append(line)
    speedups = [r["speedup"] for r in result["rows"]]
    geo = statistics.geometric_mean(speedups)
    lines += ["", f"geometric mean {geo:.2f}x; at least 2x on every estimator: {'yes' if min(speedups) >= 2 else 'no'}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storchastic-python", default=sys.executable,
                        help="a Python with torch and storchastic installed (default: this one)")
    parser.add_argument("--estimators", default=",".join(ESTIMATORS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--alternations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument("--compiled", action="store_true",
                        help="also time dgbench's step with its estimate compiled (benchmarks.compiled_step)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    estimators = args.estimators.split(",")
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        parser.error(f"no storchastic step for {unknown}; known: {', '.join(ESTIMATORS)}")
    if args.worker:
        print(json.dumps(dgbench_worker(estimators, args.rounds, args.threads, args.compiled)))
        return 0
    result = measure(args.storchastic_python, estimators, args.rounds, args.alternations, args.threads,
                     args.compiled)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
