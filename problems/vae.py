"""Variational autoencoders with one layer of discrete latents, on binary images.

    q(z | x) = prod_d Bernoulli(sigmoid(e_d(x)))   or   prod_d Categorical(softmax(e_d(x)))
    p(z)     = factorised, with learned logits ("learned") or uniform ("uniform")
    p(x | z) = prod_j Bernoulli(x_j; sigmoid(g_j(z)))

Training maximises the ELBO per example on minibatches,

    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z)),

where the estimator under test estimates ``E_q[f(z)]`` and its gradient w.r.t. the
encoder's logits. With ``kl="analytic"`` (default) ``f(z) = log p(x | z)`` and the KL
divergence between the two factorised distributions is computed and differentiated
exactly, as in the Gumbel-Softmax paper. With ``kl="sampled"``,
``f(z) = log p(x, z) - log q(z | x)`` (the single-sample learning signal of the
REBAR/RELAX/ARM/DisARM experiments), whose dependence on the encoder through
``log q`` is differentiated pathwise. With ``bound_samples = k > 1`` the objective is the
k-sample importance-weighted bound ``E log (1/k) sum_i p(x, z_i) / q(z_i | x)`` (Burda et
al., 2016): the node then holds the k samples' units side by side, f is the bound of
one joint draw, and VIMCO instead draws the k samples itself with f = log w. The decoder and a learned prior get pathwise
gradients through the estimate's value.

Choices (the same for every estimator): encoder inputs are centred by the training
mean; the decoder's output bias starts at the logit of the training mean (clamped to
[1e-3, 1 - 1e-3]); weights use PyTorch's default initialisation; ``hidden`` gives the
widths of the deterministic hidden layers of the encoder (the decoder mirrors them),
empty for linear maps. Evaluation: ELBO and the k-sample importance-weighted bound
(``iw_samples = k``) on a training subset, the validation and the test set, or those named
in ``eval_splits`` (:mod:`dgbench.problems.lvm`).

Problems:

* ``vae-bernoulli-linear``: 784-200-784, linear, learned prior, batch 50 (DisARM,
  Dong et al., 2020, NeurIPS; RELAX, Grathwohl et al., 2018; their papers use Adam 1e-4).
* ``vae-bernoulli-nonlinear``: 784-[200-200]-200 / 200-[200-200]-784, LeakyReLU(0.3)
  (the DisARM paper's nonlinear model).
* ``vae-categorical``: 20 latents of 10 classes, 784-[512-256] encoder, ReLU, uniform
  prior, batch 100 (Jang et al., 2017, Categorical Reparameterization with Gumbel-Softmax).
* ``vae-bernoulli-digits`` / ``vae-categorical-digits``: the same kinds of model, smaller,
  on the bundled 8x8 digits (no download).
* ``vae-bernoulli-tiny``: digits, 12 Bernoulli latents, linear: ``2^12`` latent states,
  so the exact gradient of the ELBO w.r.t. the encoder is computed by enumeration.
* ``vae-gaussian`` / ``vae-gaussian-mnist``: the same model with Gaussian latents
  (``q(z | x) = N(mu(x), diag sigma(x)^2)``, prior ``N(0, I)`` or learned), the reference
  point of the pathwise (reparameterisation) gradient: Kingma & Welling (2014),
  Auto-Encoding Variational Bayes, ICLR; Rezende, Mohamed & Wierstra (2014), ICML. The
  score-function estimators run on it too (they need only samples and the score); the
  discrete-only ones are skipped. ``vae-gaussian`` has 2 latents on the digits, so the
  exact gradient comes from Gauss-Hermite quadrature (``exact``); ``vae-gaussian-mnist``
  mirrors ``vae-bernoulli-linear`` (784-200-784, linear) for the reparameterisation gap.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dgbench.domains import Choice, IntegerList
from dgbench.nodes import get_node
from dgbench.problems import latent
from dgbench.problems.base import Estimators, builtin
from dgbench.problems.datasets import image_splits, prepare, training_mean
from dgbench.problems.layers import default_generator, linear
from dgbench.problems.lvm import LatentVariableModel

PRIORS = ("learned", "uniform")
KL_MODES = ("analytic", "sampled")


def parse_widths(hidden: str) -> list[int]:
    """``"200,200"`` -> ``[200, 200]``; ``""`` -> ``[]``."""
    try:
        widths = [int(w) for w in str(hidden).replace(" ", "").split(",") if w]
    except ValueError:
        raise ValueError(f"hidden must be comma-separated layer widths like '200,200', got {hidden!r}") from None
    if any(w < 1 for w in widths):
        raise ValueError(f"hidden layer widths must be >= 1, got {hidden!r}")
    return widths


def mlp(widths: list[int], activation: str, generator: torch.Generator) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(linear(a, b, generator))
        if i < len(widths) - 2:
            layers.append(nn.LeakyReLU(0.3) if activation == "leaky_relu" else nn.ReLU())
    return nn.Sequential(*layers)


class DiscreteVAE(LatentVariableModel):
    option_domains = {"hidden": IntegerList(), "prior": Choice(PRIORS), "kl": Choice(KL_MODES)}
    """One discrete latent layer; subclasses fix the family, data set and defaults."""

    family: ClassVar[str] = "bernoulli"
    bound_option = "bound_samples"
    dataset: ClassVar[str] = "mnist"
    activation: ClassVar[str] = "leaky_relu"
    differentiable = True
    default_dtype: ClassVar[torch.dtype] = torch.float32
    max_latents: ClassVar[int | None] = None
    seed_batching = True

    @classmethod
    def stacks_on_cpu_with(cls, options: dict[str, Any]) -> bool:
        # On the digits (64 pixels, a few latents) a step is overhead: 8 stacked seeds cost
        # 0.21-0.28 of a seed's step each (benchmarks.seed_batched_step, 2026-12-07); an
        # MNIST model's GEMMs gain nothing from stacking on the CPU.
        return options.get("dataset", cls.dataset) == "digits"

    @classmethod
    def seed_batching_refusal(cls, options: dict[str, Any]) -> str | None:
        k = options.get("bound_samples", cls.defaults.get("bound_samples", 1))
        if k > 1:  # the k blocks of units put a dim between the batch and the features
            return f"{cls.id} with bound_samples={k} (a k-sample bound) trains per seed"
        return super().seed_batching_refusal(options)

    def __init__(self, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
                 generator: torch.Generator | None = None, **options: Any) -> None:
        """A preset: ``options`` override the class's ``defaults`` (the data of the preset)."""
        super().__init__()
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise TypeError(f"{self.id}: unknown option(s) {', '.join(unknown)} (valid: {', '.join(self.defaults)})")
        values = {**self.defaults, **options}
        if self.max_latents is not None and values["latents"] > self.max_latents:
            raise ValueError(f"{self.id} is enumerable only up to {self.max_latents} latents, got {values['latents']}")
        if "categories" in values:
            self.categories = values["categories"]
        self._build(**{"categories": 2, **values}, dtype=dtype or self.default_dtype, device=device,
                    generator=default_generator(generator))

    def _build(
        self,
        *,
        latents: int,
        categories: int,
        hidden: str,
        batch_size: int,
        prior: str,
        kl: str,
        bound_samples: int,
        iw_samples: int,
        eval_examples: int,
        eval_splits: str,
        dtype: torch.dtype,
        valid_iw_samples: int = 0,
        device: str | torch.device,
        generator: torch.Generator,
    ) -> None:
        if latents < 1:
            raise ValueError(f"latents must be >= 1, got {latents}")
        if self.family == "categorical" and categories < 2:
            raise ValueError(f"categories must be >= 2, got {categories}")
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        if kl not in KL_MODES:
            raise ValueError(f"kl must be one of {KL_MODES}, got {kl!r}")
        if bound_samples < 1:
            raise ValueError(f"bound_samples must be >= 1, got {bound_samples}")
        self.bound_samples = bound_samples
        self.latents, self.hidden, self.batch_size = latents, hidden, batch_size
        self.prior, self.kl, self.iw_samples, self.eval_examples = prior, kl, iw_samples, eval_examples
        self.valid_iw_samples = valid_iw_samples
        if self.family == "gaussian" and bound_samples > 1:
            raise ValueError("bound_samples > 1 is defined for the discrete VAEs only")
        # The encoder's output per example: units, units x categories, or [mu, log sigma].
        self.latent_shape = {"bernoulli": (latents,), "categorical": (latents, categories),
                             "gaussian": (2 * latents,)}[self.family]
        widths = parse_widths(hidden)

        splits = image_splits(self.dataset, torch.uint8, device)
        pixels = splits["train"].shape[1]
        mean = training_mean(self.dataset, dtype, device)
        self.register_buffer("input_mean", mean)
        features = math.prod(self.latent_shape)
        sample_features = latents if self.family == "gaussian" else features
        self.encoder = mlp([pixels, *widths, features], self.activation, generator)
        self.decoder = mlp([sample_features, *reversed(widths), pixels], self.activation, generator)
        with torch.no_grad():
            p = mean.clamp(1e-3, 1 - 1e-3)
            self.decoder[-1].bias.copy_(torch.log(p) - torch.log1p(-p))
        prior_logits = torch.zeros(self.latent_shape)
        if prior == "learned":
            self.prior_logits = nn.Parameter(prior_logits)
        else:
            self.register_buffer("prior_logits", prior_logits)
        self.to(device=device, dtype=dtype)
        self._set_training_data(splits["train"], batch_size, generator, dtype=dtype)
        self._set_evaluation(splits, iw_samples, eval_examples, eval_splits, valid_iw_samples, dtype)

    @classmethod
    def prepare_data(cls, options: dict) -> None:
        prepare(cls.dataset)

    # The model ---------------------------------------------------------------------

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x - self.input_mean).reshape(*x.shape[:-1], *self.latent_shape)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """``log p(x | z)``; ``z`` may carry leading sample/replica dims and be relaxed."""
        return latent.bernoulli_log_likelihood(x, self.decoder(get_node(self.family).features(z)))

    def log_weights(self, x: Tensor, samples: int, generator: torch.Generator) -> Tensor:
        logits = self.encode(x)
        return self._log_weight(get_node(self.family).sample(logits, samples, generator), logits, x)

    # The problem contract -------------------------------------------------------------

    def logits(self) -> Tensor:
        logits = self.encode(self.x)
        if self.bound_samples == 1:
            return logits
        # The k joint samples of the k-sample bound side by side: k copies of the units.
        repeats = [1] * logits.dim()
        repeats[logits.dim() - get_node(self.family).event_dims] = self.bound_samples
        return logits.repeat(*repeats)

    def _blocks(self, t: Tensor) -> Tensor:
        """``(..., k*D[, K]) -> (..., k, D[, K])``: split the tiled units into the k samples."""
        axis = t.dim() - get_node(self.family).event_dims
        return t.unflatten(axis, (self.bound_samples, self.latents))

    def _log_weight(self, z: Tensor, logits: Tensor, x: Tensor | None = None) -> Tensor:
        """``log p(x, z) - log q(z | x)`` per sample (``q`` from ``logits``, pathwise)."""
        x = self.x if x is None else x
        return (self.log_likelihood(x, z) + get_node(self.family).log_prob(z, self.prior_logits)
                - get_node(self.family).log_prob(z, logits))

    def logit_parameters(self) -> dict[str, nn.Parameter]:
        return {f"encoder.{k}": v for k, v in self.encoder.named_parameters()}

    def f(self, z: Tensor) -> Tensor:
        return self.log_likelihood(self.x, z)

    def analytic(self, logits: Tensor) -> Tensor | None:
        if self.kl != "analytic":
            return None
        return -get_node(self.family).kl_divergence(logits, self.prior_logits)

    def objective(self, estimators: Estimators, logits: Tensor, generator: torch.Generator | None) -> Tensor:
        estimator = self.node_estimators(estimators)["z"]
        if getattr(estimator, "multi_sample_bound", False):
            return self._bound_by_multi_sample_estimator(estimator, logits, generator)
        if self.bound_samples > 1:
            def bound(z: Tensor) -> Tensor:  # x gets a dim for the k blocks of units
                return latent.logmeanexp(self._log_weight(self._blocks(z), self._blocks(logits), self.x.unsqueeze(-2)), -1)

            return self.reduce(estimator(logits, bound, generator=generator))
        if self.kl == "analytic":
            return super().objective(estimators, logits, generator)
        return self.reduce(estimator(logits, lambda z: self._log_weight(z, logits), generator=generator))

    def _bound_by_multi_sample_estimator(self, estimator, logits: Tensor, generator) -> Tensor:
        """VIMCO: the estimator draws the k samples itself from one block of the logits."""
        self.check_multi_sample_estimator(estimator)
        single = self._blocks(logits).select(logits.dim() - get_node(self.family).event_dims, 0)
        return self.reduce(estimator(single, lambda z: self._log_weight(z, single), generator=generator))


# The options every VAE preset shares, with their defaults.
_COMMON = {"kl": "analytic", "bound_samples": 1, "iw_samples": 100, "valid_iw_samples": 0, "eval_examples": 0,
           "eval_splits": "train,valid,test"}


@builtin
class VAEBernoulliLinear(DiscreteVAE):
    id = "vae-bernoulli-linear"
    description = "Bernoulli VAE 784-200-784, linear, learned prior, binarized MNIST (DisARM/RELAX setup)"
    defaults = {"latents": 200, "hidden": "", "batch_size": 50, "prior": "learned", **_COMMON}
    test_options = {"latents": 8, "batch_size": 4, "iw_samples": 5, "eval_examples": 16}


@builtin
class VAEBernoulliNonlinear(DiscreteVAE):
    id = "vae-bernoulli-nonlinear"
    description = "Bernoulli VAE 784-[200-200]-200 / 200-[200-200]-784, LeakyReLU(0.3), binarized MNIST (DisARM)"
    defaults = {"latents": 200, "hidden": "200,200", "batch_size": 50, "prior": "learned", **_COMMON}
    test_options = {"latents": 8, "hidden": "16,16", "batch_size": 4, "iw_samples": 5, "eval_examples": 16}


@builtin
class VAECategorical(DiscreteVAE):
    id = "vae-categorical"
    family = "categorical"
    activation = "relu"
    description = "Categorical VAE, 20 latents x 10 classes, 784-[512-256] MLPs, binarized MNIST (Gumbel-Softmax paper)"
    defaults = {"latents": 20, "categories": 10, "hidden": "512,256", "batch_size": 100, "prior": "uniform", **_COMMON}
    test_options = {"latents": 3, "categories": 4, "hidden": "16", "batch_size": 4, "iw_samples": 5, "eval_examples": 16}


@builtin
class VAEBernoulliDigits(DiscreteVAE):
    id = "vae-bernoulli-digits"
    dataset = "digits"
    description = "Bernoulli VAE 64-32-64, linear, learned prior, on the bundled 8x8 digits (no download)"
    defaults = {"latents": 32, "hidden": "", "batch_size": 32, "prior": "learned", **_COMMON}
    test_options = {"latents": 6, "batch_size": 4, "iw_samples": 5, "eval_examples": 16}


@builtin
class VAECategoricalDigits(DiscreteVAE):
    id = "vae-categorical-digits"
    family = "categorical"
    activation = "relu"
    dataset = "digits"
    description = "Categorical VAE, 6 latents x 4 classes (4096 states), 64-[32] MLPs, on the bundled digits"
    defaults = {"latents": 6, "categories": 4, "hidden": "32", "batch_size": 32, "prior": "uniform", **_COMMON}
    test_options = {"latents": 3, "categories": 4, "hidden": "", "batch_size": 4, "iw_samples": 5, "eval_examples": 16}


@builtin
class VAEBernoulliTiny(DiscreteVAE):
    id = "vae-bernoulli-tiny"
    dataset = "digits"
    description = "Bernoulli VAE 64-12-64 on the digits: 4096 latent states, exact ELBO gradient by enumeration"
    defaults = {"latents": 12, "hidden": "", "batch_size": 16, "prior": "learned", **_COMMON}
    test_options = {"batch_size": 4, "iw_samples": 5, "eval_examples": 16}
    default_dtype = torch.float64
    max_latents = 12  # enumerable: 2^12 states


@builtin
class VAEGaussian(DiscreteVAE):
    id = "vae-gaussian"
    family = "gaussian"
    dataset = "digits"
    description = ("Gaussian VAE 64-2-64 on the digits, the pathwise-gradient reference; exact gradient by "
                   "Gauss-Hermite quadrature (32^2 points)")
    defaults = {"latents": 2, "hidden": "", "batch_size": 16, "prior": "learned", **_COMMON}
    test_options = {"batch_size": 4, "iw_samples": 5, "eval_examples": 16}
    default_dtype = torch.float64


@builtin
class VAEGaussianMNIST(DiscreteVAE):
    id = "vae-gaussian-mnist"
    family = "gaussian"
    description = "Gaussian VAE 784-200-784, linear, learned prior, binarized MNIST: vae-bernoulli-linear with Gaussian latents"
    defaults = {"latents": 200, "hidden": "", "batch_size": 50, "prior": "learned", **_COMMON}
    test_options = {"latents": 4, "batch_size": 4, "iw_samples": 5, "eval_examples": 16}
