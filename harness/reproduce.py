"""``dgbench reproduce``: a published table as data, run under its own protocol.

A reproduction file (``reproductions/NAME.toml``, installed as ``dgbench.reproductions``)
holds the paper's protocol, the published values with their source, what dgbench filled
in where the paper is silent, the known protocol differences, and how to measure:

    name, title, source            the paper, table and where the numbers come from
    metric                         a final metric of the training cells (``final_<metric>``),
                                   or ``series:<name>``, a logged series summarised by
    series_summary                 "last" (default: its last value) or "median_second_half"
                                   (the median of the transformed values logged in the second
                                   half of training: the level a figure's curve shows)
    transform                      "none", "negate" or "log" (measured -> published scale)
    lower_is_better, tolerance     published scale; a row is "within" if |difference| <= tolerance
    select_on                      final metric that picks a grid point per (row, column),
                                   averaged over seeds; "" when there is no grid
    select_direction               "max" (default) or "min": the best end of ``select_on``
    [protocol]                     the protocol, one line per item, as the paper states it
    [[filled_in]]                  detail / value / source: what the paper does not state
    [[differences]]                known differences between dgbench's run and the paper's
    [training]                     the [training] table of a suite (protocol keys included)
    [grid] lr = [...]              learning rates searched (model selection on ``select_on``)
    [[columns]] id, label, estimator, hyperparameters
    [[rows]] id, label, problem, options, training (overrides), published = {column: value},
             anneal = {columns, rate = [...], every = [...], start, min} (a temperature grid)

Each (row, column, grid point, seed) is a training cell with the column's id as a suite
variant of its estimator, so ``run``'s store, resume and workers do the work; the report
(:mod:`dgbench.reports.reproduction`) puts published and measured side by side.
"""

from __future__ import annotations

import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from dgbench import selection
from dgbench.errors import UsageError
from dgbench.estimators.registry import ESTIMATORS
from dgbench.harness import grids
from dgbench.harness.suites import (
    MAX_SEEDS,
    MAX_STEPS,
    TRAINING_DEFAULTS,
    Cell,
    Suite,
    _check_training,
    incompatibility,
    samples_for_budget,
)
from dgbench.problems.registry import PROBLEMS
from dgbench.selection import FINISHED

# A shortened run is a pilot; a lengthened one more than 100 x the protocol is a typo.
MAX_STEPS_SCALE = 100.0

REPRODUCTION_DIR = resources.files("dgbench.reproductions")
TRANSFORMS = ("none", "negate", "log")
BUDGET = {"samples": 1}


@dataclass
class Reproduction:
    name: str
    title: str
    source: str
    metric: str
    transform: str
    lower_is_better: bool
    tolerance: float
    unit: str
    select_on: str
    select_direction: str  # "max" or "min": which end of select_on is best
    series_summary: str  # "last" or "median_second_half" (series metrics)
    protocol: dict[str, str]
    filled_in: list[dict[str, str]]
    differences: list[str]
    training: dict[str, Any]
    lr_grid: list[float]
    columns: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    text: str = field(repr=False, default="")

    def column(self, cid: str) -> dict[str, Any]:
        return next(c for c in self.columns if c["id"] == cid)


def available() -> list[str]:
    return sorted(p.name[:-5] for p in REPRODUCTION_DIR.iterdir() if p.name.endswith(".toml"))


def load(name_or_path: str) -> Reproduction:
    """A shipped reproduction by name, or a reproduction TOML file; UsageError if invalid."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        text, origin = path.read_text(), str(path)
    elif name_or_path in available():
        text, origin = (REPRODUCTION_DIR / f"{name_or_path}.toml").read_text(), name_or_path
    else:
        raise UsageError(f"unknown reproduction {name_or_path!r} (available: {', '.join(available())}, or a .toml file)")
    return parse(text, origin)


def _require(table: dict, key: str, where: str) -> Any:
    if key not in table:
        raise UsageError(f"{where}: missing key {key!r}")
    return table[key]


def parse(text: str, origin: str) -> Reproduction:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{origin}: not valid TOML: {err}") from None
    transform = data.get("transform", "none")
    if transform not in TRANSFORMS:
        raise UsageError(f"{origin}.transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
    summary = data.get("series_summary", "last")
    if summary not in ("last", "median_second_half"):
        raise UsageError(f"{origin}.series_summary must be 'last' or 'median_second_half', got {summary!r}")
    direction = data.get("select_direction", "max")
    if direction not in ("max", "min"):
        raise UsageError(f"{origin}.select_direction must be 'max' or 'min', got {direction!r}")
    training = {**TRAINING_DEFAULTS, **_require(data, "training", origin)}
    try:
        _check_training(training, f"{origin}: training")
    except ValueError as err:
        raise UsageError(str(err)) from None
    columns = _require(data, "columns", origin)
    for c in columns:
        for key in ("id", "label", "estimator"):
            _require(c, key, f"{origin}: columns")
        if c["estimator"] not in ESTIMATORS:
            raise UsageError(f"{origin}: column {c['id']!r}: unknown estimator {c['estimator']!r}")
        if c["id"] in ESTIMATORS and (c["id"] != c["estimator"] or c.get("hyperparameters")):
            raise UsageError(f"{origin}: column id {c['id']!r} is a registered estimator's id; give it its own")
        errors = ESTIMATORS[c["estimator"]].check_hyperparameters(c.get("hyperparameters", {}))
        if errors:
            raise UsageError(f"{origin}: column {c['id']!r}: {errors[0]}")
    ids = {c["id"] for c in columns}
    rows = _require(data, "rows", origin)
    for r in rows:
        where = f"{origin}: row {r.get('id')!r}"
        for key in ("id", "label", "problem", "published"):
            _require(r, key, where)
        if r["problem"] not in PROBLEMS:
            raise UsageError(f"{where}: unknown problem {r['problem']!r}")
        errors = PROBLEMS[r["problem"]].check_options(r.get("options", {}))
        if errors:
            raise UsageError(f"{where}: {errors[0]}")
        for cid in [*r["published"], *r.get("anneal", {}).get("columns", [])]:
            if cid not in ids:
                raise UsageError(f"{where}: unknown column {cid!r} (columns: {', '.join(sorted(ids))})")
        for cid, value in r["published"].items():
            try:
                published_value(value)
            except ValueError:
                raise UsageError(f"{where}: published {cid} must be a number or a bound like \"<= -10\", "
                                 f"got {value!r}") from None
    return Reproduction(
        name=_require(data, "name", origin), title=_require(data, "title", origin), source=_require(data, "source", origin),
        metric=_require(data, "metric", origin), transform=transform,
        lower_is_better=bool(data.get("lower_is_better", True)), tolerance=float(_require(data, "tolerance", origin)),
        unit=data.get("unit", ""), select_on=data.get("select_on", ""), select_direction=direction,
        series_summary=summary,
        protocol=data.get("protocol", {}),
        filled_in=data.get("filled_in", []), differences=data.get("differences", []), training=training,
        lr_grid=[float(x) for x in data.get("grid", {}).get("lr", [training["lr"]])], columns=columns, rows=rows,
        text=text,
    )


def published_value(value: Any) -> tuple[float, str | None]:
    """A published number, or a bound the paper states (``"<= -10"``: "-10 and lower")."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), None
    text = str(value).strip()
    for op in ("<=", ">="):
        if text.startswith(op):
            return float(text[2:]), op
    raise ValueError(value)


@dataclass(frozen=True)
class Planned:
    """A cell of the reproduction and where it sits in the table."""

    row: str
    column: str
    grid: tuple[tuple[str, Any], ...]  # the grid point: (("lr", 1e-3), ("anneal_rate", 1e-4), ...)
    cell: Cell


def plan(rep: Reproduction, *, seeds: int = 2, steps_scale: float = 1.0, lrs: list[float] | None = None,
         rows: list[str] | None = None, columns: list[str] | None = None,
         eval_examples: int | None = None, anneal_rates: list[float] | None = None,
         anneal_every: list[int] | None = None, column_lrs: dict[str, list[float]] | None = None) -> list[Planned]:
    """Every training cell of the reproduction under these run options. ``column_lrs``
    restricts the learning-rate grid of single columns (e.g. to the rates a short pilot
    selected on validation)."""
    if not 1 <= seeds <= MAX_SEEDS:
        raise UsageError(f"--seeds must be between 1 and {MAX_SEEDS:,}, got {seeds:,}")
    if not (math.isfinite(steps_scale) and 0 < steps_scale <= MAX_STEPS_SCALE):
        raise UsageError(f"--steps-scale must be a finite number in (0, {MAX_STEPS_SCALE:g}], got {steps_scale:g}")
    if eval_examples is not None and eval_examples < 1:
        raise UsageError(f"--eval-examples must be >= 1, got {eval_examples}")
    for flag, chosen, valid in (("--row", rows, [r["id"] for r in rep.rows]), ("--column", columns, [c["id"] for c in rep.columns])):
        for x in chosen or []:
            if x not in valid:
                raise UsageError(f"{flag} {x!r} is not in {rep.name} (it has: {', '.join(valid)})")
    grid = rep.lr_grid
    if lrs:
        outside = [lr for lr in lrs if lr not in grid]
        if outside:
            raise UsageError(f"--lr {outside[0]:g} is not in the protocol's grid ({', '.join(f'{x:g}' for x in grid)})")
        grid = [lr for lr in grid if lr in lrs]
    for cid, chosen in (column_lrs or {}).items():
        if cid not in [c["id"] for c in rep.columns]:
            raise UsageError(f"--column-lr: {rep.name} has no column {cid!r}")
        outside = [lr for lr in chosen if lr not in grid]
        if outside:
            raise UsageError(f"--column-lr {cid}={outside[0]:g} is not in the run's grid ({', '.join(f'{x:g}' for x in grid)})")
    steps = max(1, round(rep.training["steps"] * steps_scale))
    if steps > MAX_STEPS:
        raise UsageError(f"--steps-scale {steps_scale:g} makes {steps:,} steps, more than {MAX_STEPS:,}")
    out = []
    for row in rep.rows:
        if rows and row["id"] not in rows:
            continue
        options = dict(row.get("options", {}))
        if eval_examples is not None:
            options["eval_examples"] = eval_examples
        pcls = PROBLEMS[row["problem"]]
        base = {**rep.training, **row.get("training", {})}
        # a shortened run still ends with an evaluation and (if the protocol measures any) a variance
        base.update(steps=steps, eval_every=steps, log_every=min(base["log_every"], steps),
                    variance_every=min(base["variance_every"], steps) if base["variance_every"] <= base["steps"]
                    else base["variance_every"])
        anneal = dict(row.get("anneal", {}))
        for key, chosen in (("rate", anneal_rates), ("every", anneal_every)):
            if chosen and anneal:
                outside = [x for x in chosen if x not in anneal[key]]
                if outside:
                    raise UsageError(f"--anneal-{key} {outside[0]:g} is not in row {row['id']!r}'s grid "
                                     f"({', '.join(f'{x:g}' for x in anneal[key])})")
                anneal[key] = [x for x in anneal[key] if x in chosen]
        lr_points = max(len([lr for lr in grid if lr in (column_lrs or {}).get(c["id"], grid)]) for c in rep.columns)
        single_point = lr_points == 1 and all(len(anneal.get(k, [0])) == 1 for k in ("rate", "every"))
        if single_point and rep.select_on and "eval_splits" in pcls.default_options():
            # one grid point: nothing to select, so only the reported split is evaluated
            options["eval_splits"] = rep.metric.split("_", 1)[0]
        for column in rep.columns:
            if columns and column["id"] not in columns:
                continue
            if column["id"] not in row["published"]:
                continue
            ecls = ESTIMATORS[column["estimator"]]
            hyper = dict(column.get("hyperparameters", {}))
            reason = incompatibility(pcls, ecls, options)
            if reason is None:
                samples, reason = samples_for_budget(ecls, BUDGET, hyper)
                if samples is not None and "samples" in ecls.default_hyperparameters():
                    hyper["samples"] = samples
            points: list[dict[str, Any]] = [{}]
            if column["id"] in anneal.get("columns", []):
                points = [{"anneal_rate": r, "anneal_every": n, "anneal_start": anneal.get("start", 1.0),
                           "temperature_min": anneal.get("min", 0.0)}
                          for r, n in itertools.product(anneal["rate"], anneal["every"])]
            column_grid = [lr for lr in grid if lr in (column_lrs or {}).get(column["id"], grid)]
            tuned = {}
            size = len(column_grid) * len(points)
            if rep.select_on and size > 1:  # the selection split along training, the test bound at the selected point
                tuned = grids.tuned_settings(pcls, options, {"metric": rep.select_on, "direction": rep.select_direction},
                                             size)
            for lr, point in itertools.product(column_grid, points):
                settings = {**base, **point, **tuned, "lr": lr, "budget": BUDGET}
                key = (("lr", lr), *((k, point[k]) for k in ("anneal_rate", "anneal_every") if k in point))
                for seed in range(seeds):
                    variant_of = None if column["id"] == column["estimator"] else column["estimator"]
                    cell = Cell("train", row["problem"], options, column["id"], hyper, seed, settings, reason,
                                variant_of, dict(key))
                    out.append(Planned(row["id"], column["id"], key, cell))
    return out


def suite_for(rep: Reproduction, planned: list[Planned], label: str) -> Suite:
    """The suite record the results store binds: named after the reproduction, its source
    the cells' definitions (so editing published values or notes keeps the results)."""
    source = json.dumps(sorted(p.cell.key for p in planned))
    return Suite(name=label, description=rep.title, seeds=1, budget=BUDGET, gradstats=None, training=rep.training,
                 problems=[], estimators=[], source=source)


def out_label(rep: Reproduction, steps_scale: float) -> str:
    return rep.name if steps_scale == 1 else f"{rep.name}-steps-x{steps_scale:g}"


def _transformed(rep: Reproduction, value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    if rep.transform == "negate":
        return -value
    if rep.transform == "log":
        return math.log(value) if value > 0 else None
    return value


def measured_value(rep: Reproduction, metrics: dict[str, float],
                   series: dict[str, list[tuple[int, float]]]) -> float | None:
    """The cell's measurement on the published scale, or None if it has none. ``series``:
    each logged series of the cell as (step, value) pairs in step order."""
    if not rep.metric.startswith("series:"):
        return _transformed(rep, metrics.get(f"final_{rep.metric}"))
    points = series.get(rep.metric[len("series:"):], [])
    if not points:
        return None
    if rep.series_summary == "last":
        return _transformed(rep, points[-1][1])
    half = points[-1][0] / 2
    values = [v for v in (_transformed(rep, value) for step, value in points if step > half) if v is not None]
    if not values:
        return None
    values.sort()
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


# Running and reporting -------------------------------------------------------------------

@dataclass
class Entry:
    """One (row, column) of the table: published beside measured."""

    row: str
    column: str
    published: float
    values: list[float]  # measured, one per finished seed, at the selected grid point
    selected: dict[str, Any]  # the grid point chosen (empty without a grid)
    status: str  # "measured", "skipped: ...", "not finished (k of n cells)"
    seeds_planned: int = 0
    bound: str | None = None  # "<=" or ">=": the paper states a bound, not a value
    options: dict[str, Any] = field(default_factory=dict)  # the problem options the cells ran with

    @property
    def mean(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None

    def interval(self) -> tuple[float, float] | None:
        """95% Student-t interval of the mean over seeds (None with fewer than 2)."""
        n = len(self.values)
        if n < 2:
            return None
        from scipy import stats

        mean = self.mean
        sd = math.sqrt(sum((v - mean) ** 2 for v in self.values) / (n - 1))
        half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        return mean - half, mean + half


def _tables(out: Path) -> tuple[dict[str, dict], dict[str, dict[str, float]], dict[str, dict[str, list]], dict]:
    """Per cell key: the cell row, its metrics, each series as (step, value) pairs; each run's provenance."""
    from dgbench.store import read_tables

    t = read_tables(out)
    cells = {r["key"]: r for r in t.cells.to_dict("records")}
    metrics: dict[str, dict[str, float]] = {}
    for k, name, value in t.metrics[["cell_key", "name", "value"]].itertuples(index=False):
        metrics.setdefault(k, {})[name] = value
    last: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for k, step, name, value in t.series.sort_values("step")[["cell_key", "step", "name", "value"]].itertuples(index=False):
        last.setdefault(k, {}).setdefault(name, []).append((int(step), value))
    runs = {int(r["run_id"]): json.loads(r["provenance"]) for r in t.runs.to_dict("records")}
    return cells, metrics, last, runs


def entries(rep: Reproduction, planned: list[Planned], out: Path) -> tuple[list[Entry], dict]:
    """The table's entries from the results in ``out``, and the provenance of the runs that
    computed them.

    Per (row, column) the grid point with the best mean ``select_on`` over its finished
    seeds is selected (a grid point counts only once all its seeds finished, unless none
    has); its measured values are the seeds' values of ``metric``."""
    cells, metrics, last, runs = _tables(out)
    used: dict[int, int] = {}  # run id -> reported cells it computed
    by_entry: dict[tuple[str, str], list[Planned]] = {}
    for p in planned:
        by_entry.setdefault((p.row, p.column), []).append(p)
    result = []
    for (rid, cid), ps in by_entry.items():
        row = next(r for r in rep.rows if r["id"] == rid)
        published, bound = published_value(row["published"][cid])
        ran_with = dict(ps[0].cell.options)
        seeds = len({p.cell.seed for p in ps})
        if ps[0].cell.skip_reason:
            result.append(Entry(rid, cid, published, [], {}, f"skipped: {ps[0].cell.skip_reason}", seeds, bound, ran_with))
            continue
        points: dict[tuple, list[Planned]] = {}
        for p in ps:
            points.setdefault(p.grid, []).append(p)

        def finished(group: list[Planned]) -> list[Planned]:
            return [p for p in group if cells.get(p.cell.key, {}).get("status") in FINISHED]

        stored = [p for p in ps if p.cell.key in cells]
        metric = f"final_{rep.select_on}" if rep.select_on and len(points) > 1 else None
        chosen = selection.from_records(
            [(dict(p.grid), cells[p.cell.key]["status"], metrics.get(p.cell.key, {}).get(metric) if metric else None)
             for p in stored], [dict(g) for g in points], seeds, rep.select_direction, allow_partial=True)
        if chosen.selected is None:
            done = sum(len(finished(grp)) for grp in points.values())
            result.append(Entry(rid, cid, published, [], {}, f"not finished ({done} of {len(ps)} cells)", seeds, bound, ran_with))
            continue
        best = next(g for g in points if dict(g) == chosen.selected.point)
        values = [measured_value(rep, metrics.get(p.cell.key, {}), last.get(p.cell.key, {})) for p in finished(points[best])]
        for p in finished(points[best]):
            run_id = int(cells[p.cell.key]["run_id"])
            used[run_id] = used.get(run_id, 0) + 1
        diverged = sum(1 for p in finished(points[best]) if cells[p.cell.key]["status"] == "diverged")
        settled = sum(point.settled for point in chosen.points)
        status = "measured" if settled == len(points) else \
            f"measured; {len(points) - settled} of {len(points)} grid points not finished"
        cut = sum(1 for point in chosen.points if point.pruned)
        if cut:
            status += f"; {cut} of {len(points)} grid points pruned by successive halving"
        if all(v is None for v in values):
            status = f"finished without a value of {rep.metric}"
        if diverged:
            status += f"; {diverged} seed(s) diverged"
        result.append(Entry(rid, cid, published, [v for v in values if v is not None], dict(best), status, seeds, bound, ran_with))
    # The provenance of the run that computed most of the reported cells, and every commit involved.
    provenance = dict(runs[max(used, key=used.get)]) if used else (runs[max(runs)] if runs else {})
    commits = sorted({runs[r].get("git_commit", "unknown") for r in used})
    if len(commits) > 1:
        provenance["git_commit"] = ", ".join(commits) + " (cells computed by several runs)"
    return result, provenance


def run_differences(rep: Reproduction, *, seeds: int, steps_scale: float, lrs: list[float] | None,
                    eval_examples: int | None, columns: list[str] | None, rows: list[str] | None) -> list[str]:
    """How this run departs from the protocol file (beyond its listed differences)."""
    notes = []
    if steps_scale != 1:
        notes.append(f"SHORTENED RUN: {steps_scale:g} x the protocol's {rep.training['steps']} steps; "
                     "this is not a reproduction")
    if lrs and sorted(lrs) != sorted(rep.lr_grid):
        notes.append(f"learning-rate grid restricted to {', '.join(f'{x:g}' for x in sorted(lrs))} "
                     f"(protocol: {', '.join(f'{x:g}' for x in rep.lr_grid)})")
    if eval_examples:
        notes.append(f"evaluation on the first {eval_examples} examples of each split only")
    if rows or columns:
        notes.append("a subset of the table was run: " + "; ".join(
            x for x in (f"rows {', '.join(rows)}" if rows else "", f"columns {', '.join(columns)}" if columns else "") if x))
    if seeds < 2:
        notes.append(f"{seeds} seed: no interval over seeds")
    return notes


def dry_run(name: str, out: str | Path | None = None, *, seeds: int = 2, steps_scale: float = 1.0,
            lrs: list[float] | None = None, rows: list[str] | None = None, columns: list[str] | None = None,
            eval_examples: int | None = None, workers: int = 1, device: str = "cpu", threads: int | None = None,
            anneal_rates: list[float] | None = None, anneal_every: list[int] | None = None,
            column_lrs: dict[str, list[float]] | None = None, prune: str = "none") -> Any:
    """What ``reproduce`` would compute and its estimated time (:func:`dgbench.harness.run.plan`:
    the cells not finished in ``out``, timed from a few steps of each problem)."""
    from dgbench.harness.devices import DeviceUnavailable, resolve_device
    from dgbench.harness.run import check_counts, check_data, dry_plan

    rep = load(name)
    planned = plan(rep, seeds=seeds, steps_scale=steps_scale, lrs=lrs, rows=rows, columns=columns,
                   eval_examples=eval_examples, anneal_rates=anneal_rates, anneal_every=anneal_every,
                   column_lrs=column_lrs)
    check_counts(workers=workers, threads=threads)
    try:
        device = str(resolve_device(device))
    except DeviceUnavailable as err:
        raise UsageError(str(err)) from None
    cells = [p.cell for p in planned]
    check_data(cells)
    out = Path(out or f"results/reproductions/{out_label(rep, steps_scale)}")
    return dry_plan(out_label(rep, steps_scale), cells, out, workers, device, threads, prune=prune)


@dataclass
class ReproductionRun:
    name: str
    out: Path
    cells: int
    counts: dict[str, int]
    report: Path
    entries: list[Entry]


def reproduce(name: str, out: str | Path | None = None, *, seeds: int = 2, steps_scale: float = 1.0,
              lrs: list[float] | None = None, rows: list[str] | None = None, columns: list[str] | None = None,
              eval_examples: int | None = None, workers: int = 1, device: str = "cpu", progress: bool = False,
              in_process: bool = False, threads: int | None = None, report_only: bool = False,
              anneal_rates: list[float] | None = None, anneal_every: list[int] | None = None,
              column_lrs: dict[str, list[float]] | None = None, command: str = "",
              prune: str = "none") -> ReproductionRun:
    """Run reproduction ``name`` into ``out`` (resuming what is there) and write its report
    (``report.md``, ``report.csv``) there. ``report_only``: compute nothing, report what
    is stored (a run still in progress elsewhere, or one that was cut short).
    ``prune="halving"``: grids by successive halving (:mod:`dgbench.harness.halving`), a
    difference from the protocol that the report lists (never the default)."""
    from dgbench.harness.backends import make_backend
    from dgbench.harness.execution import execute
    from dgbench.harness.run import check_data, open_results
    from dgbench.reports import reproduction as render
    from dgbench.store import StoreError

    rep = load(name)
    planned = plan(rep, seeds=seeds, steps_scale=steps_scale, lrs=lrs, rows=rows, columns=columns,
                   eval_examples=eval_examples, anneal_rates=anneal_rates, anneal_every=anneal_every,
                   column_lrs=column_lrs)
    cells = [p.cell for p in planned]
    out = Path(out or f"results/reproductions/{out_label(rep, steps_scale)}")
    counts: dict[str, int] = {}
    if not report_only:
        from dgbench.harness.run import check_counts

        check_counts(workers=workers, threads=threads)
        from dgbench.harness.devices import DeviceUnavailable, resolve_device

        try:
            device = str(resolve_device(device))
        except DeviceUnavailable as err:
            raise UsageError(str(err)) from None
        check_data(cells)
        store, notes = open_results(out, suite_for(rep, planned, out_label(rep, steps_scale)), update_suite=True)
        try:
            backend = make_backend("local", workers=min(workers, max(1, len(cells))), device=device, threads=threads,
                                   in_process=in_process)
            counts = execute(cells, store, backend, name=out_label(rep, steps_scale), device=device,
                             progress=progress, prune=prune)
        except StoreError as err:
            raise UsageError(str(err)) from None
        finally:
            store.close()
    from dgbench.store import NoResults

    try:
        table, provenance = entries(rep, planned, out)
    except NoResults as err:
        raise UsageError(str(err)) from None
    notes = run_differences(rep, seeds=seeds, steps_scale=steps_scale, lrs=lrs, eval_examples=eval_examples,
                            columns=columns, rows=rows)
    if column_lrs:
        notes.append("learning rate per column restricted to: " + ", ".join(
            f"{cid} {'/'.join(f'{x:g}' for x in lrs)}" for cid, lrs in column_lrs.items()))
    if anneal_rates or anneal_every:
        notes.append("temperature-annealing grid restricted to "
                     + "; ".join(x for x in (f"r in {anneal_rates}" if anneal_rates else "",
                                             f"N in {anneal_every}" if anneal_every else "") if x))
    pruned = [e for e in table if "pruned by successive halving" in e.status]
    if pruned:  # from what is stored, whichever command pruned it
        notes.append(f"GRIDS PRUNED: successive halving (--prune halving) stopped grid points early in {len(pruned)} "
                     "entries; the paper trains every grid point to the end, and a slow learner cut at an early "
                     "rung may have been the better choice")
    unfinished = [e for e in table if e.status.startswith("not finished")]
    if unfinished:
        notes.append(f"{len(unfinished)} of {len(table)} entries have no finished cell yet; rerun the command to complete them")
    command = command or f"dgbench reproduce {name}"
    commands = out / "commands.txt"  # every command that ran cells here, for the report's provenance
    if not report_only:
        with commands.open("a") as fh:
            fh.write(command + "\n")
    ran = commands.read_text().splitlines() if commands.exists() else []
    shown = "; ".join(f"`{c}`" for c in dict.fromkeys(ran)) or "(unknown)"
    if report_only:
        shown += f"; report written by `{command}`"
    report = out / "report.md"
    report.write_text(render.markdown(rep, table, notes, provenance, shown))
    (out / "report.csv").write_text(render.csv_text(rep, table))
    return ReproductionRun(rep.name, out, len(cells), counts, report, table)
