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


def test_table_with_compiled_steps_gives_their_speedup_or_says_not_compiled():
    result = {"threads": 1, "rounds": 3, "alternations": 2, "rows": [
        {"estimator": "reinforce", "dgbench_ms": 2.0, "storchastic_ms": 5.0, "speedup": 2.5,
         "hand_written_ms": 1.9, "hand_written_speedup": 5.0 / 1.9, "compiled_ms": 1.6, "compiled_speedup": 5.0 / 1.6},
        {"estimator": "relax", "dgbench_ms": 4.0, "storchastic_ms": 10.0, "speedup": 2.5,
         "hand_written_ms": 4.0, "hand_written_speedup": 2.5, "compiled_ms": None, "compiled_speedup": None},
    ]}
    text = side.table(result)
    assert "| storchastic / compiled |" in text
    assert "| reinforce | 2.00 | 5.00 | 2.50 | 1.90 | 2.63 | 1.60 | 3.12 |" in text
    assert "| relax | 4.00 | 10.00 | 2.50 | 4.00 | 2.50 | not compiled | |" in text


def test_compiled_step_table_reports_payback_and_refusals():
    from benchmarks import compiled_step

    result = {"problem": "vae-bernoulli-linear", "threads": 1, "rounds": 5, "torch": "2.13.0", "agreement_steps": 20,
              "rows": [{"estimator": "reinforce", "eager_ms": 2.2, "compiled_ms": 1.9, "ratio": 1.9 / 2.2,
                        "compile_seconds": 3.0, "payback_steps": 10000.0, "max_param_diff": 1e-7},
                       {"estimator": "relax", "failed": "not compiled: not one graph: Unsupported: torch.autograd.grad"}]}
    text = compiled_step.table(result)
    assert "| reinforce | 2.20 | 1.90 | 0.86 | 3.0 | 10,000 | 1.0e-07 |" in text
    assert "| relax | | | | | | not compiled: not one graph: Unsupported: torch.autograd.grad |" in text
