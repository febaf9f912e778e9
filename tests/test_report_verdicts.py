"""End to end: the bias verdict on a real model with an exact gradient, and `dgbench compare`
gating on a plugin that declares itself unbiased."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dgbench.estimators.registry import ESTIMATORS
from dgbench.harness.cli import main
from dgbench.reports.build import build_report

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "antithetic_reinforce.py"

BIAS_SUITE = """
name = "bias-check"
seeds = 2
[budget]
evals = 4
[gradstats]
replicas = 1000
[[problems]]
id = "vae-bernoulli-tiny"
options = { batch_size = 8 }
[estimators]
include = ["reinforce", "rloo", "disarm", "straight-through", "exact"]
"""


@pytest.mark.slow
def test_straight_through_is_biased_and_unbiased_estimators_are_not_on_the_tiny_vae(tmp_path):
    suite = tmp_path / "bias.toml"
    suite.write_text(BIAS_SUITE)
    out = tmp_path / "run"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    build_report(out, ["csv", "html"], tmp_path / "report")
    summary = pd.read_csv(tmp_path / "report" / "summary.csv").set_index("estimator")
    assert summary.loc["straight-through", "bias verdict"] == "biased"
    for estimator in ("reinforce", "rloo", "disarm"):
        assert summary.loc[estimator, "bias verdict"] == "not detected", estimator
    # Variance is ranked among estimators without detected bias only.
    assert pd.isna(summary.loc["straight-through", "variance rank"])
    assert summary.loc[["reinforce", "rloo", "disarm"], "variance rank"].notna().all()
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<td class='text wrap biased'>biased" in page


def _biased_plugin_claiming_unbiased(tmp_path: Path) -> Path:
    plugin = tmp_path / "overclaiming.py"
    source = EXAMPLE.read_text().replace('id = "antithetic-reinforce"', 'id = "overclaiming"')
    plugin.write_text(source.replace("unbiased = False", "unbiased = True"))
    assert "unbiased = True" in plugin.read_text()
    return plugin


@pytest.mark.slow
def test_compare_exits_1_and_names_the_cells_when_a_plugin_claiming_unbiased_is_biased(tmp_path, capsys):
    try:
        out = tmp_path / "compare"
        code = main(["compare", str(_biased_plugin_claiming_unbiased(tmp_path)), "--suite", "smoke", "--out", str(out),
                     "--reference", str(tmp_path / "none"), "--workers", "1", "--quiet"])
        err = capsys.readouterr().err
        assert code == 1
        assert "declares unbiased = True but fails the unbiasedness check" in err
        assert "bernoulli-toy(dim=4, target=0.45) seed 0: max |bias|/se" in err
        table = pd.read_csv(out / "report" / "comparison.csv")
        checks = dict(zip(table["config"], table["unbiasedness check"]))
        assert checks["bernoulli-toy(dim=4, target=0.45)"].startswith("FAILED")
        # Categorical problem: the Bernoulli-only plugin was skipped; the blank is explained.
        assert checks["categorical-toy(categories=3, dim=2)"].startswith("no check: gradient statistics skipped")
        # Ratios are against built-ins of the same kind, never against a zero-variance estimator.
        bernoulli = table[table["config"].str.startswith("bernoulli-toy")].iloc[0]
        assert "indecater" not in bernoulli["variance compared with"] and "unbiased" in bernoulli["variance compared with"]
        record = json.loads((out / "compare.json").read_text())
        assert record["unbiased"] is True
    finally:
        ESTIMATORS.pop("overclaiming", None)
