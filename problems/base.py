"""The problem contract.

A problem owns its model, data and objective, and exposes one or more discrete
stochastic nodes. Every node of a problem has the problem's ``family``; each node gets
its own estimator instance (a mapping ``{node name: estimator}``), because estimators
may carry state (moving averages, learned baselines).

Class attributes:

``family``          node family, "bernoulli" or "categorical"
``minimize``        whether the objective is minimised (False: maximised, e.g. an ELBO)
``differentiable``  whether f is differentiable in z (relaxed estimators need it)
``batch_dims``      trailing batch dims of the per-sample values that :meth:`objective`
                    averages over (0 for toys, 1 for problems on minibatches of data)
``scores``          the true scores a trained model is judged by, best first: held-out
                    evaluation metrics (names of :meth:`evaluate`'s keys) with their
                    direction. Reports rank on the first, never on the training
                    objective (a relaxed estimator's own surrogate). Default: the exact
                    objective at hard samples, in the objective's direction.
``test_options``    options that make the problem small enough for the generic tests
                    (every registered problem runs through them with these)
``sequential``      the node is autoregressive (:mod:`dgbench.sequences`): ``logits()``
                    returns an :class:`~dgbench.sequences.Autoregressive` and only
                    estimators declaring ``sequential`` apply
``seed_batching``   the problem's code broadcasts a leading member dim (its parameters
                    stacked over seeds, :mod:`dgbench.harness.seed_batching`): its
                    layers are ``nn.Linear`` and its own parameters broadcast against
                    per-example tensors; :meth:`seed_batching_refusal` may still refuse
                    some options
``stacks_on_cpu``   stacked seeds pay on the CPU too: a step so small that Python and
                    autograd overhead, which stacking shares among the members, dominates
                    it (the toys; measured in benchmarks/measurements). ``--seed-batching
                    auto`` stacks these on the CPU and every ``seed_batching`` problem on
                    CUDA; :meth:`stacks_on_cpu_with` decides per options where the size
                    of the model depends on them (a VAE on the 8x8 digits, not on MNIST)
``bound_option``    the option holding k where the objective can be a k-sample bound
                    (``bound_samples``; None: no such objective). Estimators declaring
                    ``multi_sample_bound`` (VIMCO) apply only when k > 1.

Construction: ``Problem(**options, dtype=..., device=..., generator=...)``. Every random
choice made at construction (initial parameters, the first minibatch) is drawn from
``generator`` (a CPU ``torch.Generator``; the harness seeds it from the problem, its
options and the seed index), never from torch's global RNG, so that cells can be built
concurrently in one process. ``problems.layers.linear`` builds ``nn.Linear`` layers that way.

Methods:

``node_names()``        names of the stochastic nodes, data side first
``logits()``            the first node's logits on the current batch, ``(*batch, D[, K])``
``f(z)``                the per-sample objective of the first node,
                        ``(*S, *replicas, *batch, D[, K]) -> (*S, *replicas, *batch)``
``analytic(logits)``    the part of the objective computed in closed form (e.g. minus a
                        KL divergence), differentiated exactly; None if there is none
``objective(estimators, logits, generator)``  the objective estimate per replica: logits
                        with any leading replica dims ``(*R, *batch, ...)`` -> ``(*R,)``.
                        Multi-node problems override it and nest estimator calls: the f of
                        one node samples the next node through its estimator.
``loss(estimators, generator)``  the scalar training objective on the current batch
``logit_parameters()``  the parameters that produce the first node's logits; gradient
                        statistics are taken with respect to these
``next_batch(generator)``  draw the next training minibatch (no-op without data)
``batch_state()`` / ``load_batch_state(state)``  the position in the training data, for
                        checkpoints of training cells (nothing without data)
``prepare_data(options)``  class method: download/verify data before workers start
``evaluate()``          evaluation metrics at the current parameters
``exact_objective()`` / ``exact_gradient()``  closed forms where the problem has them
                        (None otherwise; the harness enumerates small nodes itself)

Problems never import estimators: they receive them as arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from dgbench.domains import Domain, check_values
from dgbench.errors import NotApplicable
from dgbench.registration import Builtins

Estimate = Callable[..., Tensor]
Estimators = Mapping[str, Estimate] | torch.nn.ModuleDict | Estimate


@dataclass(frozen=True)
class Score:
    """A true score of a trained model: an evaluation metric and its direction."""

    metric: str  # a key of Problem.evaluate()
    label: str  # how reports name it, e.g. "test ELBO (nats)"
    higher_is_better: bool


class Problem(torch.nn.Module):
    id: ClassVar[str] = ""
    family: ClassVar[str] = "bernoulli"
    minimize: ClassVar[bool] = True
    differentiable: ClassVar[bool] = True
    batch_dims: ClassVar[int] = 0
    bound_option: ClassVar[str | None] = None
    sequential: ClassVar[bool] = False
    seed_batching: ClassVar[bool] = False
    stacks_on_cpu: ClassVar[bool] = False
    description: ClassVar[str] = ""
    scores: ClassVar[tuple[Score, ...]] = ()
    # The metric a suite's grid selects on by default (None: the first declared score); a
    # problem with a validation split names it, so that test metrics never choose.
    selection: ClassVar[str | None] = None
    option_domains: ClassVar[dict[str, Domain]] = {}  # see dgbench.domains
    # Options of a small configuration with an exact gradient on which `dgbench compare` and
    # `gradcheck`'s gate test an estimator's declared unbiasedness (None: not used for it).
    unbiasedness_gate: ClassVar[dict[str, Any] | None] = None
    test_options: ClassVar[dict[str, Any]] = {}  # options that make it small for the generic tests

    @classmethod
    def declared_scores(cls) -> tuple[Score, ...]:
        """:attr:`scores`, or by default the exact objective at hard samples (what the
        default :meth:`evaluate` reports) in the objective's direction."""
        if cls.scores:
            return cls.scores
        return (Score("exact_objective", "exact objective at hard samples", higher_is_better=not cls.minimize),)

    def evaluation_splits(self) -> tuple[str, ...]:
        """The held-out splits :meth:`evaluate` reports separately (metrics ``SPLIT_*``);
        empty for a problem evaluated as a whole. Splits can be restricted with
        :meth:`restrict_evaluation`, so that a tuned run evaluates its expensive test bound
        only at the selected grid point (:mod:`dgbench.harness.deferred`)."""
        return ()

    def restrict_evaluation(self, splits: set[str]) -> None:
        """Evaluate only ``splits`` of :meth:`evaluation_splits` from now on."""
        if set(self.evaluation_splits()) - splits:
            raise NotImplementedError(f"{self.id} cannot restrict its evaluation")

    @classmethod
    def selection_metric(cls) -> str:
        """The metric a grid selects on unless the suite says otherwise."""
        return cls.selection or cls.declared_scores()[0].metric

    def node_names(self) -> tuple[str, ...]:
        return ("z",)

    def logits(self) -> Tensor:
        raise NotImplementedError

    def f(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def analytic(self, logits: Tensor) -> Tensor | None:
        return None

    def logit_parameters(self) -> dict[str, torch.nn.Parameter]:
        return dict(self.named_parameters())

    def node_estimators(self, estimators: Estimators) -> Mapping[str, Estimate]:
        """``estimators`` as a mapping over :meth:`node_names`.

        A single estimator is accepted for a one-node problem only: sharing one stateful
        instance between nodes would mix their statistics.
        """
        names = self.node_names()
        if isinstance(estimators, (Mapping, torch.nn.ModuleDict)):
            missing = [n for n in names if n not in estimators]
            if missing:
                raise ValueError(f"{self.id}: no estimator for node(s) {missing}; nodes are {list(names)}")
            return estimators
        if len(names) != 1:
            raise ValueError(f"{self.id} has nodes {list(names)}: pass one estimator per node as a mapping")
        return {names[0]: estimators}

    def reduce(self, values: Tensor) -> Tensor:
        """Average per-example values over the trailing ``batch_dims``."""
        if self.batch_dims == 0:
            return values
        return values.mean(dim=tuple(range(-self.batch_dims, 0)))

    def check_sequential(self, estimator: Any) -> None:
        """Raise :class:`NotApplicable` if this problem's node is autoregressive and
        ``estimator`` does not declare ``sequential`` (it needs factorised units)."""
        if self.sequential and not getattr(estimator, "sequential", False):
            raise NotApplicable(f"{getattr(estimator, 'id', estimator)} needs factorised units; {self.id}'s node "
                                "is autoregressive")

    def objective(self, estimators: Estimators, logits: Tensor, generator: torch.Generator | None) -> Tensor:
        """Objective estimate per replica, ``(*R, *batch, event) -> (*R,)``."""
        (name,) = self.node_names()
        self.check_sequential(self.node_estimators(estimators)[name])
        values = self.node_estimators(estimators)[name](logits, self.f, generator=generator)
        extra = self.analytic(logits)
        if extra is not None:
            values = values + extra
        return self.reduce(values)

    def loss(self, estimators: Estimators, generator: torch.Generator | None) -> Tensor:
        """Scalar objective estimate whose gradient is the training gradient."""
        objective = self.objective(estimators, self.logits(), generator)
        return objective if objective.dim() == 0 else objective.sum()  # a scalar needs no sum op

    def next_batch(self, generator: torch.Generator) -> None:
        """Move to the next training minibatch (problems without data: nothing to do)."""

    @classmethod
    def stacks_on_cpu_with(cls, options: dict[str, Any]) -> bool:
        """Whether stacked seeds of this problem with ``options`` pay on the CPU (default:
        the class's ``stacks_on_cpu``)."""
        return cls.stacks_on_cpu

    @classmethod
    def seed_batching_refusal(cls, options: dict[str, Any]) -> str | None:
        """Why the seeds of this problem with ``options`` cannot train as one stacked
        model, or None when they can."""
        if not cls.seed_batching:
            return f"{cls.id} does not declare seed_batching (its code may not broadcast a member dim)"
        if cls.sequential:
            return f"{cls.id}'s node is autoregressive"
        return None

    def take_member_batches(self, members: list[Problem]) -> None:
        """Seed batching: make the members' current minibatches this stacked model's,
        along a leading member dim (problems without data: nothing to do)."""

    def batch_state(self) -> dict[str, Any]:
        """Where the problem stands in its training data, for checkpoints (beyond
        ``state_dict``); empty without data."""
        return {}

    def load_batch_state(self, state: dict[str, Any]) -> None:
        """Return to a position saved by :meth:`batch_state`."""

    def evals_per_estimate(self, estimators: Estimators) -> int:
        """f evaluations one objective estimate makes (the first node's count)."""
        (name,) = self.node_names()
        est = self.node_estimators(estimators)[name]
        logits = self.logits()
        return est.evals_per_estimate(logits.shape[logits.dim() - est.node.event_dims :])

    def exact_objective(self) -> Tensor | None:
        return None

    def evaluate(self) -> dict[str, float]:
        """Evaluation metrics at the current parameters (default: the exact objective)."""
        exact = self.exact_objective()
        return {} if exact is None else {"exact_objective": float(exact.detach())}

    def exact_gradient(self) -> dict[str, Tensor] | None:
        return None

    @classmethod
    def bound_size(cls, options: dict[str, Any]) -> int | None:
        """k of the k-sample bound these options define (None: the problem has no such objective)."""
        if cls.bound_option is None:
            return None
        return int(options.get(cls.bound_option, cls.default_options()[cls.bound_option]))

    @classmethod
    def multi_sample_bound_refusal(cls, options: dict[str, Any]) -> str | None:
        """Why a multi-sample-bound estimator (VIMCO) cannot run here, or None if it can."""
        k = cls.bound_size(options)
        if k is None:
            return "estimates the gradient of a k-sample bound; the problem's objective is not one"
        if k < 2:
            return f"estimates the gradient of a k-sample bound; set {cls.bound_option} > 1 (it is {k})"
        return None

    def check_multi_sample_estimator(self, estimator: Any) -> None:
        """Raise :class:`NotApplicable` unless ``estimator`` draws exactly this bound's k samples."""
        refusal = self.multi_sample_bound_refusal(self.options())
        if refusal:
            raise NotApplicable(f"{estimator.id} {refusal}")
        k = self.bound_size(self.options())
        if estimator.samples != k:
            raise NotApplicable(f"{estimator.id} draws samples={estimator.samples}, but the bound has "
                                f"{self.bound_option}={k}")

    @classmethod
    def prepare_data(cls, options: dict[str, Any]) -> None:
        """Fetch or verify the data these options need (raises ``DataUnavailable``)."""

    defaults: ClassVar[dict[str, Any]] = {}  # a preset's options as data (else read from __init__)

    @classmethod
    def default_options(cls) -> dict[str, Any]:
        """Constructor options and their defaults (``dtype``, ``device`` and ``generator`` excluded): a
        preset's ``defaults``, or the keyword-only parameters of ``__init__``."""
        if cls.defaults:
            return dict(cls.defaults)
        params = inspect.signature(cls.__init__).parameters
        return {
            name: p.default
            for name, p in params.items()
            if name not in ("self", "dtype", "device", "generator") and p.kind is p.KEYWORD_ONLY
        }

    @classmethod
    def domains(cls) -> dict[str, Domain]:
        """The declared domain of each option, along the inheritance chain (the subclass wins)."""
        out: dict[str, Domain] = {}
        for klass in reversed(cls.__mro__):
            out.update(vars(klass).get("option_domains", {}))
        return {k: v for k, v in out.items() if k in cls.default_options()}

    @classmethod
    def check_options(cls, values: dict[str, Any], what: str | None = None) -> list[str]:
        """Errors in ``values`` against the declared domains (empty: valid), without
        constructing the problem (:func:`dgbench.domains.check_values`); ``what`` prefixes
        each message (default: "option of ID:")."""
        prefix = f"option of {cls.id}:" if what is None else what
        return check_values(values, cls.default_options(), cls.domains(), prefix)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "id": cls.id,
            "family": cls.family,
            "minimize": cls.minimize,
            "differentiable": cls.differentiable,
            "sequential": cls.sequential,
            "options": cls.default_options(),
            "scores": [asdict(score) for score in cls.declared_scores()],
            "selection": cls.selection_metric(),
            "description": cls.description,
        }

    def options(self) -> dict[str, Any]:
        """This instance's option values."""
        return {name: getattr(self, name) for name in self.default_options()}


_BUILTINS: Builtins[type[Problem]] = Builtins("problem")
builtin = _BUILTINS.mark  # the class decorator of a built-in problem; the registry collects them
builtins = _BUILTINS.classes
