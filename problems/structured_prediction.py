"""Structured output prediction: the lower half of a binary digit from its upper half,
through a stochastic network of discrete layers.

With ``x = (x_u, x_l)`` the upper and lower halves (rows of pixels) and ``L = layers``
stochastic layers ``h_1 .. h_L`` (Bernoulli units, or categorical variables of
``categories`` classes as one-hot vectors),

    p(h_1 | x_u) = q(W_1 (x_u - mean) + b_1),   p(h_l | h_{l-1}) = q(W_l h_{l-1} + b_l),
    p(x_l | h_L) = prod_j Bernoulli(x_lj; sigmoid(W_out h_L + b_out)),

every map linear. Training maximises ``E_{p(h | x_u)}[log p(x_l | h_L)]`` (m = 1 sample
per example): each layer's node is estimated by the estimator under test, nested as in
:mod:`dgbench.problems.sbn`, so ``f_l(h_l) = E[f_{l+1}(h_{l+1}) | h_l]`` and ``f_L(h_L) =
log p(x_l | h_L)``. Evaluation is the m-sample estimate of the conditional likelihood,

    log p(x_l | x_u) >= log (1/m) sum_i p(x_l | h^i),  h^i ~ p(h | x_u),

reported as ``{split}_iwae`` (m = ``iw_samples``, 1000 in the papers) beside the
single-sample ``{split}_elbo``; Jang et al. report the negative of the former.

Jang, Gu & Poole (2017), Categorical Reparameterization with Gumbel-Softmax, ICLR,
Sec. 4.2 (392-200-200-392 Bernoulli and 392-(20x10)-(20x10)-392 categorical);
Gu, Levine, Sutskever & Mnih (2016), MuProp, ICLR; Raiko, Berglund, Alain & Dinh (2015),
Techniques for Learning Binary Stochastic Feedforward Neural Networks, ICLR.

Choices (the same for every estimator): inputs centred by the training mean of the upper
half; the output bias starts at the logit of the training mean of the lower half
(clamped to [1e-3, 1 - 1e-3]); PyTorch's default initialisation otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dgbench.nodes import get_node
from dgbench.problems import latent
from dgbench.problems.base import Estimators, Score, builtin
from dgbench.problems.datasets import image_splits, prepare, training_mean
from dgbench.problems.layers import default_generator, linear
from dgbench.problems.lvm import LatentVariableModel


class StructuredPrediction(LatentVariableModel):
    """Predict the lower half of an image from its upper half; subclasses fix the family."""

    family: ClassVar[str] = "bernoulli"
    differentiable = True
    minimize = False
    scores = (Score("test_iwae", "test log p(lower half | upper half), m-sample estimate (nats)", higher_is_better=True),
              Score("test_elbo", "test single-sample log-likelihood of the lower half (nats)", higher_is_better=True))

    def __init__(self, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 generator: torch.Generator | None = None, **options: Any) -> None:
        super().__init__()
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise TypeError(f"{self.id}: unknown option(s) {', '.join(unknown)} (valid: {', '.join(self.defaults)})")
        v = {**self.defaults, **options}
        if v["latents"] < 1 or v["layers"] < 1:
            raise ValueError(f"latents and layers must be >= 1, got latents={v['latents']}, layers={v['layers']}")
        if self.family == "categorical" and v["categories"] < 2:
            raise ValueError(f"categories must be >= 2, got {v['categories']}")
        for key, value in v.items():
            setattr(self, key, value)
        self.latent_shape = (v["latents"],) if self.family == "bernoulli" else (v["latents"], v["categories"])
        features = math.prod(self.latent_shape)
        splits = image_splits(v["dataset"], torch.uint8, device)
        pixels = splits["train"].shape[1]
        self.half = pixels // 2
        generator = default_generator(generator)
        self.layers_in = nn.ModuleList(
            linear(self.half if level == 0 else features, features, generator) for level in range(v["layers"]))
        self.output = linear(features, pixels - self.half, generator)
        train = splits["train"]
        mean = training_mean(v["dataset"], dtype, device)  # of 0/1 pixels: exact counts, so a half's mean is the same
        self.register_buffer("input_mean", mean[: self.half].clone())
        with torch.no_grad():
            p = mean[self.half:].clamp(1e-3, 1 - 1e-3)
            self.output.bias.copy_(torch.log(p) - torch.log1p(-p))
        self.to(device=device, dtype=dtype)
        self._set_training_data(train, v["batch_size"], generator, dtype=dtype)
        self._set_evaluation(splits, v["iw_samples"], v["eval_examples"], v["eval_splits"], v["valid_iw_samples"],
                             dtype)

    @classmethod
    def prepare_data(cls, options: dict) -> None:
        prepare(options.get("dataset", cls.defaults["dataset"]))

    def node_names(self) -> tuple[str, ...]:
        return tuple(f"h{level + 1}" for level in range(self.layers))

    # The model ---------------------------------------------------------------------

    def _logits(self, level: int, inputs: Tensor) -> Tensor:
        """Logits of layer ``level + 1`` from the upper half (level 0) or the previous layer's samples."""
        x = inputs - self.input_mean if level == 0 else get_node(self.family).features(inputs)
        return self.layers_in[level](x).unflatten(-1, self.latent_shape)

    def _log_likelihood(self, lower: Tensor, h: Tensor) -> Tensor:
        return latent.bernoulli_log_likelihood(lower, self.output(get_node(self.family).features(h)))

    def log_weights(self, x: Tensor, samples: int, generator: torch.Generator) -> Tensor:
        """``log p(x_l | h)`` for ``samples`` draws of ``h ~ p(h | x_u)``: ``(samples, N)``."""
        node = get_node(self.family)
        h = node.sample(self._logits(0, x[:, : self.half]), samples, generator)
        for level in range(1, self.layers):
            h = node.sample(self._logits(level, h), 1, generator)[0]
        return self._log_likelihood(x[:, self.half:], h)

    # The problem contract -------------------------------------------------------------

    def logits(self) -> Tensor:
        return self._logits(0, self.x[:, : self.half])

    def logit_parameters(self) -> dict[str, nn.Parameter]:
        return {f"layers_in.0.{k}": v for k, v in self.layers_in[0].named_parameters()}

    def objective(self, estimators: Estimators, logits: Tensor, generator: torch.Generator | None) -> Tensor:
        ests = self.node_estimators(estimators)
        names = self.node_names()
        lower = self.x[:, self.half:]

        def layer_objective(level: int) -> Callable[[Tensor], Tensor]:
            def f(h: Tensor) -> Tensor:
                if level == self.layers - 1:
                    return self._log_likelihood(lower, h)
                return ests[names[level + 1]](self._logits(level + 1, h), layer_objective(level + 1),
                                              generator=generator)
            return f

        return self.reduce(ests[names[0]](logits, layer_objective(0), generator=generator))

    def evals_per_estimate(self, estimators: Estimators) -> int:
        """Evaluations of ``log p(x_l | h_L)``: the product over the nested layers."""
        ests = self.node_estimators(estimators)
        total = 1
        for name in self.node_names():
            total *= ests[name].evals_per_estimate(torch.Size(self.latent_shape))
        return total


_COMMON = {"layers": 2, "batch_size": 100, "iw_samples": 1000, "valid_iw_samples": 0, "eval_examples": 0, "eval_splits": "valid,test",
           "dataset": "mnist"}


@builtin
class StructuredPredictionBernoulli(StructuredPrediction):
    id = "sbn-structured"
    description = ("Structured output prediction: lower half of an MNIST digit from its upper half, "
                   "392-200-200-392 Bernoulli (Gumbel-Softmax paper, MuProp)")
    defaults = {"latents": 200, **_COMMON}
    test_options = {"latents": 3, "batch_size": 3, "iw_samples": 5, "eval_examples": 16, "dataset": "digits"}


@builtin
class StructuredPredictionCategorical(StructuredPrediction):
    id = "sbn-structured-categorical"
    family = "categorical"
    description = ("Structured output prediction: lower half of an MNIST digit from its upper half, "
                   "392-(20x10)-(20x10)-392 categorical (Gumbel-Softmax paper)")
    defaults = {"latents": 20, "categories": 10, **_COMMON}
    test_options = {"latents": 2, "categories": 3, "batch_size": 3, "iw_samples": 5, "eval_examples": 16,
                    "dataset": "digits"}
