"""Sigmoid belief network with several stochastic layers, on binarized MNIST.

Generative model (linear layers, as in NVIL and REBAR), with ``L = layers``:

    p(h_L) = Bernoulli(sigmoid(a)),   p(h_l | h_{l+1}) = Bernoulli(sigmoid(W_l h_{l+1} + b_l)),
    p(x | h_1) = Bernoulli(sigmoid(W_0 h_1 + b_0))

Factorised recognition model: ``q(h_1 | x) = Bernoulli(sigmoid(V_1 (x - mean) + c_1))``,
``q(h_{l+1} | h_l) = Bernoulli(sigmoid(V_{l+1} h_l + c_{l+1}))``.

Training maximises the k-sample bound (``bound_samples = k``; k = 1 is the ELBO)

    L_k(x) = E[ log (1/k) sum_i w_i ],   w_i = p(x, h^i) / q(h^i | x),

with the k joint samples drawn independently. Every stochastic layer gets its gradient
from the estimator under test, by nesting: the node of layer l holds the k samples'
units side by side (``k * units`` Bernoullis), and its objective draws layer l+1 through
that layer's estimator, so

    f_l(h_l) = E_{q(h_{l+1} | h_l)}[ f_{l+1}(h_{l+1}) ]  (estimated),   f_L = log (1/k) sum_i w_i.

The learning signal contains ``log q``, whose dependence on the recognition logits is
differentiated pathwise (it has zero mean for k = 1, and is part of the gradient for
k > 1). Gradient statistics are taken w.r.t. the first recognition layer ``V_1, c_1``;
deeper layers act inside its objective (see :mod:`dgbench.harness.gradstats`).

Choices: 200 units per layer, minibatches of 24 (REBAR), encoder inputs centred by the
training mean, the output bias starting at the logit of the training mean.

Mnih & Gregor (2014), Neural Variational Inference and Learning in Belief Networks, ICML;
Tucker et al. (2017), REBAR, NeurIPS; Mnih & Rezende (2016), Variational Inference for
Monte Carlo Objectives (VIMCO), ICML.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from dgbench.domains import Integer
from dgbench.nodes import get_node
from dgbench.objectives import LogWeightWithInnerLogQ
from dgbench.problems import latent
from dgbench.problems.base import Estimators, builtin
from dgbench.problems.datasets import image_splits, prepare, training_mean
from dgbench.problems.layers import default_generator, linear
from dgbench.problems.lvm import LatentVariableModel


@builtin
class SBNTwoLayer(LatentVariableModel):
    option_domains = {"units": Integer(1)}
    id = "sbn-two-layer"
    test_options = {"dataset": "digits", "units": 3, "batch_size": 3, "iw_samples": 5, "eval_examples": 16}  # small enough for the generic tests
    family = "bernoulli"
    differentiable = True
    bound_option = "bound_samples"
    description = "Sigmoid belief network, 2 linear stochastic layers of 200 units, binarized MNIST (NVIL/REBAR)"

    def __init__(
        self,
        *,
        units: int = 200,
        layers: int = 2,
        bound_samples: int = 1,
        batch_size: int = 24,
        iw_samples: int = 100,
        eval_examples: int = 0,
        eval_splits: str = "train,valid,test",
        valid_iw_samples: int = 0,
        dataset: str = "mnist",
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if units < 1 or layers < 1:
            raise ValueError(f"units and layers must be >= 1, got units={units}, layers={layers}")
        if bound_samples < 1:
            raise ValueError(f"bound_samples must be >= 1, got {bound_samples}")
        self.units, self.layers, self.bound_samples = units, layers, bound_samples
        self.batch_size, self.iw_samples, self.eval_examples, self.dataset = batch_size, iw_samples, eval_examples, dataset
        self.valid_iw_samples = valid_iw_samples
        splits = image_splits(dataset, torch.uint8, device)
        pixels = splits["train"].shape[1]
        mean = training_mean(dataset, dtype, device)
        self.register_buffer("input_mean", mean)
        # recognition[l]: h_l -> h_{l+1} logits (l = 0 is x); generative[l]: h_{l+1} -> h_l logits.
        generator = default_generator(generator)
        self.recognition = nn.ModuleList(linear(pixels if l == 0 else units, units, generator) for l in range(layers))
        self.generative = nn.ModuleList(linear(units, pixels if l == 0 else units, generator) for l in range(layers))
        self.prior_logits = nn.Parameter(torch.zeros(units))
        with torch.no_grad():
            p = mean.clamp(1e-3, 1 - 1e-3)
            self.generative[0].bias.copy_(torch.log(p) - torch.log1p(-p))
        self.to(device=device, dtype=dtype)
        self._set_training_data(splits["train"], batch_size, generator, dtype=dtype)
        self._set_evaluation(splits, iw_samples, eval_examples, eval_splits, valid_iw_samples, dtype)

    @classmethod
    def prepare_data(cls, options: dict) -> None:
        prepare(options.get("dataset", cls.default_options()["dataset"]))

    def node_names(self) -> tuple[str, ...]:
        return tuple(f"h{l + 1}" for l in range(self.layers))

    # The model ---------------------------------------------------------------------

    def _split(self, h: Tensor) -> Tensor:
        """``(..., k * units) -> (..., k, units)``: the k joint samples side by side."""
        return h.unflatten(-1, (-1, self.units))

    def _tile(self, logits: Tensor) -> Tensor:
        return logits.repeat(*([1] * (logits.dim() - 1)), self.bound_samples)

    def _next_logits(self, level: int, h: Tensor) -> Tensor:
        """Recognition logits of layer ``level + 2`` given layer ``level + 1``'s (tiled) samples."""
        return self.recognition[level + 1](self._split(h)).flatten(-2)

    def _log_weight(self, x: Tensor, hs: list[Tensor], logits: list[Tensor]) -> Tensor:
        """``log p(x, h) - log q(h | x)`` per joint sample: ``(..., B, k)``."""
        hs = [self._split(h) for h in hs]
        logits = [self._split(l) for l in logits]
        out = latent.bernoulli_log_likelihood(x.unsqueeze(-2), self.generative[0](hs[0]))
        for l in range(1, self.layers):
            out = out + get_node("bernoulli").log_prob(hs[l - 1], self.generative[l](hs[l]))
        out = out + get_node("bernoulli").log_prob(hs[-1], self.prior_logits)
        for h, q in zip(hs, logits):
            out = out - get_node("bernoulli").log_prob(h, q)
        return out

    def log_weights(self, x: Tensor, samples: int, generator: torch.Generator) -> Tensor:
        logits = [self.recognition[0](x - self.input_mean)]
        hs = [get_node("bernoulli").sample(logits[0], samples, generator)]
        for l in range(1, self.layers):
            logits.append(self.recognition[l](hs[-1]))
            hs.append(get_node("bernoulli").sample(logits[-1], 1, generator)[0])
        return self._log_weight(x, hs, logits).squeeze(-1)

    # The problem contract -------------------------------------------------------------

    def logits(self) -> Tensor:
        return self._tile(self.recognition[0](self.x - self.input_mean))

    def logit_parameters(self) -> dict[str, nn.Parameter]:
        return {f"recognition.0.{k}": v for k, v in self.recognition[0].named_parameters()}

    def objective(self, estimators: Estimators, logits: Tensor, generator: torch.Generator | None) -> Tensor:
        ests = self.node_estimators(estimators)
        names = self.node_names()
        if getattr(ests[names[0]], "multi_sample_bound", False):
            return self._objective_by_multi_sample_estimator(ests[names[0]], logits, generator)

        def layer_objective(level: int, hs: list[Tensor], qs: list[Tensor]) -> Callable[[Tensor], Tensor]:
            def f(h: Tensor) -> Tensor:
                if level == self.layers - 1:
                    return latent.logmeanexp(self._log_weight(self.x, hs + [h], qs), -1)
                q_next = self._next_logits(level, h)
                return ests[names[level + 1]](q_next, layer_objective(level + 1, hs + [h], qs + [q_next]),
                                              generator=generator)
            return f

        values = ests[names[0]](logits, layer_objective(0, [], [logits]), generator=generator)
        return self.reduce(values)

    def _objective_by_multi_sample_estimator(self, estimator, logits: Tensor, generator) -> Tensor:
        """VIMCO: it draws the k joint samples' first layer; the deeper layers are drawn here,
        one per draw, and their log q is handed back so that VIMCO's signals reach them."""
        self.check_multi_sample_estimator(estimator)
        first = logits[..., : self.units]

        def log_weight_and_inner(h1: Tensor) -> LogWeightWithInnerLogQ:
            hs, qs = [h1], [first]
            inner = torch.zeros(h1.shape[:-1], dtype=h1.dtype, device=h1.device)
            for level in range(1, self.layers):
                q = self.recognition[level](hs[-1])
                h = get_node("bernoulli").sample(q.detach(), 1, generator)[0]
                inner = inner + get_node("bernoulli").log_prob(h, q)
                hs.append(h)
                qs.append(q)
            return LogWeightWithInnerLogQ(self._log_weight(self.x, hs, qs).squeeze(-1), inner)

        return self.reduce(estimator(first, log_weight_and_inner, generator=generator))

    def evals_per_estimate(self, estimators: Estimators) -> int:
        """Evaluations of the innermost objective: the product over the nested layers."""
        ests = self.node_estimators(estimators)
        event = torch.Size([self.units * self.bound_samples])
        total = 1
        for name in self.node_names():
            total *= ests[name].evals_per_estimate(event)
        return total
