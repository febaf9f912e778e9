"""The ``dgbench`` command line.

    dgbench list estimators [--json]
    dgbench list problems [--json]
    dgbench gradcheck --problem ID --estimator ID|FILE.py|module:attr [--replicas R] [--seed S]
                      [--option key=value ...] [--hparam key=value ...] [--json]
    dgbench run --suite NAME|FILE.toml [--problems ...] [--estimators ...] [--seeds N]
                [--workers N] [--device cpu|cuda] [--out DIR]
    dgbench export DIR [--format csv|parquet] [--out DIR]
    dgbench reproduce NAME [--seeds N] [--steps-scale F] [--out DIR] | --list

Errors in the user's input print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dgbench.errors import Interrupted, Terminated, UsageError
from dgbench.harness.defaults import DEFAULT_CELL_TIMEOUT, DEFAULT_CHECKPOINT_SECONDS, DTYPE_NAMES
from dgbench.strict_json import json_safe

# Each command imports what it needs when it runs: `dgbench --help`, `report` and
# `export` never load torch or the registries.


def cmd_list(args: argparse.Namespace) -> int:
    from dgbench.estimators.registry import ESTIMATORS
    from dgbench.harness.listing import estimator_markdown, problem_markdown, terminal_rows
    from dgbench.problems.registry import PROBLEMS

    if args.json:
        registry = ESTIMATORS if args.what == "estimators" else PROBLEMS
        describe = (lambda cls: cls.capabilities()) if args.what == "estimators" else (lambda cls: cls.describe())
        print(json.dumps([describe(cls) for cls in registry.values()], indent=2))
    elif args.markdown:
        print(estimator_markdown() if args.what == "estimators" else problem_markdown())
    else:
        rows = terminal_rows(args.what)
        widths = [max(len(str(r[i])) for r in rows) + 2 for i in range(len(rows[0]) - 1)]
        for row in rows:
            print("".join(f"{str(v):<{w}}" for v, w in zip(row, widths)) + str(row[-1]))
    return 0


def _print_gradcheck(result: dict[str, Any]) -> None:
    print(f"{result['estimator']} on {result['problem']} {result['options']}: "
          f"{result['replicas']} replicas, seed {result['seed']}, {result['device']} {result['dtype']}")
    def vec(xs: list[float]) -> str:
        return "[" + ", ".join(f"{x:+.6g}" for x in xs[:8]) + (", ..." if len(xs) > 8 else "") + "]"
    rows = [
        (f"exact gradient ({result['exact_source']})", vec(result["exact_gradient"])),
        ("mean estimate", vec(result["mean_gradient"])),
        ("standard error", vec(result["standard_error"])),
        ("bias norm", f"{result['bias_norm']:.6g}  (max |bias|/se = {result['bias_z_max']:.3g})"),
        ("variance (mean per coord)", f"{result['variance_mean']:.6g}"),
        ("variance (total)", f"{result['variance_total']:.6g}"),
        ("MSE", f"{result['mse']:.6g}"),
        ("cosine(mean, exact)", f"{result['cosine']:.6g}"),
        ("mean cosine(single, exact)", f"{result['cosine_single_mean']:.6g}"),
        ("SNR (mean per coord)", f"{result['snr_mean']:.6g}"),
        ("f evaluations / estimate", f"{result['evals_per_estimate']}"),
        ("seconds / estimate", f"{result['seconds_per_estimate']:.3g}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    claim = "unbiased" if result["declared_unbiased"] else "biased"
    mdb = result["minimum_detectable_bias"]
    detectable = (f"{100 * mdb:.3g}% of |g| along the exact gradient (power 90%)" if math.isfinite(mdb)
                  else "none: the exact gradient is zero")
    z_along = result["z_along"]
    along = f"along g z = {z_along:+.3g}" if z_along is not None and math.isfinite(z_along) else "no test along g"
    print(f"verdict: {result['verdict'].upper()} (declared {claim}; family-wise level {result['alpha']:g}, "
          f"{along}, max coordinate |z| = {result['bias_z_max']:.3g})")
    print(f"minimum detectable bias: {detectable}"
          + ("" if result["exact_source"] != "sampled" else "; against a sampled reference"))


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from dgbench.harness.gradcheck import gradcheck
    from dgbench.harness.options import OptionError, parse_assignments

    try:
        options = parse_assignments(args.option, "--option")
        hparams = parse_assignments(args.hparam, "--hparam")
    except OptionError as err:
        raise UsageError(str(err)) from None
    if args.samples is not None:
        hparams["samples"] = str(args.samples)
    _use_data_dir(args.data_dir)
    result = gradcheck(
        args.problem, args.estimator, replicas=args.replicas, seed=args.seed, options=options,
        hparams=hparams, device=args.device, dtype=args.dtype,
    ).as_dict()
    if args.json:
        print(json.dumps(json_safe(result), indent=2))
    else:
        _print_gradcheck(result)
    return 1 if result["refuted"] else 0  # the data refute the declared claim


def _ids(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _use_data_dir(directory: str | None) -> None:
    """``--data-dir`` wins over ``DGBENCH_DATA_DIR``; workers inherit the environment."""
    if directory:
        os.environ["DGBENCH_DATA_DIR"] = str(Path(directory).expanduser().resolve())


PRUNE_HELP = ("halving: train each grid by successive halving (at each rung the better half of the grid points, by "
              "the mean over seeds of the selection metric, trains on; the others stop early, stored as pruned); "
              "none (default): every point trains to the end")


def cmd_run(args: argparse.Namespace) -> int:
    from dgbench.harness.planning import plan_line
    from dgbench.harness.run import run, summary_line

    _use_data_dir(args.data_dir)
    summary = run(args.suite, args.out, problems=_ids(args.problems), estimators=_ids(args.estimators),
                  seeds=args.seeds, workers=args.workers, device=args.device, backend=args.backend,
                  scheduler=args.scheduler, retries=args.retries, progress=not args.quiet,
                  update_suite=args.update_suite, cell_timeout=args.cell_timeout,
                  checkpoint_every=args.checkpoint_every, in_process=args.in_process, dry_run=args.dry_run,
                  threads=args.threads, seed_batching=args.seed_batching, prune=args.prune)
    if args.dry_run:
        print(plan_line(summary))
        return 0
    print(summary_line(summary))
    return 1 if summary.failed else 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from dgbench.harness import reproduce as rp
    from dgbench.harness.planning import plan_line

    if args.list or not args.name:
        if not args.list:
            raise UsageError("name a reproduction (see `dgbench reproduce --list`)")
        for name in rp.available():
            rep = rp.load(name)
            print(f"{name:28s} {rep.title}")
            for row in rep.rows:
                print(f"{'':28s}   row {row['id']}: {row['label']} ({len(row['published'])} published values)")
        return 0
    _use_data_dir(args.data_dir)
    lrs = None
    if args.lr:
        try:
            lrs = [float(x) for x in ",".join(args.lr).split(",") if x]
        except ValueError:
            raise UsageError(f"--lr takes numbers, got {args.lr}") from None
    def numbers(values: list[str] | None, kind: type, flag: str) -> list | None:
        if not values:
            return None
        try:
            return [kind(x) for x in ",".join(values).split(",") if x]
        except ValueError:
            raise UsageError(f"{flag} takes comma-separated numbers, got {','.join(values)}") from None

    anneal_rates = numbers(args.anneal_rate, float, "--anneal-rate")
    anneal_every = numbers(args.anneal_every, int, "--anneal-every")
    column_lrs: dict[str, list[float]] = {}
    for item in args.column_lr or []:
        column, _, values = item.partition("=")
        if not values:
            raise UsageError(f"--column-lr takes COLUMN=LR[/LR...], got {item!r}")
        column_lrs[column] = numbers([values.replace("/", ",")], float, "--column-lr")
    command = "dgbench " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["reproduce"] else ""
    if args.dry_run:
        print(plan_line(rp.dry_run(args.name, args.out, seeds=args.seeds, steps_scale=args.steps_scale, lrs=lrs,
                                   rows=_ids(args.rows), columns=_ids(args.columns), eval_examples=args.eval_examples,
                                   workers=args.workers, device=args.device, threads=args.threads,
                                   anneal_rates=anneal_rates, anneal_every=anneal_every,
                                   column_lrs=column_lrs or None, prune=args.prune)))
        return 0
    result = rp.reproduce(args.name, args.out, seeds=args.seeds, steps_scale=args.steps_scale, lrs=lrs,
                          rows=_ids(args.rows), columns=_ids(args.columns), eval_examples=args.eval_examples,
                          workers=args.workers, device=args.device, progress=not args.quiet,
                          in_process=args.in_process, threads=args.threads, report_only=args.report_only,
                          anneal_rates=anneal_rates, anneal_every=anneal_every, column_lrs=column_lrs or None,
                          command=command, prune=args.prune)
    counts = ", ".join(f"{result.counts.get(k, 0)} {k}" for k in ("done", "diverged", "skipped", "failed", "pruned")
                       if k != "pruned" or result.counts.get(k))
    from dgbench.reports.reproduction import agrees

    tolerance = rp.load(args.name).tolerance
    within = sum(1 for e in result.entries if agrees(e, tolerance))
    measured = sum(1 for e in result.entries if e.mean is not None)
    print(f"{result.name}: {result.cells} cells (this run: {counts}); {measured} of {len(result.entries)} entries "
          f"measured, {within} within tolerance -> {result.report}")
    return 1 if result.counts.get("failed") else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from dgbench.estimators.plugin import PluginError, resolve_estimator
    from dgbench.harness.compare import compare
    from dgbench.harness.devices import DeviceUnavailable, resolve_device
    from dgbench.harness.run import check_counts, check_seconds
    from dgbench.harness.suites import SuiteError
    from dgbench.problems.data import DataUnavailable
    from dgbench.reports.build import build_report
    from dgbench.reports.comparison import unbiasedness_failures

    try:
        cls = resolve_estimator(args.estimator)
        device = str(resolve_device(args.device))  # "auto" becomes the device it chose
    except (PluginError, DeviceUnavailable) as err:
        raise UsageError(str(err)) from None
    check_counts(workers=args.workers)
    if args.cell_timeout is not None:
        check_seconds(args.cell_timeout, "--cell-timeout")
    check_seconds(args.unbiasedness_seconds, "--unbiasedness-seconds")
    out = Path(args.out or f"results/compare-{cls.id}")
    _use_data_dir(args.data_dir)
    try:
        record = compare(args.estimator, args.suite, out, Path(args.reference) if args.reference else None,
                         workers=args.workers, device=device, progress=not args.quiet, cell_timeout=args.cell_timeout,
                         unbiasedness_seconds=args.unbiasedness_seconds)
    except (SuiteError, DataUnavailable, ValueError) as err:
        raise UsageError(str(err)) from None
    written = build_report(out)
    print(f"{record['estimator']} on {record['suite']}: {record['reuse_note']}; "
          f"{record['cells_computed']} cells computed -> {out / 'report' / 'index.html'} ({len(written)} files)")
    failing = unbiasedness_failures(out, record["estimator"]) if record["unbiased"] else []
    if failing:
        print(f"{record['estimator']} declares unbiased = True but fails the unbiasedness check "
              f"(family-wise level 1e-3) on {len(failing)} suite cell(s):", file=sys.stderr)
        for line in failing:
            print(f"  {line}", file=sys.stderr)
    gate = record.get("unbiasedness")
    if gate:
        print(gate["summary"], file=sys.stderr if gate["refuted"] else sys.stdout)
        for test in gate["tests"]:
            if test["verdict"]["refuted"]:
                print(f"  {test['problem']} point {test['point']}: {test['verdict']['text']}", file=sys.stderr)
    refuted = bool(gate and gate["refuted"])
    return 1 if record["counts"].get("failed") or failing or refuted else 0


def cmd_report(args: argparse.Namespace) -> int:
    from dgbench.reports.build import build_report
    from dgbench.reports.results import ReportError

    out = Path(args.out) if args.out else Path(args.directory) / "report"
    try:
        written = build_report(args.directory, _ids(args.format), out)
    except ReportError as err:
        raise UsageError(str(err)) from None
    except OSError as err:  # read-only media, a full disk: the results are only read, never touched
        raise UsageError(f"cannot write the report into {out} ({err.strerror or err}); "
                         "choose a writable place with --out") from None
    page = next((p for p in written if p.name == "index.html"), written[0] if written else None)
    print(f"report: {len(written)} files -> {page.parent if page else args.out}" + (f" (open {page})" if page and page.name == "index.html" else ""))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from dgbench.harness.export import ExportError, export

    out = Path(args.out) if args.out else Path(args.directory) / "export"
    try:
        written = export(Path(args.directory), args.format, out)
    except ExportError as err:
        raise UsageError(str(err)) from None
    except OSError as err:  # read-only media, a full disk: the results are only read, never touched
        raise UsageError(f"cannot write the export into {out} ({err.strerror or err}); "
                         "choose a writable place with --out") from None
    for path in written:
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dgbench", description="Benchmark gradient estimators for discrete random variables.")
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="list registered estimators or problems")
    p_list.add_argument("what", choices=["estimators", "problems"])
    p_list.add_argument("--json", action="store_true", help="print a JSON array")
    p_list.add_argument("--markdown", action="store_true", help="print the README's Markdown table")
    p_list.set_defaults(func=cmd_list)

    p_gc = sub.add_parser("gradcheck", help="bias and variance of an estimator against the exact gradient")
    p_gc.add_argument("--problem", required=True, help="problem id (see `dgbench list problems`)")
    p_gc.add_argument("--estimator", required=True, help="estimator id, FILE.py[:Class] or module:attr")
    p_gc.add_argument("--replicas", type=int, default=10000, help="independent estimates R (default 10000)")
    p_gc.add_argument("--seed", type=int, default=0, help="seed index (default 0)")
    p_gc.add_argument("--option", action="append", metavar="KEY=VALUE", help="problem option, repeatable")
    p_gc.add_argument("--hparam", action="append", metavar="KEY=VALUE", help="estimator hyperparameter, repeatable")
    p_gc.add_argument("--samples", type=int, help="shorthand for --hparam samples=N")
    p_gc.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p_gc.add_argument("--dtype", default="float64", choices=list(DTYPE_NAMES))
    p_gc.add_argument("--json", action="store_true", help="print one JSON object")
    p_gc.add_argument("--data-dir", help="data directory (default: $DGBENCH_DATA_DIR, else ~/.cache/dgbench)")
    p_gc.set_defaults(func=cmd_gradcheck)

    p_run = sub.add_parser("run", help="run a suite (resumes an existing --out)")
    p_run.add_argument("--suite", required=True, help="smoke, quick, full, or a suite .toml file")
    p_run.add_argument("--problems", help="comma-separated problem ids to restrict to")
    p_run.add_argument("--estimators", help="comma-separated estimator ids to restrict to")
    p_run.add_argument("--seeds", type=int, help="number of seeds (default: the suite's)")
    p_run.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPU count)")
    p_run.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p_run.add_argument("--backend", default="local", choices=["local", "dask"],
                       help="local worker processes (default) or Dask distributed")
    p_run.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="with --backend dask: an existing scheduler (default: start a LocalCluster of --workers)")
    p_run.add_argument("--update-suite", action="store_true",
                       help="record a changed suite definition in an existing --out (reports then leave the old cells out)")
    p_run.add_argument("--retries", type=int, default=2,
                       help="reruns of a cell whose worker died (default 2), then it is failed; a cell that killed its "
                            "worker in an earlier run is rerun last, at most this many times")
    p_run.add_argument("--cell-timeout", type=float, metavar="SECONDS",
                       help="stop a cell after this long and record it failed (default: the suite's cell_timeout, "
                            f"else {DEFAULT_CELL_TIMEOUT:g}; local backend)")
    p_run.add_argument("--checkpoint-every", type=float, default=DEFAULT_CHECKPOINT_SECONDS, metavar="SECONDS",
                       help=f"training cells save a checkpoint this often (default {DEFAULT_CHECKPOINT_SECONDS:g}; "
                            "local backend); a rerun continues from it")
    p_run.add_argument("--threads", type=int, metavar="N",
                       help="threads per worker (default: cores // workers; 1 on an external Dask cluster)")
    p_run.add_argument("--seed-batching", default="auto", choices=["auto", "on", "off"],
                       help="train the seeds of a training cell as one stacked model (stateless estimators on "
                            "problems that declare it; the rest run per seed): on, off, or auto (default: every such "
                            "problem on CUDA; on the CPU only the toys, where stacking pays)")
    p_run.add_argument("--prune", default="none", choices=["none", "halving"], help=PRUNE_HELP)
    p_run.add_argument("--dry-run", action="store_true",
                       help="compute nothing: print the number of cells and an estimate of their time")
    p_run.add_argument("--in-process", action="store_true",
                       help="run cells in this process, one at a time (for a debugger; no timeout, no crash isolation)")
    p_run.add_argument("--out", help="results directory (default results/SUITE)")
    p_run.add_argument("--quiet", action="store_true", help="no progress bar")
    p_run.add_argument("--data-dir", help="data directory (default: $DGBENCH_DATA_DIR, else ~/.cache/dgbench)")
    p_run.set_defaults(func=cmd_run)

    p_cmp = sub.add_parser("compare", help="run a new estimator on a suite and report it against the built-ins")
    p_cmp.add_argument("estimator", help="FILE.py[:Class] or module:attr")
    p_cmp.add_argument("--suite", default="quick", help="suite to compare on (default quick)")
    p_cmp.add_argument("--out", help="comparison directory (default results/compare-ID)")
    p_cmp.add_argument("--reference", help="built-in results to reuse (default results/SUITE)")
    p_cmp.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    p_cmp.add_argument("--device", default="cpu")
    p_cmp.add_argument("--cell-timeout", type=float, metavar="SECONDS",
                       help=f"stop a cell after this long (default: the suite's cell_timeout, else {DEFAULT_CELL_TIMEOUT:g})")
    p_cmp.add_argument("--unbiasedness-seconds", type=float, default=60.0, metavar="SECONDS",
                       help="time budget of the unbiasedness gate for an estimator declared unbiased (default 60): "
                            "replicas chosen so that a 10%% relative bias is detected with 90%% power, within it")
    p_cmp.add_argument("--quiet", action="store_true", help="no progress bar")
    p_cmp.add_argument("--data-dir", help="data directory (default: $DGBENCH_DATA_DIR, else ~/.cache/dgbench)")
    p_cmp.set_defaults(func=cmd_compare)

    p_rpr = sub.add_parser("reproduce", help="run a published table under its own protocol and compare (resumes --out)")
    p_rpr.add_argument("name", nargs="?", help="a reproduction (see --list) or a reproduction .toml file")
    p_rpr.add_argument("--list", action="store_true", help="list the available reproductions and their rows")
    p_rpr.add_argument("--seeds", type=int, default=2, help="seeds per configuration (default 2)")
    p_rpr.add_argument("--steps-scale", type=float, default=1.0, metavar="F",
                       help="run F x the protocol's steps (a shortened run is labelled: not a reproduction)")
    p_rpr.add_argument("--lr", action="append", metavar="LR[,LR...]",
                       help="restrict the protocol's learning-rate grid to these values (recorded as a difference)")
    p_rpr.add_argument("--column-lr", action="append", metavar="COLUMN=LR[/LR...]",
                       help="restrict one column's learning rates (repeatable; recorded as a difference)")
    p_rpr.add_argument("--anneal-rate", action="append", metavar="R[,R...]",
                       help="restrict the temperature-annealing grid's rates r (recorded as a difference)")
    p_rpr.add_argument("--anneal-every", action="append", metavar="N[,N...]",
                       help="restrict the temperature-annealing grid's update intervals N (recorded as a difference)")
    p_rpr.add_argument("--rows", help="comma-separated row ids to run (default all)")
    p_rpr.add_argument("--columns", help="comma-separated column ids to run (default all)")
    p_rpr.add_argument("--eval-examples", type=int, metavar="N",
                       help="evaluate on the first N examples of each split (recorded as a difference)")
    p_rpr.add_argument("--report-only", action="store_true", help="compute nothing; report what --out holds")
    p_rpr.add_argument("--dry-run", action="store_true",
                       help="compute nothing; print the cells and their estimated time, as `run --dry-run` does")
    p_rpr.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPU count)")
    p_rpr.add_argument("--threads", type=int, metavar="N", help="threads per worker (default: cores // workers)")
    p_rpr.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p_rpr.add_argument("--in-process", action="store_true", help="run cells in this process, one at a time")
    p_rpr.add_argument("--out", help="results directory (default results/reproductions/NAME)")
    p_rpr.add_argument("--quiet", action="store_true", help="no progress bar")
    p_rpr.add_argument("--data-dir", help="data directory (default: $DGBENCH_DATA_DIR, else ~/.cache/dgbench)")
    p_rpr.add_argument("--prune", default="none", choices=["none", "halving"],
                       help=PRUNE_HELP + "; not the paper's protocol: listed among the run's differences")
    p_rpr.set_defaults(func=cmd_reproduce)

    p_rep = sub.add_parser("report", help="tables, figures and an HTML page for a results directory")
    p_rep.add_argument("directory")
    p_rep.add_argument("--format", default="html,md,tex,csv",
                       help="comma-separated: html (the page and its PNG figures), md, tex, csv (the tables), "
                            "svg (vector copies of the figures) (default html,md,tex,csv)")
    p_rep.add_argument("--out", help="report directory (default DIR/report)")
    p_rep.set_defaults(func=cmd_report)

    p_exp = sub.add_parser("export", help="export a results directory as long-format tables")
    p_exp.add_argument("directory")
    p_exp.add_argument("--format", default="csv", choices=["csv", "parquet"])
    p_exp.add_argument("--out", help="output directory (default DIR/export)")
    p_exp.set_defaults(func=cmd_export)
    return parser


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM stops a command as the first Ctrl-C does (an exception that the run turns
    into a clean stop); a second Ctrl-C exits at once. The previous handlers come back
    afterwards (``main`` may run inside another program, e.g. the tests)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise Terminated()

    def on_int(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, on_second_int)
        raise KeyboardInterrupt()

    def on_second_int(signum: int, frame: Any) -> None:
        os.write(2, b"dgbench: interrupted again: exiting now (the results store stays consistent)\n")
        os._exit(130)

    previous = {s: signal.signal(s, h) for s, h in ((signal.SIGTERM, on_term), (signal.SIGINT, on_int))}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _stop_on_signals():
            return args.func(args)
    except UsageError as err:
        print(f"dgbench: error: {err}", file=sys.stderr)
        return 2
    except Interrupted as err:
        print(f"dgbench: {err}", file=sys.stderr)
        return err.exit_status
    except (KeyboardInterrupt, Terminated) as err:  # outside a run of cells
        print("dgbench: interrupted", file=sys.stderr)
        return 130 if isinstance(err, KeyboardInterrupt) else 143
    except BrokenPipeError:  # e.g. `dgbench list estimators | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
