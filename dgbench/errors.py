"""The exceptions shared across dgbench's subpackages (estimators and problems import this
module, never each other)."""

from __future__ import annotations


class NotApplicable(ValueError):
    """This estimator cannot run on this input or problem (``exact`` beyond its state limit,
    a k-sample-bound estimator on an objective that is not a bound, ...). The harness
    records such a cell as skipped, with the message as its reason."""


class UsageError(ValueError):
    """Bad input from the user (an unknown id, an invalid option, missing data, ...): the
    library raises it, the CLI prints it on one line and exits with status 2."""
