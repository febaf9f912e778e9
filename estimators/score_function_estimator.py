"""The score-function estimator with a baseline chosen by name: the parts of
:mod:`dgbench.estimators.score_core` crossed without new code. (Its id is
``score-function``; the module is not named ``score_function``, which would shadow the
helper of that name in ``dgbench.estimators``.)

    g = 1/S sum_s l_s d log q(z_s) / d logits,   l_s = f(z_s) - baseline

``baseline`` is one of ``none``, ``ema``, ``loo``, ``optimal`` or ``network`` (formulas in
:mod:`dgbench.estimators.score_core`); ``decay`` is the moving-average decay of ``ema``
and of ``network``'s running mean (default 0.9 for both), ``hidden`` the width of
``network``'s hidden layer. With the published defaults each choice is bit for bit the
published estimator (``reinforce``, ``reinforce-ema``, ``rloo``, ``reinforce-optimal``,
``nvil`` with ``decay = 0.8``); a test pins this. Unbiased for every choice. A suite runs
several side by side as ``variants`` (``[estimators] variants = { sf-ema = { estimator =
"score-function", baseline = "ema" } }``); the budget sets their samples.

Williams (1992), Machine Learning 8:229-256; the baselines' papers are cited in
:mod:`dgbench.estimators.score_core`.
"""

from __future__ import annotations

from typing import Any

from dgbench.domains import Choice, Integer
from dgbench.estimators import nvil, reinforce, reinforce_ema, reinforce_optimal, rloo
from dgbench.estimators.base import builtin
from dgbench.estimators.score_core import (
    BASELINES,
    LearnedNetwork,
    LeaveOneOut,
    MovingAverage,
    NoBaseline,
    OptimalConstant,
    ScoreFunctionCore,
)

CHOICES = ("none", "ema", "loo", "optimal", "network")  # "taylor" changes the capabilities: `muprop`


@builtin
class ScoreFunction(ScoreFunctionCore):
    id = "score-function"
    hyperparameter_domains = {"baseline": Choice(CHOICES), "hidden": Integer(0)}
    include_in_all = False  # its defaults are `rloo`; suites name it or cross it as variants
    paper = "Williams (1992), Machine Learning 8:229-256; baselines: see dgbench.estimators.score_core"

    def __init__(self, node: str = "bernoulli", *, samples: int = 2, baseline: str = "loo", decay: float = 0.9,
                 hidden: int = 16) -> None:
        if baseline not in CHOICES:
            raise ValueError(f"baseline must be one of {', '.join(CHOICES)}, got {baseline!r}")
        if isinstance(samples, int) and samples < BASELINES[baseline].min_samples:
            raise ValueError(f"baseline {baseline!r} needs samples >= {BASELINES[baseline].min_samples}, got {samples}")
        super().__init__(node, samples)
        self.baseline, self.decay, self.hidden = baseline, decay, hidden
        if baseline == "ema":
            self.part = MovingAverage(decay)
        elif baseline == "network":
            self.part = LearnedNetwork(hidden, decay)
        else:
            self.part = {"none": NoBaseline, "loo": LeaveOneOut, "optimal": OptimalConstant}[baseline]()

    @classmethod
    def min_samples_for(cls, hyperparameters: dict[str, Any]) -> int:
        return BASELINES[hyperparameters.get("baseline", "loo")].min_samples


# The hand-written reference for the exact single-draw test: each baseline's own.
def reference_draw(node, logits, u, f, est):
    module = {"none": reinforce, "ema": reinforce_ema, "loo": rloo, "optimal": reinforce_optimal,
              "network": nvil}[est.baseline]
    return module.reference_draw(node, logits, u, f, est)
