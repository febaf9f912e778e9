"""dgbench: a benchmark of gradient estimators for discrete (Bernoulli and categorical)
random variables, on PyTorch.

The public API; the ``dgbench`` command is a thin layer over it::

    import dgbench

    r = dgbench.gradcheck("bernoulli-toy", "disarm", replicas=1000, seed=0)
    r.variance_mean, r.bias_z_max, r.exact_source, r.as_dict()

    summary = dgbench.run("smoke", out="results/smoke")   # resumes; summary.counts by status
    frames = dgbench.results("results/smoke")               # pandas: .cells, .metrics, .series
    paths = dgbench.report("results/smoke")                 # index.html, summary.*, figures

    class MyEstimator(dgbench.Estimator): ...               # see README, "Adding an estimator"
    dgbench.register(MyEstimator)                           # then usable by id everywhere

The subpackages ``dgbench.estimators``, ``dgbench.problems``, ``dgbench.harness`` and
``dgbench.reports`` hold the rest. Bad input raises :class:`UsageError` with a one-line
message.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgbench.errors import Interrupted, NotApplicable, UsageError

if TYPE_CHECKING:
    from dgbench.estimators.base import Estimator, score_function
    from dgbench.estimators.registry import ESTIMATORS, register
    from dgbench.harness.gradcheck import GradcheckResult
    from dgbench.harness.run import RunSummary
    from dgbench.problems.base import Problem, Score
    from dgbench.problems.registry import PROBLEMS
    from dgbench.reports.results import Results

__version__ = metadata.version("dgbench")
__all__ = ["ESTIMATORS", "PROBLEMS", "Estimator", "Interrupted", "NotApplicable", "Problem", "Score", "UsageError", "__version__",
           "gradcheck", "register", "report", "results", "run", "score_function"]


# Loaded on first use (PEP 562), so that `import dgbench` and `dgbench --help` do not pay
# for torch and the registries until something needs them.
_LAZY = {"Estimator": "dgbench.estimators.base", "score_function": "dgbench.estimators.base",
         "ESTIMATORS": "dgbench.estimators.registry", "register": "dgbench.estimators.registry",
         "Problem": "dgbench.problems.base", "Score": "dgbench.problems.base",
         "PROBLEMS": "dgbench.problems.registry"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dgbench' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def gradcheck(problem: str, estimator: str | type[Estimator], *, replicas: int = 10000, seed: int = 0,
              options: dict[str, Any] | None = None, hparams: dict[str, Any] | None = None, device: str = "cpu",
              dtype: str = "float64") -> GradcheckResult:
    """Gradient statistics of ``estimator`` (an id, a class, ``FILE.py[:Class]`` or
    ``module:attr``) on ``problem`` at its initial parameters: bias (norm and largest
    |bias|/se), variance, MSE, cosine, SNR, f-evaluations and seconds per estimate."""
    from dgbench.harness.gradcheck import gradcheck as _gradcheck

    if isinstance(estimator, type):
        from dgbench.estimators.registry import register

        register(estimator)
        estimator = estimator.id
    return _gradcheck(problem, estimator, replicas=replicas, seed=seed, options=options, hparams=hparams,
                      device=device, dtype=dtype)


def run(suite: str, out: str | Path | None = None, **kwargs: Any) -> RunSummary:
    """Run a suite (``smoke``, ``quick``, ``full`` or a TOML path) into ``out``, resuming;
    keywords as :func:`dgbench.harness.run.run` (problems, estimators, seeds, workers,
    device, backend, scheduler, retries, progress)."""
    from dgbench.harness.run import run as _run

    return _run(suite, out, **kwargs)


def results(directory: str | Path) -> Results:
    """A results directory as pandas DataFrames: ``cells``, ``metrics``, ``series`` (long
    tables), ``runs``, and the declarations of its problems and estimators."""
    from dgbench.reports.results import load

    return load(directory)


def report(directory: str | Path, formats: list[str] | None = None, out: str | Path | None = None) -> list[Path]:
    """Write the report of a results directory (default into ``DIRECTORY/report``); the paths."""
    from dgbench.reports.build import build_report

    return build_report(directory, formats, out)
