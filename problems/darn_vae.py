"""A variational autoencoder whose posterior over binary latents is autoregressive (DARN).

    q(z | x) = prod_i Bernoulli(z_i; sigmoid(e_i(x) + sum_{j<i} W_ij z_j))
    p(z)     = factorised, learned logits;   p(x | z) = prod_j Bernoulli(x_j; sigmoid(g_j(z)))

maximising the ELBO per example, ``E_q[log p(x, z) - log q(z | x)]``, with ``W`` strictly
lower triangular (initially 0, the factorised posterior, unless ``autoregressive_init``
gives the standard deviation of its initial entries). The autoregressive posterior is
the deep autoregressive network's (Gregor, Danihelka, Mnih, Blundell & Wierstra, 2014,
"Deep AutoRegressive Networks", ICML), used as the recognition model of NVIL's experiments
(Mnih & Gregor, 2014). The KL term has no closed form, so the estimator under test
estimates ``E_q[f(z)]`` with ``f(z) = log p(x, z) - log q(z | x)`` (the sampled-KL learning
signal of :mod:`dgbench.problems.vae`), and ``log q`` is differentiated pathwise.

The node is autoregressive (:mod:`dgbench.sequences`): samples are drawn unit by unit,
score-function estimators differentiate ``log q(z) = sum_i log q(z_i | z_<i)`` and relaxed
ones feed each relaxed unit into the next unit's logits; estimators that need factorised
units are skipped. The default (12 latents on the bundled digits, ``2^12`` states) keeps
the exact ELBO gradient computable by enumeration; ``dataset = "mnist"`` with 200
latents is the paper-sized model.

Options: ``dataset`` ("digits" or "mnist"), ``latents``, ``hidden`` (encoder widths; the
decoder mirrors them), ``batch_size``, ``prior`` ("learned"/"uniform"), evaluation as the
other VAEs (``iw_samples``, ``eval_examples``, ``eval_splits``), ``autoregressive_init``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dgbench.domains import Real
from dgbench.nodes import BERNOULLI
from dgbench.problems.base import Estimators, builtin
from dgbench.problems.datasets import DATASETS, prepare
from dgbench.problems.layers import default_generator
from dgbench.problems.vae import DiscreteVAE
from dgbench.sequences import Autoregressive


class DARNPosterior(Autoregressive):
    """``q(z | x)`` as an autoregressive Bernoulli node: base logits ``(*batch, D)`` plus
    the strictly lower-triangular weights ``W``."""

    def __init__(self, base: Tensor, weights: Tensor, replicas: int = 0) -> None:
        super().__init__(BERNOULLI, tuple(base.shape), base.dtype, base.device, replicas)
        self.base, self.weights = base, weights

    def initial_state(self, lead: tuple[int, ...]) -> Tensor:
        return self.base.expand(*lead, *self.base.shape)

    def step(self, state: Tensor, t: int, previous: Tensor | None) -> tuple[Tensor, Tensor]:
        if previous is not None:  # unit t - 1 reaches the units after it through column t - 1
            state = state + previous * self.weights[:, t - 1]
        return state[..., t:t + 1], state

    def teacher_forced(self, z: Tensor) -> Tensor:
        return self.base + z @ self.weights.T

    def context(self) -> Tensor:
        return self.base.detach()

    def _replicated(self, n: int) -> DARNPosterior:
        return DARNPosterior(self.base.expand(n, *self.base.shape), self.weights, replicas=1)


@builtin
class DARNVAE(DiscreteVAE):
    option_domains = {"autoregressive_init": Real(0.0)}
    id = "darn-vae"
    family = "bernoulli"
    sequential = True
    bound_option = None
    description = ("VAE with an autoregressive (DARN) Bernoulli posterior, 64-12-64 on the digits by default "
                   "(exact gradient by enumerating 2^12 states); dataset=mnist for the full-size model")
    defaults = {"dataset": "digits", "latents": 12, "hidden": "", "batch_size": 16, "prior": "learned",
                "autoregressive_init": 0.0, "iw_samples": 100, "valid_iw_samples": 0, "eval_examples": 0, "eval_splits": "train,valid,test"}
    test_options = {"latents": 5, "batch_size": 4, "iw_samples": 5, "eval_examples": 16}

    def __init__(self, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
                 generator: torch.Generator | None = None, **options: Any) -> None:
        nn.Module.__init__(self)
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise TypeError(f"{self.id}: unknown option(s) {', '.join(unknown)} (valid: {', '.join(self.defaults)})")
        values = {**self.defaults, **options}
        if values["dataset"] not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {values['dataset']!r}")
        self.dataset = values.pop("dataset")
        self.autoregressive_init = float(values.pop("autoregressive_init"))
        if self.autoregressive_init < 0:
            raise ValueError(f"autoregressive_init must be >= 0, got {self.autoregressive_init}")
        generator = default_generator(generator)
        self._build(**values, categories=2, kl="sampled", bound_samples=1, dtype=dtype or self.default_dtype,
                    device=device, generator=generator)
        weights = torch.randn((self.latents, self.latents), generator=generator) * self.autoregressive_init
        self.autoregressive = nn.Parameter(weights.to(dtype=self.input_mean.dtype, device=self.input_mean.device))

    @classmethod
    def prepare_data(cls, options: dict) -> None:
        prepare(options.get("dataset", cls.defaults["dataset"]))

    def posterior(self, x: Tensor) -> DARNPosterior:
        return DARNPosterior(self.encode(x), torch.tril(self.autoregressive, -1))

    # The problem contract ----------------------------------------------------------------

    def logits(self) -> DARNPosterior:
        return self.posterior(self.x)

    def logit_parameters(self) -> dict[str, nn.Parameter]:
        return {**super().logit_parameters(), "autoregressive": self.autoregressive}

    def _log_weight(self, z: Tensor, posterior: DARNPosterior, x: Tensor | None = None) -> Tensor:
        x = self.x if x is None else x
        return self.log_likelihood(x, z) + BERNOULLI.log_prob(z, self.prior_logits) - posterior.log_prob(z)

    def log_weights(self, x: Tensor, samples: int, generator: torch.Generator) -> Tensor:
        posterior = self.posterior(x)
        return self._log_weight(posterior.sample(samples, generator), posterior, x)

    def f(self, z: Tensor) -> Tensor:
        return self._log_weight(z, self.logits())

    def analytic(self, logits: Any) -> Tensor | None:
        return None

    def objective(self, estimators: Estimators, logits: Any, generator: torch.Generator | None) -> Tensor:
        estimator = self.node_estimators(estimators)["z"]
        self.check_sequential(estimator)
        return self.reduce(estimator(logits, lambda z: self._log_weight(z, logits), generator=generator))
