"""Declared domains of problem options and estimator hyperparameters, and the one check
that every entry point (suites, reproductions, ``gradcheck``, ``compare``) runs on them.

A problem declares ``option_domains`` and an estimator ``hyperparameter_domains``: a
mapping from the name of a constructor argument to a :class:`Domain`. The check refuses
unknown names, values of the wrong type, non-finite numbers and values out of range with
one message that names the key, before any cell is written::

    option_domains = {"dim": Integer(1), "target": Real(0.0, 1.0)}
    hyperparameter_domains = {"temperature": Real(0.0, low_open=True)}

Arguments without a declaration are checked by the type of their default (a bool stays a
bool, an int an int, a float a finite real, a str a str); the generic tests require a
declaration for every numeric and text argument of every registered class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class Domain:
    """The values one argument accepts; :meth:`problem` says why a value is outside."""

    allow_none: bool = False

    def problem(self, value: Any) -> str | None:  # pragma: no cover - every domain overrides it
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover
        raise NotImplementedError


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Integer(Domain):
    """An int in ``[low, high]`` (``high`` None: unbounded above)."""

    low: int | None = None
    high: int | None = None
    allow_none: bool = False

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer, got {value!r}"
        if self.low is not None and value < self.low:
            return f"must be >= {self.low}, got {value}"
        if self.high is not None and value > self.high:
            return f"must be <= {self.high}, got {value}"
        return None

    def describe(self) -> str:
        low = "" if self.low is None else f"{self.low} <= "
        high = "" if self.high is None else f" <= {self.high}"
        return f"integer {low}n{high}".replace("integer n", "integer")


@dataclass(frozen=True)
class Real(Domain):
    """A finite real number in the interval from ``low`` to ``high`` (each end closed
    unless ``*_open``; None: unbounded on that side)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    allow_none: bool = False

    def problem(self, value: Any) -> str | None:
        if not _is_number(value):
            return f"expected a number, got {value!r}"
        if not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'>' if self.low_open else '>='} {self.low:g}, got {value:g}"
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return f"must be {'<' if self.high_open else '<='} {self.high:g}, got {value:g}"
        return None

    def describe(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"real in {'(' if self.low_open or self.low is None else '['}{low}, {high}" \
               f"{')' if self.high_open or self.high is None else ']'}"


@dataclass(frozen=True)
class Choice(Domain):
    """One of a fixed set of values."""

    values: tuple[Any, ...]
    allow_none: bool = False

    def problem(self, value: Any) -> str | None:
        if value not in self.values or isinstance(value, bool) != any(isinstance(v, bool) for v in self.values):
            return f"must be one of {', '.join(map(repr, self.values))}, got {value!r}"
        return None

    def describe(self) -> str:
        return "one of " + ", ".join(map(repr, self.values))


@dataclass(frozen=True)
class IntegerList(Domain):
    """Comma-separated integers, each >= ``low``, as text (``"200,200"``; ``""`` when
    ``allow_empty``): layer widths."""

    low: int = 1
    allow_empty: bool = True
    allow_none: bool = False

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return f"expected comma-separated integers as text, got {value!r}"
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts and not self.allow_empty:
            return "needs at least one integer"
        for part in parts:
            try:
                number = int(part)
            except ValueError:
                return f"expected comma-separated integers, got {value!r}"
            if number < self.low:
                return f"each entry must be >= {self.low}, got {number}"
        return None

    def describe(self) -> str:
        return f"comma-separated integers >= {self.low}"


@dataclass(frozen=True)
class SubsetOf(Domain):
    """A comma-separated, non-empty selection of ``values`` as text (``"valid,test"``)."""

    values: tuple[str, ...]
    allow_none: bool = False

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return f"expected comma-separated names as text, got {value!r}"
        parts = [p.strip() for p in value.split(",") if p.strip()]
        unknown = [p for p in parts if p not in self.values]
        if unknown or not parts:
            return f"must be a comma-separated selection of {', '.join(self.values)}, got {value!r}"
        return None

    def describe(self) -> str:
        return "comma-separated selection of " + ", ".join(self.values)


def _by_default(default: Any) -> Domain | None:
    """What an undeclared argument accepts, from its default's type."""
    if isinstance(default, bool):
        return Choice((True, False))
    if isinstance(default, int):
        return Integer()
    if isinstance(default, float):
        return Real()
    return None


def check_values(values: Mapping[str, Any], defaults: Mapping[str, Any], domains: Mapping[str, Domain],
                 what: str) -> list[str]:
    """Errors in ``values`` (empty: valid): unknown names, and values outside their
    declared domain (else outside their default's type). ``what`` names them in messages."""
    errors = []
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        errors.append(f"unknown {what or 'key'} {', '.join(map(repr, unknown))} (valid: {', '.join(defaults) or 'none'})")
    for name, value in values.items():
        if name not in defaults:
            continue
        domain = domains.get(name) or _by_default(defaults[name])
        if value is None and (domain is None or domain.allow_none or defaults[name] is None):
            continue
        if domain is None:
            continue
        if isinstance(domain, Real) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        why = domain.problem(value)
        if why:
            errors.append(f"{what} {name} {why}" if what else f"{name} {why}")
    return errors


def undeclared(defaults: Mapping[str, Any], domains: Mapping[str, Domain]) -> list[str]:
    """Arguments with a numeric or text default (or None) and no declared domain."""
    return [name for name, default in defaults.items()
            if name not in domains and not isinstance(default, bool)
            and (default is None or isinstance(default, (int, float, str)))]


@dataclass(frozen=True)
class RealList(Domain):
    """Comma-separated finite reals as text (``"0.1,0.2,0.7"``; one value repeats)."""

    allow_none: bool = False

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return f"expected comma-separated numbers as text, got {value!r}"
        try:
            numbers = [float(p) for p in value.split(",") if p.strip()]
        except ValueError:
            return f"expected comma-separated numbers, got {value!r}"
        if not all(math.isfinite(x) for x in numbers):
            return f"every entry must be a finite number, got {value!r}"
        return None

    def describe(self) -> str:
        return "comma-separated numbers"
