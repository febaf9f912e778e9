"""Suites: the benchmark matrix as data (TOML), validated on load, expanded into cells.

A suite file names problems (with options), estimators (with hyperparameters), seeds,
the per-step budget and the settings of the two cell kinds::

    name = "smoke"
    seeds = 1
    cell_timeout = 3600 # optional: seconds one cell may run before it is stopped (local backend)
    [budget]            # exactly one of: samples = N (per estimate), evals = N (f evaluations)
    evals = 2
    [gradstats]         # cell kind 1: gradient statistics at the initial parameters
    replicas = 1000
    [training]          # cell kind 2: a training run
    steps = 100
    optimizer = "adam"  # or "sgd"
    lr = 0.05
    # optional protocol keys (dgbench.harness.schedules): momentum = 0.9 (sgd),
    # lr_decay = 0.9, lr_decay_every = 1000, anneal_rate = 3e-5, anneal_every = 1000,
    # anneal_start = 1.0, temperature_min = 0.5 (relaxed estimators' temperature)
    log_every = 1       # stride at which the training objective is stored
    eval_every = 50
    variance_every = 50
    variance_replicas = 200
    [[problems]]
    id = "bernoulli-toy"
    options = { dim = 4 }
    training = { lr = 0.01 }   # optional per-problem overrides of [training] / [gradstats]
    seeds = 8                  # optional: this configuration's seeds (cheap toys can afford more)
    [estimators]
    include = "all"     # or a list of ids
    hyperparameters = { gumbel-softmax = { temperature = 0.5 } }
    # more configurations of one estimator, each under an id of its own (the budget sets samples):
    variants = { sf-ema = { estimator = "score-function", baseline = "ema" } }

Compatibility of each (problem, estimator) pair is decided from declared capabilities;
incompatible pairs become ``skipped`` cells with their reason, never silent omissions.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from dgbench.estimators.base import Estimator
from dgbench.estimators.registry import ESTIMATORS
from dgbench.harness import grids
from dgbench.harness.schedules import PROTOCOL_DEFAULTS
from dgbench.harness.schedules import check as check_protocol
from dgbench.problems.base import Problem
from dgbench.problems.registry import PROBLEMS

SUITE_DIR = resources.files("dgbench.harness") / "suites"
KINDS = ("gradstats", "train")


class SuiteError(ValueError):
    """A suite file or selection that cannot be run."""


@dataclass(frozen=True)
class Cell:
    """One unit of work: a (kind, problem, estimator, seed) with everything it needs."""

    kind: str
    problem: str
    options: dict[str, Any]
    estimator: str
    hyperparameters: dict[str, Any]
    seed: int
    settings: dict[str, Any]
    skip_reason: str | None = None
    variant_of: str | None = None  # ``estimator`` is a suite variant of this registered estimator
    # The cell's point of the suite's grid ({}: no grid). A label only: its values are in
    # ``settings`` and ``hyperparameters`` already, so it is not part of the key.
    grid: dict[str, Any] = field(default_factory=dict)
    # Successive halving's rung (dgbench.harness.halving): train to this step, evaluate, keep
    # a checkpoint and pause. An instruction for this run, not part of the key.
    stop_at: int | None = None

    @property
    def estimator_class(self) -> type[Estimator]:
        return ESTIMATORS[self.variant_of or self.estimator]

    @property
    def key(self) -> str:
        """Stable identity of the cell: a hash of everything that defines its result."""
        parts = [self.kind, self.problem, self.options, self.estimator, self.hyperparameters, self.seed, self.settings]
        if self.variant_of:
            parts.append({"variant_of": self.variant_of})
        blob = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass
class Suite:
    name: str
    description: str
    seeds: int
    budget: dict[str, int]
    gradstats: dict[str, Any] | None
    training: dict[str, Any] | None
    problems: list[dict[str, Any]]
    estimators: list[str]
    hyperparameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    variants: dict[str, str] = field(default_factory=dict)  # variant id -> the registered estimator it configures
    source: str = ""
    cell_timeout: float | None = None  # seconds a cell may run (local backend); None: the default
    grid: dict[str, list] = field(default_factory=dict)  # axis -> values (dgbench.harness.grids)
    estimator_grids: dict[str, dict[str, list]] = field(default_factory=dict)  # per estimator: axes it replaces
    select_on: str | None = None  # None: each problem's declared selection metric
    select_direction: str | None = None  # None: the direction of the declared score

    def problem_grid(self, spec: dict[str, Any], estimator: str) -> dict[str, list]:
        """The grid axes of one (problem entry, estimator)."""
        return grids.resolve(self.grid, spec.get("grid"), self.estimator_grids.get(estimator))

    def selection(self, spec: dict[str, Any]) -> dict[str, str]:
        """``{"metric", "direction"}`` that selects grid points of a problem entry."""
        return grids.selection_spec(PROBLEMS[spec["id"]], spec.get("select_on", self.select_on),
                                    spec.get("select_direction", self.select_direction), spec["id"])

    @property
    def tuned(self) -> bool:
        """Whether any (problem, estimator) has more than one grid point."""
        return any(grids.size(self.problem_grid(spec, eid)) > 1 for spec in self.problems for eid in self.estimators)

    @property
    def digest(self) -> str:
        """Hash of the suite definition, to detect a changed suite on resume."""
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]


TRAINING_DEFAULTS = {
    "steps": 100, "optimizer": "adam", "lr": 0.05, "log_every": 1,
    "eval_every": 50, "variance_every": 50, "variance_replicas": 200,
}


# Bounds on what would exhaust memory or never finish, checked when a suite loads: a
# suite expands into one cell object per (problem, estimator, seed, kind), and a
# gradient-statistics cell of R replicas costs R estimates (memory O(P), time O(R)).
MAX_SEEDS = 10_000
MAX_REPLICAS = 100_000_000
MAX_CELLS = 1_000_000
MAX_STEPS = 100_000_000


def _positive_int(table: dict, key: str, where: str, minimum: int = 1, maximum: int | None = None) -> int:
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SuiteError(f"{where}.{key} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise SuiteError(f"{where}.{key} must be at most {maximum:,}, got {value:,}")
    return value


def positive_seconds(value: Any, what: str) -> float:
    """A finite positive number of seconds, or :class:`SuiteError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SuiteError(f"{what} must be a finite positive number of seconds, got {value!r}")
    return float(value)


def _check_keys(table: Any, allowed: set[str], where: str) -> dict:
    if not isinstance(table, dict):
        raise SuiteError(f"{where} must be a table, got {type(table).__name__}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SuiteError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    return table


def _check_gradstats(table: Any, where: str) -> dict:
    _check_keys(table, {"replicas"}, where)
    _positive_int(table, "replicas", where, minimum=2, maximum=MAX_REPLICAS)
    return table


def _check_training(table: Any, where: str) -> dict:
    _check_keys(table, set(TRAINING_DEFAULTS) | set(PROTOCOL_DEFAULTS), where)
    _positive_int(table, "steps", where, maximum=MAX_STEPS)
    for key in ("log_every", "eval_every", "variance_every"):  # strides: a huge one means "never"
        _positive_int(table, key, where)
    _positive_int(table, "variance_replicas", where, minimum=2, maximum=MAX_REPLICAS)
    if table["optimizer"] not in ("adam", "sgd"):
        raise SuiteError(f"{where}.optimizer must be 'adam' or 'sgd', got {table['optimizer']!r}")
    lr = table["lr"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise SuiteError(f"{where}.lr must be a finite positive number, got {lr!r}")
    errors = check_protocol(table, where)
    if errors:
        raise SuiteError(errors[0])
    return table


def _check_variants(table: Any, where: str) -> dict[str, dict[str, Any]]:
    """``{new id: {estimator = registered id, hyperparameter = value, ...}}``."""
    _check_keys(table, set(table) if isinstance(table, dict) else set(), where)
    for vid, spec in table.items():
        if vid in ESTIMATORS:
            raise SuiteError(f"{where}.{vid}: a variant needs an id of its own, not a registered estimator's")
        if not isinstance(spec, dict) or spec.get("estimator") not in ESTIMATORS:
            got = spec.get("estimator") if isinstance(spec, dict) else spec
            raise SuiteError(f"{where}.{vid}.estimator: unknown estimator {got!r} (valid: {', '.join(ESTIMATORS)})")
        cls = ESTIMATORS[spec["estimator"]]
        _check_keys(spec, {"estimator", *cls.default_hyperparameters()}, f"{where}.{vid}")
        _check_declared(cls.check_hyperparameters({k: v for k, v in spec.items() if k != "estimator"}, ""),
                        f"{where}.{vid}")
        try:  # the constructor's own checks, on a node it supports
            cls("bernoulli" if cls.supports("bernoulli") else "categorical",
                **{k: v for k, v in spec.items() if k != "estimator"})
        except (TypeError, ValueError) as err:
            raise SuiteError(f"{where}.{vid}: {err}") from None
    return table


def _check_declared(errors: list[str], where: str) -> None:
    if errors:
        raise SuiteError(f"{where}: {errors[0]}")


def _check_duplicates(items: list[Any], what: str, where: str) -> None:
    """Refuse an entry listed twice: it would be computed twice and counted twice."""
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        key = json.dumps(item, sort_keys=True, default=str)
        if key in seen:
            raise SuiteError(f"{where}: {what} {i} repeats {what} {seen[key]} ({item}); list each once")
        seen[key] = i


def parse_suite(text: str, origin: str) -> Suite:
    """Validate a suite's TOML text; every error names the offending key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SuiteError(f"{origin}: not valid TOML: {err}") from None
    _check_keys(data, {"name", "description", "seeds", "budget", "gradstats", "training", "problems", "estimators",
                       "cell_timeout", "grid", "select_on", "select_direction"}, origin)
    for key in ("name", "seeds", "budget", "problems", "estimators"):
        if key not in data:
            raise SuiteError(f"{origin}: missing key {key!r}")
    seeds = _positive_int(data, "seeds", origin, maximum=MAX_SEEDS)
    cell_timeout = data.get("cell_timeout")
    if cell_timeout is not None:
        positive_seconds(cell_timeout, f"{origin}.cell_timeout")
    budget = _check_keys(data["budget"], {"samples", "evals"}, f"{origin}: budget")
    if len(budget) != 1:
        raise SuiteError(f"{origin}: budget needs exactly one of 'samples' or 'evals'")
    for key in budget:
        _positive_int(budget, key, f"{origin}: budget")

    gradstats = data.get("gradstats")
    if gradstats is not None:
        gradstats = _check_gradstats(gradstats, f"{origin}: gradstats")
    training = data.get("training")
    if training is not None:
        training = _check_training({**TRAINING_DEFAULTS, **training}, f"{origin}: training")
    if gradstats is None and training is None:
        raise SuiteError(f"{origin}: needs a [gradstats] or a [training] table (or both)")

    problems = data["problems"]
    if not isinstance(problems, list) or not problems:
        raise SuiteError(f"{origin}: problems must be a non-empty array of tables")
    for i, spec in enumerate(problems):
        where = f"{origin}: problems[{i}]"
        _check_keys(spec, {"id", "options", "seeds", "gradstats", "training", "grid", "select_on", "select_direction"},
                    where)
        if "seeds" in spec:  # cheap configurations (toys) may run more seeds than the suite's
            _positive_int(spec, "seeds", where, maximum=MAX_SEEDS)
        if spec.get("id") not in PROBLEMS:
            raise SuiteError(f"{where}.id: unknown problem {spec.get('id')!r} (valid: {', '.join(PROBLEMS)})")
        options = _check_keys(spec.get("options", {}), set(PROBLEMS[spec["id"]].default_options()), f"{where}.options")
        _check_declared(PROBLEMS[spec["id"]].check_options(options, ""), f"{where}.options")
        spec["options"] = options
        for kind, base, check in (("gradstats", gradstats, _check_gradstats), ("training", training, _check_training)):
            if kind in spec:
                if base is None:
                    raise SuiteError(f"{where}.{kind}: the suite has no [{kind}] table to override")
                allowed = set(base) | (set(PROTOCOL_DEFAULTS) if kind == "training" else set())
                check({**base, **_check_keys(spec[kind], allowed, f"{where}.{kind}")}, f"{where}.{kind}")

    est = _check_keys(data["estimators"], {"include", "hyperparameters", "variants", "grid"}, f"{origin}: estimators")
    include = est.get("include", "all")
    ids = [e for e, cls in ESTIMATORS.items() if cls.include_in_all] if include == "all" else include
    if not isinstance(ids, list) or (not ids and not est.get("variants")):
        raise SuiteError(f"{origin}: estimators.include must be \"all\" or a non-empty list of ids")
    _check_duplicates([{"id": p["id"], "options": p["options"]} for p in problems], "problems entry",
                      f"{origin}: problems")
    if isinstance(ids, list):
        _check_duplicates(ids, "entry", f"{origin}: estimators.include")
    for eid in ids:
        if eid not in ESTIMATORS:
            raise SuiteError(f"{origin}: estimators.include: unknown estimator {eid!r} (valid: {', '.join(ESTIMATORS)})")
    hyper = _check_keys(est.get("hyperparameters", {}), set(ESTIMATORS), f"{origin}: estimators.hyperparameters")
    for eid, values in hyper.items():
        _check_keys(values, set(ESTIMATORS[eid].default_hyperparameters()), f"{origin}: estimators.hyperparameters.{eid}")
        _check_declared(ESTIMATORS[eid].check_hyperparameters(values, ""), f"{origin}: estimators.hyperparameters.{eid}")
    variants = _check_variants(est.get("variants", {}), f"{origin}: estimators.variants")
    ids = ids + [v for v in variants if v not in ids]
    hyper = {**hyper, **{v: {k: x for k, x in spec.items() if k != "estimator"} for v, spec in variants.items()}}

    suite = Suite(
        name=str(data["name"]), description=str(data.get("description", "")), seeds=seeds, budget=budget,
        gradstats=gradstats, training=training, problems=problems, estimators=ids, hyperparameters=hyper,
        variants={v: spec["estimator"] for v, spec in variants.items()}, source=text, cell_timeout=None if cell_timeout is None else float(cell_timeout),
    )
    _check_grids(suite, data, origin)
    return suite


def _check_grids(suite: Suite, data: dict[str, Any], origin: str) -> None:
    """Parse and check ``[grid]``, the problem entries' and estimators' grids and the
    selection keys into ``suite``; every point's training settings must be valid."""
    classes = [ESTIMATORS[suite.variants.get(e, e)] for e in suite.estimators]
    try:
        suite.grid = grids.check_grid(data.get("grid", {}), f"{origin}: grid", classes)
        for i, spec in enumerate(suite.problems):
            if "grid" in spec:
                grids.check_grid(spec["grid"], f"{origin}: problems[{i}].grid", classes)
        own = _check_keys(data["estimators"].get("grid", {}), set(suite.estimators), f"{origin}: estimators.grid")
        for eid, table in own.items():
            grids.check_grid(table, f"{origin}: estimators.grid.{eid}", [ESTIMATORS[suite.variants.get(eid, eid)]])
        suite.estimator_grids = own
        for key in ("select_on", "select_direction"):
            if key in data and not isinstance(data[key], str):
                raise SuiteError(f"{origin}.{key} must be a string, got {data[key]!r}")
        suite.select_on, suite.select_direction = data.get("select_on"), data.get("select_direction")
        if not any([suite.grid, suite.estimator_grids, *(spec.get("grid") for spec in suite.problems)]):
            return
        if suite.training is None:
            raise SuiteError(f"{origin}: a grid needs a [training] table (grid points are selected on a training "
                             "cell's evaluation)")
        for i, spec in enumerate(suite.problems):
            suite.selection(spec)  # raises if its direction cannot be told
            base = {**suite.training, **spec.get("training", {})}
            for eid in suite.estimators:
                axes = suite.problem_grid(spec, eid)
                if grids.size(axes) > grids.MAX_GRID_POINTS:
                    raise SuiteError(f"{origin}: problems[{i}] x {eid}: {grids.size(axes):,} grid points, more than "
                                     f"{grids.MAX_GRID_POINTS:,}")
                training_axes = {k: v for k, v in axes.items() if k in grids.TRAINING_AXES}
                for point in grids.points(training_axes, ESTIMATORS[suite.variants.get(eid, eid)]):
                    _check_training({**base, **point}, f"{origin}: problems[{i}] x {eid} at grid point {point}")
    except grids.GridError as err:
        raise SuiteError(str(err)) from None


def available_suites() -> list[str]:
    return sorted(p.name[: -len(".toml")] for p in SUITE_DIR.iterdir() if p.name.endswith(".toml"))


def load_suite(name_or_path: str) -> Suite:
    """A shipped suite by name (``smoke``, ``quick``, ``full``) or a TOML file path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        return parse_suite(path.read_text(), str(path))
    if name_or_path in available_suites():
        return parse_suite((SUITE_DIR / f"{name_or_path}.toml").read_text(), name_or_path)
    raise SuiteError(f"unknown suite {name_or_path!r} (valid: {', '.join(available_suites())}, or a .toml file)")


def samples_for_budget(cls: type[Estimator], budget: dict[str, int],
                       hyperparameters: dict[str, Any] | None = None) -> tuple[int | None, str | None]:
    """Samples per estimate under the budget, or None with the reason it cannot be met."""
    if cls.evals_per_sample is None:  # `exact`: an oracle, outside any budget
        return None, None
    if cls.evals_scale_with_event:  # its cost depends on the node: run its default, report its cost
        return None, None
    if "samples" in budget:
        samples = budget["samples"]
    else:
        samples = (budget["evals"] - cls.extra_evals) // cls.evals_per_sample
    if not cls.multi_sample:
        samples = min(samples, 1)
    least = cls.min_samples_for(hyperparameters or {})
    if samples < least:
        return None, f"budget {budget} allows {samples} sample(s); the estimator needs at least {least}"
    return samples, None


SEQUENTIAL_REFUSAL = ("needs factorised units; the problem's node is autoregressive, each unit depending on "
                      "the units before it")


def incompatibility(pcls: type[Problem], ecls: type[Estimator], options: dict[str, Any]) -> str | None:
    """Why ``ecls`` cannot run on ``pcls`` with these options (None: it can), from declared
    capabilities only; ``dgbench run`` records the reason as a skipped cell, ``gradcheck``
    refuses with it."""
    if not ecls.supports(pcls.family):
        if pcls.family == "gaussian":
            return f"discrete-only estimator (family {ecls.family!r}); the problem's latents are Gaussian"
        return f"estimator family {ecls.family!r} does not cover the {pcls.family} problem"
    if ecls.relaxed and not pcls.differentiable:
        return "relaxed estimator, but the problem's objective is not differentiable in z"
    if pcls.sequential and not ecls.sequential:
        return SEQUENTIAL_REFUSAL
    if ecls.multi_sample_bound:
        return pcls.multi_sample_bound_refusal(options)
    return None


def expand(suite: Suite, problems: list[str] | None = None, estimators: list[str] | None = None,
           seeds: int | None = None) -> list[Cell]:
    """Every cell of the suite (optionally restricted), incompatible ones marked skipped."""
    for pid in problems or []:
        if pid not in {p["id"] for p in suite.problems}:
            raise SuiteError(f"problem {pid!r} is not in suite {suite.name!r} (it has: {', '.join(p['id'] for p in suite.problems)})")
    for eid in estimators or []:
        if eid not in suite.estimators:
            raise SuiteError(f"estimator {eid!r} is not in suite {suite.name!r} (it has: {', '.join(suite.estimators)})")
    if seeds is not None and not 1 <= seeds <= MAX_SEEDS:
        raise SuiteError(f"--seeds must be between 1 and {MAX_SEEDS:,}, got {seeds:,}")
    kinds_per_cell = (suite.gradstats is not None) + (suite.training is not None)
    widest = max((grids.size(suite.problem_grid(spec, eid)) for spec in suite.problems for eid in suite.estimators),
                 default=1)
    most = max([suite.seeds] + [spec.get("seeds", suite.seeds) for spec in suite.problems])
    count = (len(problems or suite.problems) * len(estimators or suite.estimators) * (seeds or most)
             * kinds_per_cell * widest)
    if count > MAX_CELLS:
        raise SuiteError(f"the selection expands into {count:,} cells, more than the {MAX_CELLS:,} one run can "
                         "hold; use fewer seeds, problems, estimators or grid points")
    cells = []
    for spec in suite.problems:
        if problems and spec["id"] not in problems:
            continue
        pcls = PROBLEMS[spec["id"]]
        kinds = [(kind, {**base, **spec.get(table, {})})
                 for kind, table, base in (("gradstats", "gradstats", suite.gradstats), ("train", "training", suite.training))
                 if base is not None]
        for eid in suite.estimators:
            if estimators and eid not in estimators:
                continue
            base = suite.variants.get(eid)
            ecls = ESTIMATORS[base or eid]
            incompatible = incompatibility(pcls, ecls, spec["options"])
            measured: set[str] = set()  # gradient statistics: once per hyperparameter point, not per lr
            axes = suite.problem_grid(spec, eid)
            size = len(grids.points(axes, ecls))
            tuned = grids.tuned_settings(pcls, spec["options"], suite.selection(spec), size) if size > 1 else {}
            for point in grids.points(axes, ecls):
                training_point, hyper_point = grids.split(point)
                hyper = {**suite.hyperparameters.get(eid, {}), **hyper_point}
                reason = incompatible
                if reason is None and ecls.multi_sample_bound:
                    hyper["samples"] = pcls.bound_size(spec["options"])
                elif reason is None:
                    samples, reason = samples_for_budget(ecls, suite.budget, hyper)
                    if samples is not None and "samples" in ecls.default_hyperparameters():
                        hyper["samples"] = samples
                for kind, settings in kinds:
                    if kind == "gradstats":
                        label = json.dumps(hyper_point, sort_keys=True, default=str)
                        if label in measured:
                            continue
                        measured.add(label)
                    cell_point = hyper_point if kind == "gradstats" else point
                    cell_settings = {**settings, **({**training_point, **tuned} if kind == "train" else {}),
                                     "budget": suite.budget}
                    why = reason
                    if why is None and kind == "gradstats" and ecls.evals_per_sample is None:
                        why = "deterministic reference: zero variance, its gradient is the exact one"
                    for seed in range(seeds or spec.get("seeds", suite.seeds)):
                        cells.append(Cell(kind, spec["id"], dict(spec["options"]), eid, dict(hyper), seed,
                                          cell_settings, why, base, dict(cell_point)))
    return cells
