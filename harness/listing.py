"""What ``dgbench list`` shows, from the registries' declarations only: rows for the
terminal, and the Markdown tables of the README (a test keeps the README's copies current)."""

from __future__ import annotations

from typing import Any

from dgbench.estimators.base import Estimator
from dgbench.estimators.registry import ESTIMATORS
from dgbench.problems.registry import PROBLEMS


def evals_text(cls: type[Estimator]) -> str:
    """f-evaluations per estimate, from the declared costs."""
    if cls.evals_per_sample is None:
        return "all states (reference)"
    if cls.evals_scale_with_event:
        return "S × units × values"
    if cls.multi_sample_bound:
        return "k (the bound's samples)"
    per = "S" if cls.evals_per_sample == 1 else f"{cls.evals_per_sample} × S"
    return per + (f" + {cls.extra_evals}" if cls.extra_evals else "")


def defaults_text(cls: type[Estimator]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cls.default_hyperparameters().items() if v is not None)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def estimator_markdown() -> str:
    lines = ["| id | group | family | unbiased | relaxed | autoregressive nodes | f evals per estimate | defaults | paper |",
             "|---|---|---|---|---|---|---|---|---|"]
    for eid, cls in ESTIMATORS.items():
        lines.append(f"| `{eid}` | {cls.group} | {cls.family} | {_yes(cls.unbiased)} | {_yes(cls.relaxed)} | "
                     f"{_yes(cls.sequential)} | {evals_text(cls)} | {defaults_text(cls)} | {cls.paper} |")
    return "\n".join(lines)


def family_text(cls: Any) -> str:
    """A problem's node family, marked where the node is autoregressive."""
    return f"{cls.family}, autoregressive" if cls.sequential else cls.family


def problem_markdown() -> str:
    lines = ["| id | family | true score (ranked on the first) | model and data |", "|---|---|---|---|"]
    for pid, cls in PROBLEMS.items():
        scores = "; ".join(f"{s.label}, {'higher' if s.higher_is_better else 'lower'} is better"
                           for s in cls.declared_scores())
        lines.append(f"| `{pid}` | {family_text(cls)} | {scores} | {cls.description} |")
    return "\n".join(lines)


def terminal_rows(what: str) -> list[list[Any]]:
    """Header and rows of ``dgbench list estimators|problems``."""
    if what == "estimators":
        rows = [["id", "group", "family", "unbiased", "relaxed", "f evals", "paper"]]
        rows += [[eid, cls.group, cls.family, str(cls.unbiased), str(cls.relaxed), evals_text(cls), cls.paper]
                 for eid, cls in ESTIMATORS.items()]
        return rows
    rows = [["id", "family", "description"]]
    rows += [[pid, family_text(cls), cls.description] for pid, cls in PROBLEMS.items()]
    return rows
