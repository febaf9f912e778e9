"""Load a user's estimator from a file or ``module:attr`` and validate it against the contract.

Specs:

* ``path/to/my_estimator.py``: the one ``Estimator`` subclass defined in that file;
* ``path/to/my_estimator.py:MyEstimator``: a named class in a file;
* ``package.module:MyEstimator``: a class in an importable module.

Every way a plugin can be wrong raises :class:`PluginError` with a one-line message
naming the plugin and the problem.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from dgbench.domains import Domain
from dgbench.estimators.base import FAMILY_VALUES, GROUPS, Estimator
from dgbench.estimators.registry import ESTIMATORS, register
from dgbench.nodes import NODE_FAMILIES, get_node

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
PROBE_SEED = 20260421


class PluginError(ValueError):
    """A user estimator could not be loaded or breaks the contract."""


def _load_file(path: Path, spec: str) -> ModuleType:
    if not path.is_file():
        raise PluginError(f"{spec}: no such file {str(path)!r}")
    name = "dgbench_plugin_" + re.sub(r"\W", "_", path.stem)
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise PluginError(f"{spec}: cannot import {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:  # the user's code may raise anything on import
        del sys.modules[name]
        raise PluginError(f"{spec}: importing it failed: {type(err).__name__}: {err}") from err
    return module


def _only_estimator(module: ModuleType, spec: str) -> type:
    found = [
        obj for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Estimator) and obj is not Estimator
        and obj.__module__ == module.__name__
    ]
    if not found:
        raise PluginError(f"{spec}: defines no subclass of estimators.Estimator")
    if len(found) > 1:
        names = ", ".join(sorted(c.__name__ for c in found))
        raise PluginError(f"{spec}: defines several estimators ({names}); name one as {spec}:NAME")
    return found[0]


def load_estimator(spec: str) -> type[Estimator]:
    """Import the estimator named by ``spec`` and validate it; see the module docstring."""
    path_part, _, attr = spec.partition(":") if not Path(spec).is_file() else (spec, "", "")
    if path_part.endswith(".py") or Path(path_part).is_file():
        module = _load_file(Path(path_part), spec)
    elif attr:
        try:
            module = importlib.import_module(path_part)
        except Exception as err:
            raise PluginError(f"{spec}: cannot import module {path_part!r}: {type(err).__name__}: {err}") from err
    else:
        raise PluginError(f"{spec}: expected a registered id, a .py file, or module:attr")
    if not attr:
        return validate_estimator(_only_estimator(module, spec), spec)
    if not hasattr(module, attr):
        raise PluginError(f"{spec}: {path_part!r} has no attribute {attr!r}")
    return validate_estimator(getattr(module, attr), spec)


def _check_declarations(cls: type, spec: str) -> None:
    if not inspect.isclass(cls):
        raise PluginError(f"{spec}: is a {type(cls).__name__}, not a subclass of estimators.Estimator")
    if not issubclass(cls, Estimator):
        raise PluginError(f"{spec}: class {cls.__name__} does not subclass estimators.Estimator")
    if not isinstance(cls.id, str) or not ID_PATTERN.match(cls.id):
        raise PluginError(f"{spec}: id must be a lower-case string of letters, digits and '-', got {cls.id!r}")
    if cls.id in ESTIMATORS and ESTIMATORS[cls.id] is not cls:
        raise PluginError(f"{spec}: id {cls.id!r} is already taken by a built-in estimator")
    if cls.family not in FAMILY_VALUES:
        raise PluginError(f"{spec}: family must be one of {', '.join(map(repr, FAMILY_VALUES))}, got {cls.family!r}")
    if cls.group not in GROUPS:
        raise PluginError(f"{spec}: group must be one of {', '.join(map(repr, GROUPS))}, got {cls.group!r}")
    for flag in ("unbiased", "relaxed", "multi_sample"):
        if not isinstance(getattr(cls, flag), bool):
            raise PluginError(f"{spec}: {flag} must be True or False, got {getattr(cls, flag)!r}")
    eps = cls.evals_per_sample
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, int) or eps < 1):
        raise PluginError(f"{spec}: evals_per_sample must be a positive int (or None), got {eps!r}")
    if isinstance(cls.extra_evals, bool) or not isinstance(cls.extra_evals, int) or cls.extra_evals < 0:
        raise PluginError(f"{spec}: extra_evals must be an int >= 0, got {cls.extra_evals!r}")
    if isinstance(cls.min_samples, bool) or not isinstance(cls.min_samples, int) or cls.min_samples < 1:
        raise PluginError(f"{spec}: min_samples must be an int >= 1, got {cls.min_samples!r}")
    domains = vars(cls).get("hyperparameter_domains", {})
    if not isinstance(domains, dict) or not all(isinstance(d, Domain) for d in domains.values()):
        raise PluginError(f"{spec}: hyperparameter_domains must map names to dgbench.domains values (Integer, Real, ...)")
    if cls.forward is Estimator.forward:
        raise PluginError(f"{spec}: {cls.__name__} does not implement forward(logits, f, *, generator)")


class _GuardedObjective:
    """A quadratic test objective that records how the estimator used it."""

    def __init__(self, node: str, logits: Tensor) -> None:
        gen = torch.Generator().manual_seed(PROBE_SEED + 1)
        shape = logits.shape[:-1] + (logits.shape[-1] // 2,) if node == "gaussian" else logits.shape
        self.target = torch.rand(shape, generator=gen, dtype=logits.dtype)
        self.event_dims = get_node(node).event_dims
        self.discrete = node != "gaussian"  # Gaussian samples are continuous by nature
        self.continuous = False
        self.differentiable = False

    def __call__(self, z: Tensor) -> Tensor:
        if z.requires_grad:
            self.differentiable = True
        if self.discrete and not torch.all((z == 0) | (z == 1)):
            self.continuous = True
        return ((z - self.target) ** 2).sum(tuple(range(-self.event_dims, 0)))


def _probe(cls: type[Estimator], node: str, spec: str) -> None:
    try:
        estimator = cls(node)
    except Exception as err:
        raise PluginError(f"{spec}: constructing {cls.__name__}(node={node!r}) failed: {type(err).__name__}: {err}") from err
    estimator.eval()
    shape = {"bernoulli": (2, 3), "categorical": (2, 3, 4), "gaussian": (2, 6)}[node]
    logits0 = torch.randn(shape, generator=torch.Generator().manual_seed(PROBE_SEED), dtype=torch.float64)

    def run() -> tuple[Tensor, Tensor, _GuardedObjective]:
        logits = logits0.clone().requires_grad_(True)
        f = _GuardedObjective(node, logits)
        try:
            out = estimator(logits, f, generator=torch.Generator().manual_seed(PROBE_SEED))
        except Exception as err:
            raise PluginError(f"{spec}: forward on {node} logits raised {type(err).__name__}: {err}") from err
        if not isinstance(out, Tensor):
            raise PluginError(f"{spec}: forward returned {type(out).__name__}, expected a tensor")
        if out.shape != shape[:1]:
            raise PluginError(
                f"{spec}: forward returned shape {tuple(out.shape)} for {node} logits {shape}; "
                f"expected {shape[:1]} (one value per batch element)"
            )
        if not torch.isfinite(out).all():
            raise PluginError(f"{spec}: forward returned NaN or Inf on {node} logits")
        if not out.requires_grad:
            raise PluginError(f"{spec}: its output has no gradient with respect to the logits")
        (grad,) = torch.autograd.grad(out.sum(), logits, allow_unused=True)
        if grad is None:
            raise PluginError(f"{spec}: its output has no gradient with respect to the logits")
        if not torch.isfinite(grad).all():
            raise PluginError(f"{spec}: its gradient contains NaN or Inf on {node} logits")
        return out.detach(), grad, f

    rng_before = torch.random.get_rng_state()
    out1, grad1, f = run()
    if not torch.equal(rng_before, torch.random.get_rng_state()):
        raise PluginError(f"{spec}: draws from the global RNG; take noise only from the generator argument")
    out2, grad2, _ = run()
    if not (torch.equal(out1, out2) and torch.equal(grad1, grad2)):
        raise PluginError(f"{spec}: not deterministic under the same generator")
    if not cls.relaxed and (f.continuous or f.differentiable):
        what = "evaluated f at non-discrete points" if f.continuous else "differentiated f with respect to z"
        raise PluginError(f"{spec}: declares relaxed=False but {what}")


# Seconds the probes of one plugin may take together (a forward that never returns must
# not hang the driver, where no cell timeout reaches); DGBENCH_PLUGIN_TIMEOUT overrides.
VALIDATION_SECONDS = 60.0


def validation_seconds() -> float:
    text = os.environ.get("DGBENCH_PLUGIN_TIMEOUT")
    try:
        value = float(text) if text else VALIDATION_SECONDS
    except ValueError:
        return VALIDATION_SECONDS
    return value if math.isfinite(value) and value > 0 else VALIDATION_SECONDS


class _ValidationTimeout(BaseException):
    """Raised inside the plugin's code when its validation runs out of time (a
    BaseException, so that the plugin's own ``except Exception`` cannot swallow it)."""


def _within_time_limit(run: Callable[[], None], seconds: float, spec: str) -> None:
    """``run()``, stopped after ``seconds``: by SIGALRM in the main thread (which interrupts
    Python code and blocking calls alike), else by waiting on a daemon thread."""
    message = (f"{spec}: validation did not finish within {seconds:g} s (does forward return?); "
               "set DGBENCH_PLUGIN_TIMEOUT to allow longer")
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        def on_alarm(signum: int, frame: Any) -> None:
            raise _ValidationTimeout()

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            run()
        except _ValidationTimeout:
            raise PluginError(message) from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        return
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            run()
            outcome.append(None)
        except BaseException as err:  # handed to the caller's thread
            outcome.append(err)

    worker = threading.Thread(target=target, daemon=True, name=f"validate {spec}")
    worker.start()
    worker.join(seconds)
    if worker.is_alive() or not outcome:
        raise PluginError(message)
    if outcome[0] is not None:
        raise outcome[0]


def validate_estimator(obj: object, spec: str | None = None) -> type[Estimator]:
    """Check declarations, then probe forward on each supported family (within
    :func:`validation_seconds`); return the class."""
    spec = spec or getattr(obj, "__name__", repr(obj))
    _check_declarations(obj, spec)  # type: ignore[arg-type]
    assert inspect.isclass(obj) and issubclass(obj, Estimator)
    cls = obj

    def probes() -> None:
        for node in NODE_FAMILIES:
            if cls.supports(node):
                _probe(cls, node, spec)

    _within_time_limit(probes, validation_seconds(), spec)
    return obj


def resolve_estimator(spec: str) -> type[Estimator]:
    """A registered id, or a plugin spec loaded with :func:`load_estimator`."""
    if spec in ESTIMATORS:
        return ESTIMATORS[spec]
    if ".py" in spec or ":" in spec or Path(spec).exists():
        return load_estimator(spec)
    raise PluginError(f"unknown estimator {spec!r}; known: {', '.join(ESTIMATORS)} (or a .py file / module:attr)")


def register_plugins(specs: tuple[str, ...]) -> None:
    """Load, validate and register plugin estimators by spec (each worker process loads
    them itself, since classes from files do not pickle by reference)."""
    for spec in specs:
        register(resolve_estimator(spec))
