"""The problem contract.

A problem owns its parameters and objective and exposes one discrete stochastic node:

``family``              node family, "bernoulli" or "categorical"
``minimize``            whether the objective is minimised (False: maximised, e.g. an ELBO)
``differentiable``      whether f is differentiable in z (relaxed estimators need it)
``logits()``            the node's logits at the current parameters, ``(*batch, D[, K])``
``f(z)``                the objective per sample, ``(*S, *batch, D[, K]) -> (*S, *batch)``;
                        it must accept relaxed (continuous) z for relaxed estimators
``logit_parameters()``  the parameters that produce the logits; gradient statistics are
                        taken with respect to these
``loss(estimate, generator)``  the scalar training objective for one step, given an
                        estimator (any callable with the estimator signature)
``exact_objective()`` / ``exact_gradient()``  closed forms where the problem has them
                        (None otherwise; the harness can still enumerate small nodes)

Problems never import estimators: they receive one as an argument.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

Estimate = Callable[..., Tensor]


class Problem(torch.nn.Module):
    id: ClassVar[str] = ""
    family: ClassVar[str] = "bernoulli"
    minimize: ClassVar[bool] = True
    differentiable: ClassVar[bool] = True
    description: ClassVar[str] = ""

    def logits(self) -> Tensor:
        raise NotImplementedError

    def f(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def logit_parameters(self) -> dict[str, torch.nn.Parameter]:
        return dict(self.named_parameters())

    def loss(self, estimate: Estimate, generator: torch.Generator) -> Tensor:
        """Scalar objective estimate whose gradient is the training gradient."""
        return estimate(self.logits(), self.f, generator=generator).sum()

    def exact_objective(self) -> Tensor | None:
        return None

    def evaluate(self) -> dict[str, float]:
        """Evaluation metrics at the current parameters (default: the exact objective)."""
        exact = self.exact_objective()
        return {} if exact is None else {"exact_objective": float(exact.detach())}

    def exact_gradient(self) -> dict[str, Tensor] | None:
        return None

    @classmethod
    def default_options(cls) -> dict[str, Any]:
        """Constructor options and their defaults (``dtype`` and ``device`` excluded)."""
        params = inspect.signature(cls.__init__).parameters
        return {
            name: p.default
            for name, p in params.items()
            if name not in ("self", "dtype", "device") and p.kind is p.KEYWORD_ONLY
        }

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "id": cls.id,
            "family": cls.family,
            "minimize": cls.minimize,
            "differentiable": cls.differentiable,
            "options": cls.default_options(),
            "description": cls.description,
        }

    def options(self) -> dict[str, Any]:
        """This instance's option values."""
        return {name: getattr(self, name) for name in self.default_options()}
