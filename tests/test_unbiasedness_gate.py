"""The powered unbiasedness test (dgbench.harness.unbiasedness): its false-alarm rate on
unbiased estimators is at its stated level, its power against scaled REINFORCE is at least
the stated 90%, and gradcheck and compare give verdicts with exit status 1 when the data
refute an estimator's declared claim (issue 28, items 1-3)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from scipy.stats import binom

from dgbench.estimators import ESTIMATORS
from dgbench.estimators.plugin import load_estimator
from dgbench.harness.cli import main
from dgbench.harness.gradstats import RunningStatistics, replicated_gradients, summarise_running
from dgbench.harness.seeding import make_generator
from dgbench.harness.unbiasedness import (
    POWER,
    RELATIVE_BIAS,
    gate,
    minimum_detectable_bias,
    replicas_for,
    verdict_of,
)
from dgbench.problems import PROBLEMS

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "antithetic_reinforce.py"
SCALED = '''
from dgbench.estimators.reinforce import Reinforce


class Scaled{tag}(Reinforce):
    """REINFORCE times {scale}: declares itself unbiased, and is not."""

    id = "reinforce-times-{tag}"
    unbiased = True

    def forward(self, logits, f, *, generator):
        out = super().forward(logits, f, generator=generator)
        return out + ({scale} - 1) * (out - out.detach())
'''


def scaled_plugin(tmp_path: Path, scale: float) -> Path:
    tag = str(scale).replace(".", "")
    path = tmp_path / f"scaled_{tag}.py"
    path.write_text(SCALED.format(scale=scale, tag=tag))
    return path


def toy(init: float = 0.7, dim: int = 3):
    return PROBLEMS["bernoulli-toy"](dim=dim, target=0.45, init=init)


def split_statistics(estimates: torch.Tensor, exact: torch.Tensor, groups: int):
    """The statistics of ``groups`` independent sets of estimates (rows split evenly)."""
    out = []
    for chunk in estimates.reshape(groups, -1, estimates.shape[-1]):
        running = RunningStatistics(exact)
        running.add(chunk)
        out.append(summarise_running(running, exact))
    return out


@pytest.mark.slow
def test_false_alarm_rate_on_an_unbiased_estimator_is_at_its_stated_level():
    """At a level large enough to count (0.05), 600 independent tests of REINFORCE refute
    it no more often than the binomial allows; the along-g test alone at about level / 2."""
    problem = toy()
    exact = torch.cat(list(problem.exact_gradient().values()))
    alpha, groups, replicas = 0.05, 600, 1000
    estimates = replicated_gradients(problem, ESTIMATORS["reinforce"]("bernoulli"), groups * replicas,
                                     make_generator(101))
    verdicts = [verdict_of(s, True, alpha) for s in split_statistics(estimates, exact, groups)]
    refuted = sum(v.refuted for v in verdicts)
    along = sum(abs(v.z_along) > v.critical_along for v in verdicts)
    assert refuted <= binom.ppf(0.999, groups, alpha)  # family-wise level at most alpha
    assert binom.ppf(0.001, groups, alpha / 2) <= along <= binom.ppf(0.999, groups, alpha / 2)


@pytest.mark.slow
@pytest.mark.parametrize("scale", [1.1, 1.3])
def test_power_against_scaled_reinforce_is_at_least_the_stated_power(tmp_path, scale):
    """At the replica count the gate chooses for a 10% relative bias, 1.1 x and 1.3 x
    REINFORCE are refuted in at least 90% of independent repetitions (binomial tolerance)."""
    cls = load_estimator(str(scaled_plugin(tmp_path, scale)))
    problem = toy(init=1.0, dim=1)
    exact = torch.cat(list(problem.exact_gradient().values()))
    pilot = summarise_running(_running(replicated_gradients(problem, cls("bernoulli"), 4000, make_generator(7)),
                                       exact), exact)
    replicas = replicas_for(pilot.se_along * math.sqrt(4000), pilot.gradient_norm)
    repetitions = 80
    estimates = replicated_gradients(problem, cls("bernoulli"), repetitions * replicas, make_generator(8))
    verdicts = [verdict_of(s, True) for s in split_statistics(estimates, exact, repetitions)]
    detected = sum(v.refuted for v in verdicts)
    assert detected >= binom.ppf(0.001, repetitions, POWER)
    assert all(v.minimum_detectable_bias == pytest.approx(RELATIVE_BIAS, rel=0.15) for v in verdicts)


def _running(estimates, exact):
    running = RunningStatistics(exact)
    running.add(estimates)
    return running


def test_minimum_detectable_bias_and_replicas_agree():
    se, norm_g = 0.01, 0.2
    mdb = minimum_detectable_bias(se, norm_g)
    assert replicas_for(se * math.sqrt(10_000), norm_g, relative_bias=mdb) == pytest.approx(10_000, rel=1e-6)
    assert minimum_detectable_bias(se, 0.0) == math.inf


def test_the_gate_refutes_overclaiming_plugins_and_passes_unbiased_ones(tmp_path):
    for scale in (1.1, 1.3):
        result = gate(load_estimator(str(scaled_plugin(tmp_path, scale))), seconds=600)
        assert result.refuted, result.summary()
    for cls in (ESTIMATORS["reinforce"], ESTIMATORS["disarm"], load_estimator(str(EXAMPLE))):
        result = gate(cls, seconds=600)
        assert not result.refuted, result.summary()
        assert result.minimum_detectable_bias <= 0.15  # close to the 10% target at 90% power
        assert any(t.point > 0 for t in result.tests)  # not only at the initial parameters


def test_the_gate_finds_straight_through_biased_away_from_the_initial_point():
    """Straight-through is exactly unbiased on the quadratic toy at sigmoid(theta) = 1/2 (the
    initial point) and biased elsewhere: the perturbed points show it."""
    result = gate(ESTIMATORS["straight-through"], seconds=10)
    at_init = [t for t in result.tests if t.problem == "bernoulli-toy" and t.point == 0]
    elsewhere = [t for t in result.tests if t.problem == "bernoulli-toy" and t.point > 0]
    assert at_init[0].verdict.verdict == "bias not detected"
    assert all(t.verdict.verdict == "bias detected" for t in elsewhere)
    assert not result.refuted  # it declares itself biased: not an error


def gradcheck_json(capsys, *argv):
    code = main(["gradcheck", "--problem", "bernoulli-toy", "--option", "dim=1", "--option", "target=0.45",
                 "--json", *argv])
    return code, json.loads(capsys.readouterr().out)


def test_gradcheck_verdicts_and_exit_status(tmp_path, capsys):
    plugin = scaled_plugin(tmp_path, 1.1)
    code, result = gradcheck_json(capsys, "--estimator", str(plugin), "--replicas", "1000000")
    assert code == 1 and result["verdict"] == "refuted" and result["refuted"] is True
    assert result["z_along"] > 10 and 0 < result["minimum_detectable_bias"] < 0.1
    code, result = gradcheck_json(capsys, "--estimator", "reinforce", "--replicas", "200000")
    assert code == 0 and result["verdict"] == "not refuted" and result["minimum_detectable_bias"] < 0.2
    code, result = gradcheck_json(capsys, "--estimator", "straight-through", "--replicas", "20000",
                                  "--option", "init=1.5")
    assert code == 0 and result["verdict"] == "bias detected" and result["declared_unbiased"] is False
    code = main(["gradcheck", "--problem", "bernoulli-toy", "--estimator", "reinforce", "--replicas", "20000"])
    out = capsys.readouterr().out
    assert code == 0 and "minimum detectable bias: " in out and "verdict: NOT REFUTED" in out


@pytest.mark.slow
@pytest.mark.parametrize("scale", [1.1, 1.3])
def test_compare_exits_1_for_an_overclaiming_plugin_and_reports_the_gate(tmp_path, capsys, scale):
    plugin = scaled_plugin(tmp_path, scale)
    out = tmp_path / "compare"
    try:
        code = main(["compare", str(plugin), "--suite", "smoke", "--out", str(out), "--workers", "1", "--quiet",
                     "--unbiasedness-seconds", "600"])
        err = capsys.readouterr().err
        assert code == 1 and "REFUTED" in err
        record = json.loads((out / "compare.json").read_text())
        assert record["unbiasedness"]["refuted"] is True
        page = (out / "report" / "index.html").read_text()
        assert "Unbiasedness gate" in page and "exits with status 1" in page
    finally:
        ESTIMATORS.pop(f"reinforce-times-{str(scale).replace('.', '')}", None)


@pytest.mark.slow
def test_the_report_states_the_minimum_detectable_bias_for_every_estimator(tmp_path):
    from dgbench.reports.leaderboard import boards
    from dgbench.reports.results import load

    out = tmp_path / "out"
    assert main(["run", "--suite", "smoke", "--out", str(out), "--workers", "1", "--quiet",
                 "--problems", "bernoulli-toy"]) == 0
    board = next(iter(boards(load(out)).values()))
    assert board.bias
    for estimator, verdict in board.bias.items():
        text = verdict.text()
        assert "at the initial parameters" in text
        if verdict.verdict == "not detected":
            assert "min. detectable bias" in text, (estimator, text)
