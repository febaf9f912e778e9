"""Backends: where a plan's units run. Siblings behind one small interface:

``backend.session(store)``
    a context in which the backend is ready (worker pool, or a Dask cluster connected and
    checked); it yields the facts the run's provenance records.
``backend.run(units, record)``
    run every unit (a cell or a stacked group) and call ``record(unit, result)`` as each
    result arrives, in any order; the driver alone writes the store.

:class:`dgbench.harness.local_backend.LocalBackend` runs supervised worker processes of
this machine; :class:`dgbench.harness.dask_backend.DaskBackend` one task per unit on a
Dask cluster. A new backend is a sibling module with such a class, named in
:data:`BACKENDS`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from dgbench.errors import UsageError
from dgbench.harness.suites import Cell

BACKENDS = {"local": "dgbench.harness.local_backend:LocalBackend",
            "dask": "dgbench.harness.dask_backend:DaskBackend"}


class Backend(Protocol):
    name: str
    threads: int

    def session(self, store: Any) -> AbstractContextManager[dict[str, Any]]: ...

    def run(self, units: list[Cell], record: Callable[[Cell, dict], None]) -> None: ...


def make_backend(name: str, *, workers: int, device: str, threads: int | None = None, plugins: tuple[str, ...] = (),
                 scheduler: str | None = None, retries: int = 2, cell_timeout: float | None = None,
                 explicit_timeout: bool = False, checkpoint_every: float = 60.0, in_process: bool = False) -> Backend:
    """The backend ``name`` with the options it takes; :class:`UsageError` for an option it
    does not take (``--scheduler`` without Dask, ``--in-process`` with Dask) or a backend
    that is not installed. A time limit the Dask backend cannot enforce is noted."""
    if name not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if scheduler and name != "dask":
        raise UsageError("--scheduler needs --backend dask")
    if in_process and name != "local":
        raise UsageError("--in-process needs --backend local")
    module, _, cls = BACKENDS[name].partition(":")
    if name == "dask":
        if importlib.util.find_spec("distributed") is None:
            raise UsageError("--backend dask needs Dask distributed: pip install -e '.[dask]'")
        if explicit_timeout:
            print("dgbench: note: the Dask backend does not enforce --cell-timeout or the suite's cell_timeout",
                  file=sys.stderr)
        options: dict[str, Any] = {"scheduler": scheduler, "retries": retries}
    else:
        options = {"cell_timeout": cell_timeout, "retries": retries, "checkpoint_every": checkpoint_every,
                   "in_process": in_process}
    backend_class = getattr(importlib.import_module(module), cls)
    return backend_class(workers=workers, device=device, threads=threads, plugins=plugins, **options)
