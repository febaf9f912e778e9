"""The storchastic side-by-side benchmark: skipped cleanly without storchastic; its table."""

from __future__ import annotations

import importlib.util

import pytest

from benchmarks import storchastic_side_by_side as side


@pytest.mark.skipif(importlib.util.find_spec("storch") is not None, reason="storchastic is installed here")
def test_without_storchastic_the_benchmark_says_skipped_and_exits_0(capsys):
    assert side.main(["--estimators", "reinforce", "--rounds", "1", "--alternations", "1"]) == 0
    assert capsys.readouterr().out.startswith("skipped: storchastic: storchastic is not importable here")


def test_table_reports_speedups_and_the_2x_target():
    result = {"threads": 1, "rounds": 3, "alternations": 2, "rows": [
        {"estimator": "reinforce", "dgbench_ms": 2.0, "storchastic_ms": 5.0, "speedup": 2.5,
         "hand_written_ms": 1.9, "hand_written_speedup": 5.0 / 1.9},
        {"estimator": "relax", "dgbench_ms": 4.0, "storchastic_ms": 6.0, "speedup": 1.5,
         "hand_written_ms": 4.0, "hand_written_speedup": 1.5},
    ]}
    text = side.table(result)
    assert "| reinforce | 2.00 | 5.00 | 2.50 | 1.90 | 2.63 |" in text
    assert "at least 2x on every estimator: no" in text and "geometric mean 1.94x" in text


def test_unknown_estimator_is_refused():
    with pytest.raises(SystemExit):
        side.main(["--estimators", "arms"])
