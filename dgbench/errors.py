"""The exceptions shared across dgbench's subpackages (estimators and problems import this
module, never each other)."""

from __future__ import annotations


class NotApplicable(ValueError):
    """This estimator cannot run on this input or problem (``exact`` beyond its state limit,
    a k-sample-bound estimator on an objective that is not a bound, ...). The harness
    records such a cell as skipped, with the message as its reason."""


class Terminated(BaseException):
    """SIGTERM arrived: raised by the CLI's handler so that a run stops as on Ctrl-C."""


class Interrupted(BaseException):
    """A run was stopped by a signal; ``stored`` cells of it are in the results store."""

    def __init__(self, signum: int, stored: int) -> None:
        super().__init__(f"interrupted: {stored} cells stored; rerun the same command to resume")
        self.signum, self.stored = signum, stored

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


class UsageError(ValueError):
    """Bad input from the user (an unknown id, an invalid option, missing data, ...): the
    library raises it, the CLI prints it on one line and exits with status 2."""
