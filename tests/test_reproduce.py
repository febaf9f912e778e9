"""`dgbench reproduce`: reproduction files, their cells, model selection, the report, and
the shipped reproductions at a tiny --steps-scale."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from dgbench.harness import reproduce as rp
from dgbench.harness.cli import main
from dgbench.reports.reproduction import agrees, ordering, verdict

TOY = """
name = "toy-repro"
title = "A toy table"
source = "made up for the tests"
metric = "exact_objective"
select_on = "exact_objective"
select_direction = "min"
lower_is_better = true
tolerance = 0.05
unit = "units"

[training]
steps = 40
optimizer = "sgd"
momentum = 0.5
lr = 0.1
log_every = 10
eval_every = 40
variance_every = 1000
variance_replicas = 2

[grid]
lr = [0.0001, 0.5]

[[columns]]
id = "reinforce"
label = "REINFORCE"
estimator = "reinforce"

[[columns]]
id = "gs-hot"
label = "Gumbel-S. (tau 1)"
estimator = "gumbel-softmax"
hyperparameters = { temperature = 1.0 }

[[rows]]
id = "toy"
label = "Bernoulli toy"
problem = "bernoulli-toy"
options = { dim = 2, target = 0.45 }
published = { reinforce = 0.2, gs-hot = "<= 0.3" }
anneal = { columns = ["gs-hot"], rate = [0.01, 0.1], every = [5], start = 1.0, min = 0.5 }
"""


@pytest.fixture
def toy_file(tmp_path: Path) -> Path:
    path = tmp_path / "toy.toml"
    path.write_text(TOY)
    return path


def test_list_shows_the_shipped_reproductions_and_their_rows(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert "gumbel-softmax-table1" in out and "relax-toy" in out
    for row in ("sbn-bernoulli", "sbn-categorical", "vae-bernoulli", "vae-categorical"):
        assert f"row {row}:" in out


def test_table1_holds_the_published_values_of_the_issue():
    rep = rp.load("gumbel-softmax-table1")
    rows = {r["id"]: r for r in rep.rows}
    assert [rep.column(c)["label"] for c in rows["vae-categorical"]["published"]] == \
        ["SF", "DARN", "MuProp", "ST", "Annealed ST", "Gumbel-S.", "ST Gumbel-S."]
    assert list(rows["sbn-bernoulli"]["published"].values()) == [72.0, 59.7, 58.9, 58.9, 58.7, 58.5, 59.3]
    assert list(rows["vae-categorical"]["published"].values()) == [110.6, 128.8, 107.0, 110.9, 107.8, 101.5, 107.8]
    assert rep.lr_grid == [3e-5, 1e-5, 3e-4, 1e-4, 3e-3, 1e-3]
    assert rep.training["optimizer"] == "sgd" and rep.training["momentum"] == 0.9 and rep.training["steps"] == 50000


def test_plan_crosses_rows_columns_grid_and_seeds(toy_file):
    rep = rp.load(str(toy_file))
    planned = rp.plan(rep, seeds=2)
    # reinforce: 2 lrs x 2 seeds; gs-hot: 2 lrs x 2 anneal rates x 2 seeds
    assert len(planned) == 4 + 8
    gs = [p for p in planned if p.column == "gs-hot"]
    assert {p.cell.settings["anneal_rate"] for p in gs} == {0.01, 0.1}
    assert all(p.cell.variant_of == "gumbel-softmax" and p.cell.hyperparameters["temperature"] == 1.0 for p in gs)
    assert all(p.cell.variant_of is None for p in planned if p.column == "reinforce")
    assert len({p.cell.key for p in planned}) == len(planned)
    short = rp.plan(rep, seeds=1, steps_scale=0.1, lrs=[0.5], anneal_rates=[0.1])
    assert {p.cell.settings["steps"] for p in short} == {4} and len(short) == 2


@pytest.mark.parametrize("kwargs,message", [
    ({"lrs": [0.3]}, r"--lr 0.3 is not in the protocol's grid"),
    ({"anneal_rates": [0.5]}, r"--anneal-rate 0.5 is not in row 'toy'"),
    ({"rows": ["nope"]}, r"--row 'nope' is not in toy-repro"),
    ({"seeds": 0}, r"--seeds must be between 1 and"),
    ({"steps_scale": 0}, r"--steps-scale must be a finite number in"),
])
def test_plan_refuses_bad_run_options(toy_file, kwargs, message):
    with pytest.raises(rp.UsageError, match=message):
        rp.plan(rp.load(str(toy_file)), **kwargs)


@pytest.mark.parametrize("edit,message", [
    (("metric", 'metric = "x"\ntransform = "cube"'), "transform must be one of"),
    (('estimator = "reinforce"', 'estimator = "nope"'), "unknown estimator 'nope'"),
    (('published = { reinforce = 0.2,', 'published = { bogus = 0.2,'), "unknown column 'bogus'"),
    (('gs-hot = "<= 0.3"', 'gs-hot = "about 0.3"'), "must be a number or a bound"),
    (('problem = "bernoulli-toy"', 'problem = "nope"'), "unknown problem 'nope'"),
])
def test_parse_refuses_bad_reproduction_files(tmp_path, edit, message):
    old, new = edit
    text = TOY.replace(f'{old} = "exact_objective"\n', new + "\n", 1) if old == "metric" else TOY.replace(old, new, 1)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(rp.UsageError, match=message):
        rp.load(str(path))


def test_unknown_reproduction_is_a_usage_error(capsys):
    assert main(["reproduce", "nope"]) == 2
    assert "unknown reproduction 'nope' (available: gumbel-softmax-table1, relax-toy" in capsys.readouterr().err


def test_run_selects_the_grid_point_and_reports_side_by_side(toy_file, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["reproduce", str(toy_file), "--seeds", "2", "--out", str(out), "--workers", "1", "--in-process", "--quiet"]
    assert main(args) == 0
    assert "toy-repro: 12 cells (this run: 12 done" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert [r["column"] for r in rows] == ["reinforce", "gs-hot"]
    # lr 0.5 reduces the objective far more than 1e-4 in 40 steps: selected on the (minimised) objective
    assert all(r["selected"].startswith("lr=0.5") for r in rows)
    entries, _ = rp.entries(rp.load(str(toy_file)), rp.plan(rp.load(str(toy_file)), seeds=2), out)
    for e in entries:
        assert len(e.values) == 2 and e.interval() is not None
    report = (out / "report.md").read_text()
    assert "| REINFORCE | `reinforce` | 0.2 |" in report and "<= 0.3" in report
    assert "Shortened run" not in report and "## Provenance" in report and "git_commit" in report
    # resumable: the same command computes nothing
    assert main(args) == 0
    assert "this run: 0 done" in capsys.readouterr().out


def _entry(published, values, bound=None):
    return rp.Entry("r", "c", published, values, {}, "measured", len(values), bound)


def test_verdicts_tolerance_bounds_and_intervals():
    assert verdict(_entry(1.0, [1.4, 1.6]), 1.0, "nats") == "within 1 nats"
    assert verdict(_entry(1.0, [3.0, 3.2]), 1.0, "nats") == "off by +2.10 nats"
    assert agrees(_entry(-10.0, [-14.0], "<="), 1.0) and not agrees(_entry(-10.0, [-8.5], "<="), 1.0)
    assert "meets the bound <= -10" in verdict(_entry(-10.0, [-14.0], "<="), 1.0, "")
    assert verdict(rp.Entry("r", "c", 1.0, [], {}, "skipped: no", 1), 1.0, "") == "skipped: no"
    low, high = _entry(0.0, [1.0, 2.0, 3.0]).interval()
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n), sd = 1
    assert low == pytest.approx(2 - half) and high == pytest.approx(2 + half)
    assert _entry(0.0, [1.0]).interval() is None


def test_ordering_counts_pairs_ranked_as_published():
    es = [_entry(1.0, [10.0]), _entry(2.0, [20.0]), _entry(3.0, [15.0])]
    assert ordering(es, lower_is_better=True) == (2, 3)


@pytest.mark.slow
@pytest.mark.mnist
def test_gumbel_softmax_table1_runs_at_a_tiny_steps_scale(tmp_path, capsys):
    out = tmp_path / "t1"
    assert main(["reproduce", "gumbel-softmax-table1", "--steps-scale", "0.0001", "--seeds", "1", "--lr", "1e-3",
                 "--anneal-rate", "1e-4", "--anneal-every", "1000", "--eval-examples", "20", "--out", str(out),
                 "--workers", "1", "--in-process", "--quiet"]) == 0
    report = (out / "report.md").read_text()
    assert report.count("| SF | `nvil` |") == 4 and "Shortened run: not a reproduction" in report
    assert "skipped: estimator family 'bernoulli' does not cover the categorical problem" in report  # DARN
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert len(rows) == 28 and sum(1 for r in rows if r["measured_mean"]) == 26
    assert "learning-rate grid restricted to 0.001" in report and "evaluation on the first 20 examples" in report


@pytest.mark.slow
def test_relax_toy_runs_at_a_tiny_steps_scale(tmp_path, capsys):
    out = tmp_path / "rt"
    assert main(["reproduce", "relax-toy", "--steps-scale", "0.005", "--seeds", "1", "--out", str(out),
                 "--workers", "1", "--in-process", "--quiet"]) == 0
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert [r["column"] for r in rows] == ["reinforce", "rebar", "relax", "relax-authors-net"]
    assert all(r["measured_mean"] for r in rows)  # the variance is measured at the end of a shortened run
    assert rows[0]["published"] == "-4.3" and rows[2]["published"] == "<= -10"


def test_series_metrics_last_value_or_median_of_the_second_half(toy_file):
    rep = rp.load(str(toy_file))
    rep.metric, rep.transform = "series:v", "log"
    series = {"v": [(100, math.e ** -1), (200, math.e ** -9), (300, math.e ** -3), (400, math.e ** -5)]}
    rep.series_summary = "last"
    assert rp.measured_value(rep, {}, series) == pytest.approx(-5)
    rep.series_summary = "median_second_half"  # steps 300 and 400 (after step 200 of 400)
    assert rp.measured_value(rep, {}, series) == pytest.approx(-4)
    assert rp.measured_value(rep, {}, {}) is None


def test_column_lr_restricts_one_columns_grid(toy_file):
    rep = rp.load(str(toy_file))
    planned = rp.plan(rep, seeds=1, column_lrs={"reinforce": [0.5]})
    assert {p.grid[0][1] for p in planned if p.column == "reinforce"} == {0.5}
    assert {p.grid[0][1] for p in planned if p.column == "gs-hot"} == {0.0001, 0.5}
    with pytest.raises(rp.UsageError, match="has no column 'nope'"):
        rp.plan(rep, column_lrs={"nope": [0.5]})
    with pytest.raises(rp.UsageError, match="--column-lr reinforce=0.3 is not in the run's grid"):
        rp.plan(rep, column_lrs={"reinforce": [0.3]})


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_device_is_a_usage_error(toy_file, tmp_path, capsys):
    assert main(["reproduce", str(toy_file), "--device", "cuda", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "cuda" in capsys.readouterr().err.lower()


def test_summed_batch_loss_needs_a_minibatch_problem():
    from dgbench.harness.cells import batch_loss_scale, make_problem

    problem = make_problem("bernoulli-toy", {"dim": 2}, 0, __import__("torch").device("cpu"))
    assert batch_loss_scale(problem, {"lr": 0.1}) == 1.0
    with pytest.raises(ValueError, match='batch_loss = "sum" needs a problem trained on minibatches'):
        batch_loss_scale(problem, {"lr": 0.1, "batch_loss": "sum"})


def test_prune_halving_is_listed_as_a_difference_and_the_selected_point_trained_in_full(toy_file, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["reproduce", str(toy_file), "--seeds", "2", "--out", str(out), "--workers", "1", "--in-process", "--quiet",
            "--prune", "halving"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "pruned" in printed  # reinforce: 2 points, gs-hot: 2 lr x 2 anneal rates
    report = (out / "report.md").read_text()
    assert "GRIDS PRUNED: successive halving" in report
    rows = list(csv.DictReader((out / "report.csv").open()))
    entries, _ = rp.entries(rp.load(str(toy_file)), rp.plan(rp.load(str(toy_file)), seeds=2), out)
    assert all("pruned by successive halving" in e.status and len(e.values) == 2 for e in entries)
    assert all(r["selected"] for r in rows)
