"""`dgbench compare` with the worked example: validation first, reuse, and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dgbench.estimators.registry import ESTIMATORS
from dgbench.harness.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "antithetic_reinforce.py"


def test_compare_runs_the_example_reuses_reference_cells_and_reports_it_first(tmp_path, capsys):
    reference = tmp_path / "reference"
    try:
        assert main(["run", "--suite", "smoke", "--out", str(reference), "--workers", "1", "--quiet"]) == 0
        out = tmp_path / "compare"
        code = main(["compare", str(EXAMPLE), "--suite", "smoke", "--out", str(out), "--reference", str(reference),
                     "--workers", "1", "--quiet"])
        assert code == 0, capsys.readouterr()
        record = json.loads((out / "compare.json").read_text())
        assert record["estimator"] == "antithetic-reinforce" and record["reused"] is True
        assert record["cells_reused"] > 0 and record["cells_computed"] == 4  # 2 kinds x 2 configs (1 skipped)
        table = pd.read_csv(out / "report" / "comparison.csv")
        bernoulli = table[table["config"].str.startswith("bernoulli-toy")].iloc[0]
        position, total = map(int, bernoulli["rank"].split(" of "))
        assert 1 <= position <= total <= len(ESTIMATORS)
        assert bernoulli["time per step ratio"] > 0
        page = (out / "report" / "index.html").read_text()
        assert page.index("Comparison: antithetic-reinforce") < page.index("Provenance")
        assert "cells reused" in page
    finally:
        ESTIMATORS.pop("antithetic-reinforce", None)


def test_compare_computes_everything_without_a_matching_reference(tmp_path):
    try:
        out = tmp_path / "compare"
        assert main(["compare", str(EXAMPLE), "--suite", "smoke", "--out", str(out), "--reference",
                     str(tmp_path / "none"), "--workers", "1", "--quiet"]) == 0
        record = json.loads((out / "compare.json").read_text())
        assert record["reused"] is False and "every cell computed" in record["reuse_note"]
        assert record["cells_computed"] > 4
    finally:
        ESTIMATORS.pop("antithetic-reinforce", None)


def test_compare_rejects_an_invalid_plugin_before_running(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    assert main(["compare", str(bad), "--suite", "smoke", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    clash = tmp_path / "clash.py"
    clash.write_text(EXAMPLE.read_text().replace('id = "antithetic-reinforce"', 'id = "disarm"'))
    assert main(["compare", str(clash), "--suite", "smoke", "--out", str(tmp_path / "out2")]) == 2
    assert "taken by a built-in" in capsys.readouterr().err


def test_compare_checks_the_data_before_running(tmp_path, capsys, monkeypatch):
    """A suite needing binarized MNIST, offline and without the file: one line, exit 2, nothing run."""
    import os

    from dgbench.problems import data

    monkeypatch.setattr(data, "_MEMO", {})
    monkeypatch.setenv("DGBENCH_MNIST_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("DGBENCH_DATA_DIR", os.environ.get("DGBENCH_DATA_DIR", ""))  # restored after the flag sets it
    try:
        code = main(["compare", str(EXAMPLE), "--suite", "full", "--out", str(tmp_path / "out"),
                     "--data-dir", str(tmp_path / "empty"), "--quiet"])
        assert code == 2 and "binarized_mnist.npz" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()
    finally:
        ESTIMATORS.pop("antithetic-reinforce", None)
