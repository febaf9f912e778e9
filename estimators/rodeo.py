"""RODEO: leave-one-out REINFORCE with control variates from a discrete Stein operator.

For factorised Bernoulli units with ``p = sigmoid(logits)`` and a function h of
``y in {0, 1}^D``, the Gibbs-sampler Stein operator

    (A h)(y) = 1/D sum_i q_i(1 - y_i) [h(y^(i)) - h(y)],    q_i(v) = p_i^v (1 - p_i)^(1 - v),

(``y^(i)`` is y with unit i flipped) has E_q[(A h)(y)] = 0 for every h, because the pair
(y, y^(i)) enters the sum symmetrically. RODEO builds h for sample k from the *other*
samples, so that it may be evaluated at ``b_k`` without bias: with ``G_j = df/dz (b_j)``,

    H_k(y) = 1/(K-1) sum_{j != k} net([G_j^T (y - b_j), f(b_j)])  in R^2,

a small network of the first-order change of f predicted from each other sample and that
sample's value (components ``H^0`` and ``H^1``). The estimator is

    g = 1/K sum_k [ (f(b_k) - 1/(K-1) sum_{j != k} (f(b_j) + alpha s_j)) (b_k - p) + beta v_k ]

with the scalar control variate ``s_j = (A H_j^0)(b_j)`` (its mean is zero given the other
samples, and ``b_k`` is one of them: E[s_j (b_k - p)] = 0) and the vector control variate
``v_k = (A [y -> H_k^1(y) (y - p)])(b_k)``. Unbiased for every alpha, beta and network; all
three are learned by minimising the estimate's second moment (the auxiliary loss),
starting at alpha = beta = 0, where the estimator is RLOO. f must be differentiable in z at
the hard samples (one backward pass, no extra evaluation); the network costs
O(K (K-1) D hidden) per batch element, never an f evaluation.

Shi, J., Zhou, Y., Hwang, J., Titsias, M. K. & Mackey, L. (2022). Gradient estimation with
discrete Stein operators. NeurIPS. Choices follow the authors' code
(github.com/thjashin/rodeo, ``grad_type='discrete_stein_avg'`` for K = 2 and
``'discrete_stein_output_avg'`` for K > 2, which this formula covers as one): the network
is a 2 -> 100 -> 2 MLP with LeakyReLU(0.3), Glorot-uniform weights and zero biases, and
alpha, beta start at 0. Bernoulli units only, as in the paper.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dgbench.estimators.base import Estimator, Objective, builtin
from dgbench.estimators.double_cv import gradients_at_samples
from dgbench.estimators.networks import DTYPE
from dgbench.estimators.rebar import second_moment
from dgbench.estimators.reference import hard

NEGATIVE_SLOPE = 0.3


def stein_network(hidden: int, seed: int = 0) -> torch.nn.Sequential:
    """``R^2 -> R^2``: Linear, LeakyReLU(0.3), Linear; Glorot-uniform weights from ``seed``, zero biases."""
    net = torch.nn.Sequential(torch.nn.Linear(2, hidden, dtype=DTYPE), torch.nn.LeakyReLU(NEGATIVE_SLOPE),
                              torch.nn.Linear(hidden, 2, dtype=DTYPE))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in (net[0], net[2]):
            # The first layer stands for two Dense(1 -> hidden) layers summed, as in the
            # authors' code: each column has the Glorot bound of a one-input layer.
            fan_in = 1 if layer is net[0] else layer.in_features
            bound = math.sqrt(6.0 / (fan_in + layer.out_features))
            layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator, dtype=DTYPE) * 2 - 1) * bound)
            layer.bias.zero_()
    return net


@builtin
class RODEO(Estimator):
    id = "rodeo"
    family = "bernoulli"
    unbiased = True
    relaxed = True
    evals_per_sample = 1
    min_samples = 2
    paper = "Shi, Zhou, Hwang, Titsias & Mackey (2022), NeurIPS"
    group = "control variates"

    def __init__(self, node: str = "bernoulli", *, samples: int | None = None, hidden: int = 100,
                 learn: bool = True) -> None:
        super().__init__(node, samples)
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        self.hidden, self.learn = hidden, learn
        self.network = stein_network(hidden)
        self.alpha = torch.nn.Parameter(torch.zeros((), dtype=DTYPE), requires_grad=learn)
        self.beta = torch.nn.Parameter(torch.zeros((), dtype=DTYPE), requires_grad=learn)

    def control_functions(self, b: Tensor, fz: Tensor, grad_f: Tensor) -> tuple[Tensor, Tensor]:
        """``H_k`` at ``b_k`` ``(K, *batch, 2)`` and at its D neighbours ``(K, *batch, D, 2)``."""
        k = b.shape[0]
        # The K (K - 1) ordered pairs (k, j), j != k, grouped by k.
        own = torch.arange(k, device=b.device).repeat_interleave(k - 1)
        other = torch.tensor([j for i in range(k) for j in range(k) if j != i], device=b.device)
        # The O(K^2 D hidden) network evaluations run at the problem's precision (float64
        # parameters, cast): in float64 they would double the time of a float32 problem.
        dtype = b.dtype
        f_other, g_other, b_own = fz.detach()[other], grad_f[other], b[own]   # (P, *batch[, D])
        at_sample = (g_other * (b_own - b[other])).sum(-1)                     # G_j . (b_k - b_j)
        # y = b_k with unit i flipped: G_j . (y - b_j) = at_sample + G_j,i (1 - 2 b_k,i)
        at_neighbours = at_sample.unsqueeze(-1) + g_other * (1 - 2 * b_own)    # (P, *batch, D)
        first, act, last = self.network
        w0, w1, bias = (t.to(dtype) for t in (first.weight[:, 0], first.weight[:, 1], first.bias))
        w_out, b_out = last.weight.to(dtype), last.bias.to(dtype)
        # first([x, f_j]) = x w_0 + (f_j w_1 + bias): the f_j part once per pair, not per neighbour.
        offset = torch.addcmul(bias, f_other.unsqueeze(-1), w1)                 # (P, *batch, H)
        slope = act.negative_slope  # in place: the pre-activations are the largest tensors here
        x = F.linear(F.leaky_relu(torch.addcmul(offset, at_sample.unsqueeze(-1), w0), slope, inplace=True), w_out, b_out)
        n = F.linear(F.leaky_relu(torch.addcmul(offset.unsqueeze(-2), at_neighbours.unsqueeze(-1), w0), slope,
                                  inplace=True), w_out, b_out)
        return (x.reshape(k, k - 1, *x.shape[1:]).mean(1), n.reshape(k, k - 1, *n.shape[1:]).mean(1))

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        node = self.node
        b = node.sample(logits.detach(), self.samples, generator)
        fz, grad_f = gradients_at_samples(self, f, b, logits)
        record = self.training and self.learn
        with torch.enable_grad() if record else torch.no_grad():
            h_x, h_n = self.control_functions(b, fz, grad_f)
            p = torch.sigmoid(logits.detach()).to(DTYPE)
            b64 = b.to(DTYPE)
            score = b64 - p
            flip_weight = p * (1 - b64) + (1 - p) * b64                    # q_i(1 - b_i)
            d = b.shape[-1]
            scalar_cv = (flip_weight * (h_n[..., 0] - h_x[..., :1])).mean(-1)           # (A H^0)(b_k)
            vector_cv = ((flip_weight * h_n[..., 1]).mean(-1, keepdim=True) * score
                         + flip_weight * h_n[..., 1] * (1 - 2 * b64) / d
                         - flip_weight.mean(-1, keepdim=True) * h_x[..., 1:] * score)   # (A [H^1 (y - p)])(b_k)
            values = fz.detach().to(DTYPE)
            shifted = values + self.alpha * scalar_cv
            signal = values - (shifted.sum(0, keepdim=True) - shifted) / (self.samples - 1)
            g = (signal.unsqueeze(-1) * score + self.beta * vector_cv).mean(0)
        if record:
            self.add_auxiliary_loss(second_moment(node, g))
        return self.attach(fz.mean(0), logits, g.detach().to(logits.dtype))

    def randomize_state(self, generator: torch.Generator) -> None:
        """Network weights, alpha and beta away from their initial values, at the network's scale."""
        with torch.no_grad():
            for p in self.network.parameters():
                p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.3)
            self.alpha.fill_(0.7)
            self.beta.fill_(-0.4)


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    b = hard(node, logits, u)
    k, d = b.shape
    p = torch.sigmoid(logits)
    net = est.network
    grads = [f.grad(b[j]) for j in range(k)]
    fb = f(b)

    def h(i, y):  # H_i(y): the network averaged over the samples other than i
        outs = [net(torch.stack([(grads[j] * (y - b[j])).sum(), fb[j]])) for j in range(k) if j != i]
        return sum(outs) / (k - 1)

    def stein(i, fn):  # (A fn)(b_i) with fn(y) built from the samples other than i
        y = b[i]
        total = 0
        for unit in range(d):
            flipped = y.clone()
            flipped[unit] = 1 - flipped[unit]
            q_flip = p[unit] if flipped[unit] == 1 else 1 - p[unit]
            total = total + q_flip * (fn(flipped) - fn(y))
        return total / d

    alpha, beta = float(est.alpha.detach()), float(est.beta.detach())
    scalar = [stein(j, lambda y, j=j: h(j, y)[0]) for j in range(k)]
    grad = torch.zeros_like(logits)
    for i in range(k):
        rest = sum(fb[j] + alpha * scalar[j] for j in range(k) if j != i) / (k - 1)
        vector = stein(i, lambda y, i=i: h(i, y)[1] * (y - p))
        grad = grad + (fb[i] - rest) * (b[i] - p) + beta * vector
    return grad.detach() / k, fb.mean(0)
