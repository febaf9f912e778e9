"""A relaxed estimator with its gradient part chosen by name: the parts of
:mod:`dgbench.estimators.relaxed_core` crossed without new code.

``gradient`` is one of ``soft``, ``st``, ``rao``, ``mean`` or ``reinmax`` (formulas in
:mod:`dgbench.estimators.relaxed_core`); ``temperature`` defaults to the part's paper
(0.5 for the Gumbel-softmax family, 1.0 for ReinMax and for ``mean``, straight-through's slope), ``draws`` is
``rao``'s number of conditional draws. With the defaults each choice is bit for bit the
published estimator (``gumbel-softmax``, ``st-gumbel-softmax``, ``gumbel-rao``,
``straight-through``, ``reinmax``); a test pins this. Biased, like all of them. A suite
runs several side by side as ``variants``, e.g. ``reinmax-hot = { estimator = "relaxed",
gradient = "reinmax", temperature = 2.0 }``.

Papers: see :mod:`dgbench.estimators.relaxed_core`.
"""

from __future__ import annotations

from dgbench.domains import Choice, Real
from dgbench.estimators import gumbel_rao, gumbel_softmax, reinmax, st_gumbel_softmax, straight_through
from dgbench.estimators.base import builtin
from dgbench.estimators.relaxed_core import GRADIENTS, RaoBlackwellised, RelaxedCore

CHOICES = tuple(GRADIENTS)


@builtin
class Relaxed(RelaxedCore):
    id = "relaxed"
    hyperparameter_domains = {"gradient": Choice(CHOICES), "temperature": Real(0.0, low_open=True, allow_none=True)}
    include_in_all = False  # its defaults are `st-gumbel-softmax`; suites name it or cross it as variants
    paper = "Gumbel-softmax, straight-through, Gumbel-Rao and ReinMax parts: see dgbench.estimators.relaxed_core"

    def __init__(self, node: str = "bernoulli", *, samples: int = 1, gradient: str = "st",
                 temperature: float | None = None, draws: int = 10) -> None:
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {', '.join(CHOICES)}, got {gradient!r}")
        part = GRADIENTS[gradient]
        if temperature is not None and part.default_temperature is None:
            raise ValueError(f"gradient {gradient!r} takes no temperature")
        super().__init__(node, samples)
        temperature = part.default_temperature if temperature is None else temperature
        self.gradient, self.temperature, self.draws = gradient, temperature, draws
        if part is RaoBlackwellised:
            self.part = part(temperature, draws)
        elif temperature is None:
            self.part = part()
        else:
            self.part = part(temperature)


# The hand-written reference for the exact single-draw test: each part's own.
def reference_draw(node, logits, u, f, est):
    module = {"soft": gumbel_softmax, "st": st_gumbel_softmax, "rao": gumbel_rao, "mean": straight_through,
              "reinmax": reinmax}[est.gradient]
    return module.reference_draw(node, logits, u, f, est)
