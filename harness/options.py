"""``key=value`` command-line assignments, typed by a constructor's defaults."""

from __future__ import annotations

from typing import Any


class OptionError(ValueError):
    """A malformed, unknown or mistyped ``key=value`` option."""


def parse_assignments(items: list[str] | None, what: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` as ``{"a": "1", "b": "x"}``; ``what`` names them in errors."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"{what} {item!r} is not of the form key=value")
        out[key.strip()] = value.strip()
    return out


def _convert(key: str, text: Any, default: Any, what: str) -> Any:
    if not isinstance(text, str):  # a value from the library API, not the command line
        if isinstance(default, float) and isinstance(text, (int, float)) and not isinstance(text, bool):
            return float(text)
        if isinstance(default, (bool, int, float)) and type(text) is not type(default):
            raise OptionError(f"{what} {key}={text!r}: expected a {type(default).__name__}")
        return text
    try:
        if isinstance(default, bool):
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise OptionError(f"{what} {key}={text!r}: expected a {type(default).__name__}") from None
    return text


def coerce(raw: dict[str, Any], defaults: dict[str, Any], what: str) -> dict[str, Any]:
    """Convert string values to the types of ``defaults`` (other values pass as given);
    unknown keys are errors."""
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        known = ", ".join(defaults) or "none"
        raise OptionError(f"unknown {what} {', '.join(unknown)} (valid: {known})")
    return {key: _convert(key, text, defaults[key], what) for key, text in raw.items()}
