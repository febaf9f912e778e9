"""``dgbench compare``: run a new estimator on a suite and report it against the built-ins.

The plugin is loaded and validated first. The built-in estimators' cells are reused from a
reference results directory when it holds the same suite definition (same digest) written
by the same dgbench version: its database is copied and only the missing cells (the new
estimator's, and any the reference lacks) are computed. Otherwise everything is computed.
What was reused is recorded in ``compare.json`` and shown in the report.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from dgbench.errors import UsageError
from dgbench.estimators.plugin import resolve_estimator
from dgbench.estimators.registry import register
from dgbench.harness.backends import make_backend
from dgbench.harness.execution import execute
from dgbench.harness.local_backend import DEFAULT_CELL_TIMEOUT, WorkersCannotStart
from dgbench.harness.references import DIRECTORY as REFERENCES
from dgbench.harness.run import check_data, open_results
from dgbench.harness.suites import expand, load_suite
from dgbench.harness.unbiasedness import GATE_SECONDS, gate
from dgbench.store import DB_NAME, StoreError, stored_last_provenance, stored_suite
from dgbench.strict_json import json_safe


def _reference_status(reference: Path, name: str, digest: str) -> tuple[bool, str]:
    if not (reference / DB_NAME).is_file():
        return False, f"no reference results in {reference}: every cell computed"
    try:
        suite = stored_suite(reference)
    except StoreError as err:
        return False, f"{err}: every cell computed"
    if suite.get("name") != name or suite.get("digest") != digest:
        return False, f"{reference} holds another suite definition: every cell computed"
    version = stored_last_provenance(reference).get("dgbench_version")
    if version != metadata.version("dgbench"):
        return False, f"{reference} was written by dgbench {version}, not {metadata.version('dgbench')}: every cell computed"
    return True, f"built-in estimators' cells reused from {reference}"


def compare(spec: str, suite_name: str, out: Path, reference: Path | None, *, workers: int, device: str,
            progress: bool, cell_timeout: float | None = None,
            unbiasedness_seconds: float = GATE_SECONDS) -> dict[str, Any]:
    """Run ``spec`` (and any missing built-in cells) on the suite into ``out``; the comparison record.

    An estimator that declares ``unbiased = True`` also goes through the unbiasedness gate
    (:func:`dgbench.harness.unbiasedness.gate`, within about ``unbiasedness_seconds``),
    whatever the suite's replica count; the record's ``unbiasedness`` holds its result."""
    cls = resolve_estimator(spec)
    register(cls)
    suite = load_suite(suite_name)
    extended = dataclasses.replace(suite, estimators=[e for e in suite.estimators if e != cls.id] + [cls.id])
    cells = expand(extended)
    check_data(cells)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    reference = reference or Path("results") / suite.name
    reused, why = False, "the comparison directory already holds results: resumed"
    if not (out / DB_NAME).exists():
        reused, why = _reference_status(reference, suite.name, suite.digest)
        if reused:
            shutil.copyfile(reference / DB_NAME, out / DB_NAME)
            if (reference / REFERENCES).is_dir():  # the shared reference gradients too
                shutil.copytree(reference / REFERENCES, out / REFERENCES, dirs_exist_ok=True)
    store, _ = open_results(out, suite)
    before = store.finished_keys() & {c.key for c in cells}
    try:
        backend = make_backend("local", workers=min(workers, max(1, len(cells))), device=device, plugins=(spec,),
                               cell_timeout=cell_timeout or suite.cell_timeout or DEFAULT_CELL_TIMEOUT)
        counts = execute(cells, store, backend, name=suite.name, device=device, progress=progress)
    except (StoreError, WorkersCannotStart) as err:
        raise UsageError(str(err)) from None
    finally:
        store.close()
    record = {
        "estimator": cls.id, "spec": spec, "unbiased": cls.unbiased, "suite": suite.name, "reference": str(reference),
        "reused": reused, "reuse_note": why, "cells_reused": len(before),
        "cells_computed": sum(counts.values()), "counts": counts,
    }
    if cls.unbiased:
        record["unbiasedness"] = gate(cls, seconds=unbiasedness_seconds).as_dict()
    (out / "compare.json").write_text(json.dumps(json_safe(record), indent=2))
    return record
