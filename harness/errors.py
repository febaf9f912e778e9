"""The one exception for bad user input: the library raises it, the CLI prints it on one
line and exits with status 2."""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user (an unknown id, an invalid option, missing data, ...)."""
