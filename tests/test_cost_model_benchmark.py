"""``benchmarks/cost_model.py``: the dry-run's prediction against stored cell times."""

from __future__ import annotations

import re

from benchmarks import cost_model
from dgbench.harness.cli import main


def test_it_compares_every_stored_unit_and_refuses_a_directory_without_times(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--suite", "smoke", "--problems", "bernoulli-toy", "--estimators", "reinforce,rloo",
                 "--out", str(out), "--workers", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert cost_model.main(["--suite", "smoke", "--out", str(out), "--problems", "bernoulli-toy",
                            "--estimators", "reinforce,rloo"]) == 0
    text = capsys.readouterr().out
    units, predicted, measured = re.search(r"(\d+) units; .* predicted ([\d.]+) s, measured ([\d.]+) s", text).groups()
    assert int(units) > 0 and float(predicted) > 0 and float(measured) > 0
    assert "| bernoulli-toy | train | reinforce |" in text and "| bernoulli-toy | gradstats | rloo |" in text
    assert cost_model.main(["--suite", "smoke", "--out", str(tmp_path / "empty")]) == 2
