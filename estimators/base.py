"""The estimator contract.

An estimator turns ``(logits, f)`` into a tensor ``out`` of shape ``logits.shape``
without the event dims (``(*batch,)``) such that

* ``out``'s **value** is a Monte Carlo estimate of ``E_q[f(z)]`` (for relaxed
  estimators: of the relaxed objective they differentiate), and
* ``out``'s **gradient** with respect to ``logits`` is the estimator's gradient
  estimate, while parameters *inside* ``f`` (a decoder, a prior) still receive
  their pathwise gradients because the value keeps its autograd graph.

The objective ``f`` is a black box from samples to values: it takes ``z`` with any
number of extra leading sample dims, ``(*S, *batch, D[, K]) -> (*S, *batch)``, and must
treat batch elements independently. Estimators that do not declare ``relaxed`` only
ever call ``f`` on hard samples that do not require grad.

Capabilities are class variables, read by the harness (never by ``if id == ...``):

``family``            "bernoulli", "categorical", "both" (the two discrete families), "gaussian"
                      or "any" (all three: methods that need only sampling and the score)
``unbiased``          the gradient's expectation equals the exact gradient
``relaxed``           ``f`` is evaluated at continuous points or differentiated in z
``evals_per_sample``  f evaluations per unit of ``samples`` (None: not sample based)
``extra_evals``       f evaluations per call independent of ``samples``
``multi_sample``      ``samples > 1`` is allowed
``min_samples``       smallest ``samples`` the method is defined for
``evals_scale_with_event``  f evaluations per sample grow with the node's size (IndeCateR:
                      one per unit and value); budgets cannot equalise it
``group``             the family of methods, for reports' colours and legends: one of
                      :data:`GROUPS` ("reference" marks enumeration, which reports show
                      as a reference line and never rank)
``multi_sample_bound``  estimates the gradient of ``E log mean_k exp f(z_k)`` (VIMCO), for
                      problems that expose a k-sample bound, instead of ``E f``
``sequential``        takes an autoregressive node (:mod:`dgbench.sequences`) in place of
                      logits: units drawn in order, each depending on the earlier ones
``seed_batching``     draws noise only through :func:`dgbench.noise.uniform` and keeps no
                      state, so the seeds of a cell can train as one stacked model
                      (:mod:`dgbench.harness.seed_batching`). None (the default): yes for
                      built-in estimators without parameters or buffers, no for plugins
``stacks_on_cpu``     stacked seeds pay on the CPU where the problem's do (True, the
                      default); False where the estimator's own arithmetic, not overhead,
                      makes its step (enumeration), so ``--seed-batching auto`` keeps its
                      seeds apart on the CPU
``include_in_all``    part of a suite's ``include = "all"`` (False for a configurable core
                      whose published configurations are registered under their own ids,
                      e.g. ``score-function``; suites add it by name or as ``variants``)

Noise comes only from the ``generator`` passed to ``forward``; see
:mod:`dgbench.noise` for the one-uniform-draw convention.

Learned parts (NVIL's baseline, REBAR's scale and temperature, RELAX's control variate)
are parameters of the estimator module. In training mode ``forward`` records an
auxiliary loss for them (:meth:`Estimator.add_auxiliary_loss`), which the harness
minimises after each step; the estimate's own value and gradient never depend on them
in a way that biases an estimator declared unbiased.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from dgbench.domains import Domain, Integer, Real, check_values
from dgbench.nodes import FAMILIES, NODE_FAMILIES, Node, get_node
from dgbench.registration import Builtins

Objective = Callable[[Tensor], Tensor]

FAMILY_VALUES = ("bernoulli", "categorical", "both", "gaussian", "any")
# Hyperparameters that mean the same in every estimator that takes them; a class declares
# the others, or a different range, in its own ``hyperparameter_domains``.
COMMON_HYPERPARAMETER_DOMAINS: dict[str, Domain] = {
    "samples": Integer(1),
    "temperature": Real(0.0, low_open=True),
    "hidden": Integer(1),
    "draws": Integer(1),
    "decay": Real(0.0, 1.0, high_open=True),
}

GROUPS = ("score function", "multi-sample", "control variates", "antithetic / coupled",
          "relaxed / straight-through", "reference", "other")


class ObjectiveShapeError(ValueError):
    """``f`` returned something other than one value per sample and batch element."""


class Estimator(torch.nn.Module):
    """Base class of every gradient estimator; see the module docstring."""

    id: ClassVar[str] = ""
    family: ClassVar[str] = "both"
    unbiased: ClassVar[bool] = False
    relaxed: ClassVar[bool] = False
    evals_per_sample: ClassVar[int | None] = 1
    extra_evals: ClassVar[int] = 0
    multi_sample: ClassVar[bool] = True
    min_samples: ClassVar[int] = 1
    evals_scale_with_event: ClassVar[bool] = False
    multi_sample_bound: ClassVar[bool] = False
    sequential: ClassVar[bool] = False
    include_in_all: ClassVar[bool] = True
    seed_batching: ClassVar[bool | None] = None
    stacks_on_cpu: ClassVar[bool] = True
    paper: ClassVar[str] = ""
    group: ClassVar[str] = "other"
    hyperparameter_domains: ClassVar[dict[str, Domain]] = {}  # see dgbench.domains

    def __init__(self, node: str = "bernoulli", samples: int | None = None) -> None:
        super().__init__()
        if not self.supports(node):
            raise ValueError(f"estimator {self.id!r} (family {self.family!r}) does not support {node!r} nodes")
        self.node: Node = get_node(node)
        if samples is None:
            samples = self.min_samples
        if isinstance(samples, bool) or not isinstance(samples, int):
            raise TypeError(f"samples must be an int, got {samples!r}")
        if samples < self.min_samples:
            raise ValueError(f"estimator {self.id!r} needs samples >= {self.min_samples}, got {samples}")
        if samples > 1 and not self.multi_sample:
            raise ValueError(f"estimator {self.id!r} takes no samples > 1, got {samples}")
        self.samples = samples
        self._auxiliary: list[Tensor] = []

    def add_auxiliary_loss(self, loss: Tensor) -> None:
        """Record a loss for this estimator's own parameters (training mode only)."""
        if self.training:
            self._auxiliary.append(loss)

    def auxiliary_loss(self) -> Tensor | None:
        """The losses recorded since the last call, summed (None if none); clears them.

        The harness minimises it with respect to this estimator's parameters only, after
        each training step: a learned baseline's regression loss, or the squared norm of
        the gradient estimate (its second moment, hence its variance, since the mean does
        not depend on the control-variate parameters of an unbiased estimator).
        """
        if not self._auxiliary:
            return None
        total = torch.stack([loss.reshape(()) for loss in self._auxiliary]).sum()
        self._auxiliary = []
        return total

    @classmethod
    def supports(cls, node: str) -> bool:
        """Whether this estimator is defined for ``node`` ("bernoulli"/"categorical"/"gaussian")."""
        if node not in NODE_FAMILIES:
            raise ValueError(f"unknown node family {node!r}; expected one of {NODE_FAMILIES}")
        return cls.family in (node, "any") or (cls.family == "both" and node in FAMILIES)

    @classmethod
    def capabilities(cls) -> dict[str, Any]:
        """The declared capabilities as a JSON-ready dict."""
        return {
            "id": cls.id,
            "family": cls.family,
            "unbiased": cls.unbiased,
            "relaxed": cls.relaxed,
            "evals_per_sample": cls.evals_per_sample,
            "extra_evals": cls.extra_evals,
            "multi_sample": cls.multi_sample,
            "min_samples": cls.min_samples,
            "evals_scale_with_event": cls.evals_scale_with_event,
            "multi_sample_bound": cls.multi_sample_bound,
            "sequential": cls.sequential,
            "include_in_all": cls.include_in_all,
            "hyperparameters": cls.default_hyperparameters(),
            "paper": cls.paper,
            "group": cls.group,
        }

    @classmethod
    def min_samples_for(cls, hyperparameters: dict[str, Any]) -> int:
        """The smallest ``samples`` with these hyperparameters (``min_samples`` unless a
        hyperparameter changes it, as the baseline of ``score-function`` does)."""
        return cls.min_samples

    @classmethod
    def default_hyperparameters(cls) -> dict[str, Any]:
        """Constructor arguments other than ``node``, with their defaults.

        Hyperparameters are keyword arguments of ``__init__`` with documented defaults;
        ``samples=None`` means the method's smallest sample count.
        """
        params = inspect.signature(cls.__init__).parameters
        defaults = {
            name: (None if p.default is inspect.Parameter.empty else p.default)
            for name, p in params.items()
            if name not in ("self", "node") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        if defaults.get("samples", 0) is None:
            defaults["samples"] = cls.min_samples
        return defaults

    @classmethod
    def domains(cls) -> dict[str, Domain]:
        """The declared domain of each hyperparameter: the common ones, then each class's
        ``hyperparameter_domains`` along the inheritance chain (the subclass wins)."""
        out = {k: v for k, v in COMMON_HYPERPARAMETER_DOMAINS.items() if k in cls.default_hyperparameters()}
        for klass in reversed(cls.__mro__):
            out.update(vars(klass).get("hyperparameter_domains", {}))
        return out

    @classmethod
    def check_hyperparameters(cls, values: dict[str, Any], what: str | None = None) -> list[str]:
        """Errors in ``values`` against the declared domains (empty: valid), without
        constructing anything (:func:`dgbench.domains.check_values`); ``what`` prefixes
        each message (default: "hyperparameter of ID:")."""
        prefix = f"hyperparameter of {cls.id}:" if what is None else what
        return check_values(values, cls.default_hyperparameters(), cls.domains(), prefix)

    def hyperparameters(self) -> dict[str, Any]:
        """This instance's hyperparameter values (for provenance)."""
        return {name: getattr(self, name) for name in self.default_hyperparameters()}

    def set_temperature(self, temperature: float) -> bool:
        """Set the relaxation temperature of every part that has a fixed one (for
        annealing schedules, :mod:`dgbench.harness.schedules`); False if there is none
        (learned temperatures, as REBAR's, are parameters and are left alone)."""
        found = False
        for module in self.modules():
            derived = isinstance(getattr(type(module), "temperature", None), property)  # e.g. a learned one
            if not derived and isinstance(getattr(module, "temperature", None), (int, float)):
                module.temperature = float(temperature)
                found = True
        return found

    def evals_per_estimate(self, event_shape: torch.Size) -> int:
        """f evaluations one call makes for a node with this event shape."""
        assert self.evals_per_sample is not None
        return self.samples * self.evals_per_sample + self.extra_evals

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def noise_shape(self, logits_shape: torch.Size) -> tuple[int, ...]:
        """Shape of the one uniform tensor a call draws from its generator (the noise
        convention, :mod:`dgbench.noise`): ``(S, *logits.shape)`` by default;
        estimators with several independent draws per sample put their count first. Tests
        replay a call's noise from it."""
        return (self.samples, *logits_shape)

    def randomize_state(self, generator: torch.Generator) -> None:
        """Give learned parts and adaptive state random, non-initial values, so that tests
        of exact single draws and of unbiasedness hold for any state training can reach.

        Default: standard normal values for every parameter, in declaration order (lazily
        sized parameters must have their shapes). Override for constrained parts."""
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))

    # Helpers shared by the estimators -------------------------------------------------

    def evaluate(self, f: Objective, z: Tensor, logits: Tensor, leading: int = 1) -> Tensor:
        """``f(z)``, checked to return one value per sample and batch element."""
        out = f(z)
        expected = z.shape[: leading + logits.dim() - self.node.event_dims]
        if not isinstance(out, Tensor) or out.shape != expected:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ObjectiveShapeError(
                f"f returned {got} for z of shape {tuple(z.shape)}; expected {tuple(expected)} "
                "(one value per sample and batch element)"
            )
        return out

    def attach(self, value: Tensor, logits: Tensor, grad: Tensor) -> Tensor:
        """``value`` with ``grad`` as its gradient with respect to ``logits``.

        Returns ``value + (s - s.detach())`` with ``s = sum_event(grad.detach() * logits)``:
        numerically equal to ``value``, with ``d out / d logits = grad`` added to whatever
        gradient ``value`` already carries.
        """
        s = self.node.sum_event(grad.detach() * logits)
        return value + (s - s.detach())

    def attach_per_sample(self, value: Tensor, logits: Tensor, grad: Tensor) -> Tensor:
        """:meth:`attach` for per-sample logits ``(S, *batch, ...)`` (an autoregressive node's
        teacher-forced logits): ``grad`` holds each sample's share, summed over samples."""
        s = self.node.sum_event(grad.detach() * logits).sum(0)
        return value + (s - s.detach())

    def score_function_sequence(self, sequence: Any, f: Objective, generator: torch.Generator,
                                signal: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Tensor:
        """The score-function estimate on an autoregressive node (:mod:`dgbench.sequences`):

            g = 1/S sum_s l_s d log q(z_s) / d theta,   log q(z) = sum_t log q(z_t | z_<t)

        ``signal(L, z, fz)`` gives the learning signals ``(S, *batch)`` (or per unit) from the
        teacher-forced logits ``L``, the samples and their values."""
        z = sequence.sample(self.samples, generator)
        teacher_forced = sequence.teacher_forced(z)
        fz = self.evaluate(f, z, teacher_forced[0])
        signals = signal(teacher_forced, z, fz)
        if signals.dim() < z.dim():
            signals = self.node.per_sample(signals)
        grad = signals.detach() * self.node.score(z, teacher_forced.detach()) / z.shape[0]
        return self.attach_per_sample(fz.mean(0), teacher_forced, grad)


_BUILTINS: Builtins[type[Estimator]] = Builtins("estimator")
builtin = _BUILTINS.mark  # the class decorator of a built-in estimator; the registry collects them
builtins = _BUILTINS.classes


def state_names(module: torch.nn.Module) -> list[str]:
    """The parameters and buffers an estimator (or a dict of them) keeps of its own: what
    rules out stacking its seeds and compiling its estimate."""
    return [name for name, _ in module.named_parameters()] + [name for name, _ in module.named_buffers()]


def score_function(node: Node, logits: Tensor, z: Tensor, signal: Tensor) -> Tensor:
    """Sample mean of ``signal * d log q(z) / d logits``.

    ``signal`` is ``(S, *batch)`` (one learning signal per sample) or already
    broadcastable to ``z`` (one per coordinate); it is treated as a constant.
    """
    if signal.dim() < z.dim():
        signal = node.per_sample(signal)
    return (signal.detach() * node.score(z, logits.detach())).mean(0)
