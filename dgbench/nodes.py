"""The kinds of stochastic node, and everything that depends on which: the one
distribution layer of dgbench, used by estimators (sampling, scores, relaxations) and by
problems (log-probabilities, KL divergences, evaluation samples) alike.

A node is described by its logits:

* Bernoulli: logits ``(*batch, D)``, samples in {0, 1} with ``p = sigmoid(logits)``;
* categorical: logits ``(*batch, D, K)``, one-hot samples with ``p = softmax(logits)``;
* Gaussian (the continuous reference, :class:`GaussianNode`): "logits" ``(*batch, 2D)``,
  the means and log standard deviations side by side, samples ``(*batch, D)``.

Estimators call the methods here instead of branching on the family, so one
estimator file serves both families wherever its method is defined for both.
For both discrete families the score with respect to the logits has the same form,
``d log q(z) / d logits = z - p``; the Gaussian node has its own.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dgbench import noise

FAMILIES = ("bernoulli", "categorical")  # the discrete families
NODE_FAMILIES = (*FAMILIES, "gaussian")
QUADRATURE_POINTS = 32  # Gauss-Hermite points per Gaussian unit, for `exact`


class Node:
    """What estimators need to know about one family of discrete node."""

    name: str
    event_dims: int

    def per_sample(self, signal: Tensor) -> Tensor:
        """Reshape a ``(*S, *batch)`` learning signal to broadcast over the event dims."""
        return signal.reshape(signal.shape + (1,) * self.event_dims)

    def sum_event(self, x: Tensor) -> Tensor:
        return x.sum(dim=tuple(range(-self.event_dims, 0)))

    def sample(self, logits: Tensor, samples: int, generator: torch.Generator) -> Tensor:
        """``samples`` hard draws, shape ``(samples, *logits.shape)``, from one uniform draw."""
        u = noise.uniform((samples, *logits.shape), generator, logits)
        return self.hard(logits, u)

    def score(self, z: Tensor, logits: Tensor) -> Tensor:
        """``d log q(z) / d logits = z - p`` for both families."""
        return z - self.probs(logits)

    def states(self, event_shape: torch.Size, like: Tensor) -> Tensor:
        raise NotImplementedError

    def log_prob(self, z: Tensor, logits: Tensor) -> Tensor:
        """``log q(z)`` summed over the event (also defined, and differentiable, at relaxed z)."""
        raise NotImplementedError

    def kl_divergence(self, logits: Tensor, prior_logits: Tensor) -> Tensor:
        raise NotImplementedError

    def features(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def num_states(self, event_shape: torch.Size) -> int:
        raise NotImplementedError

    def probs(self, logits: Tensor) -> Tensor:
        raise NotImplementedError

    def hard(self, logits: Tensor, u: Tensor) -> Tensor:
        raise NotImplementedError

    def harden(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def perturb(self, logits: Tensor, u: Tensor) -> Tensor:
        """Perturbed logits whose hard image is a sample (logistic / Gumbel noise from ``u``)."""
        raise NotImplementedError

    def harden_perturbed(self, y: Tensor) -> Tensor:
        """The sample of perturbed logits ``y``: ``1[y > 0]`` or ``one_hot(argmax y)``."""
        raise NotImplementedError

    def conditional_perturb(self, logits: Tensor, z: Tensor, v: Tensor) -> Tensor:
        """Perturbed logits drawn from their distribution given the sample ``z`` (noise ``v``),
        reparameterised so that gradients w.r.t. ``logits`` flow (Tucker et al., 2017)."""
        raise NotImplementedError

    def soften(self, y: Tensor, temperature: float | Tensor) -> Tensor:
        """Relaxed sample of perturbed logits: ``sigmoid(y / t)`` or ``softmax(y / t)``."""
        raise NotImplementedError

    def check_logits(self, logits: Tensor) -> None:
        if not isinstance(logits, Tensor):
            raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
        if not logits.is_floating_point():
            raise TypeError(f"logits must be floating point, got {logits.dtype}")
        if logits.dim() < self.event_dims:
            raise ValueError(
                f"{self.name} logits need at least {self.event_dims} dimension(s), "
                f"got shape {tuple(logits.shape)}"
            )


class BernoulliNode(Node):
    """Independent Bernoulli units; logits ``(*batch, D)``."""

    name = "bernoulli"
    event_dims = 1

    def probs(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)

    def hard(self, logits: Tensor, u: Tensor) -> Tensor:
        """``b = 1[u < sigmoid(logits)]``."""
        return (u < torch.sigmoid(logits)).to(logits.dtype)

    def log_prob(self, z: Tensor, logits: Tensor) -> Tensor:
        return self.sum_event(z * logits - F.softplus(logits))

    def kl_divergence(self, logits: Tensor, prior_logits: Tensor) -> Tensor:
        """``KL(q || p)`` between factorised Bernoulli nodes, summed over the event. With
        ``log q1 = a - softplus(a)``, ``log q0 = -softplus(a)`` (and likewise for ``b``) the
        per-unit ``q (log q1 - log p1) + (1 - q)(log q0 - log p0)`` collapses to

            KL = sigmoid(a) (a - b) + softplus(b) - softplus(a),

        half the elementwise ops of the four log-sigmoids, in forward and backward."""
        return (torch.sigmoid(logits) * (logits - prior_logits) + F.softplus(prior_logits)
                - F.softplus(logits)).sum(-1)

    def features(self, z: Tensor) -> Tensor:
        """Samples as feature vectors for a network: ``(..., D)`` as is."""
        return z

    def harden(self, y: Tensor) -> Tensor:
        """The hard sample sharing a relaxed sample's noise: ``1[y > 1/2]``."""
        return (y > 0.5).to(y.dtype)

    def mean_vjp(self, logits: Tensor, v: Tensor) -> Tensor:
        """``v^T d p / d logits`` with ``p = sigmoid(logits)``: ``v * p * (1 - p)``."""
        p = torch.sigmoid(logits)
        return v * p * (1 - p)

    def relaxed(self, logits: Tensor, u: Tensor, temperature: float) -> Tensor:
        """Binary Concrete sample ``sigmoid((logits + L) / temperature)``, L logistic."""
        return torch.sigmoid((logits + noise.logistic(u)) / temperature)

    def perturb(self, logits: Tensor, u: Tensor) -> Tensor:
        return logits + noise.logistic(u)

    def harden_perturbed(self, y: Tensor) -> Tensor:
        return (y > 0).to(y.dtype)

    def conditional_perturb(self, logits: Tensor, z: Tensor, v: Tensor) -> Tensor:
        """``logits + logit(u~)`` with ``u~ ~ U(1 - p, 1)`` if ``z = 1`` and ``U(0, 1 - p)`` if 0."""
        p = torch.sigmoid(logits)
        u = z * (1 - p + v * p) + (1 - z) * (v * (1 - p))
        eps = torch.finfo(u.dtype).eps
        return logits + noise.logistic(u.clamp(eps, 1 - eps))

    def soften(self, y: Tensor, temperature: float | Tensor) -> Tensor:
        return torch.sigmoid(y / temperature)

    def num_states(self, event_shape: torch.Size) -> int:
        return 2 ** int(event_shape[-1])

    def states(self, event_shape: torch.Size, like: Tensor) -> Tensor:
        """All ``2^D`` binary vectors, shape ``(2^D, D)``."""
        d = int(event_shape[-1])
        codes = torch.arange(2**d, device=like.device)
        bits = (codes.unsqueeze(-1) >> torch.arange(d, device=like.device)) & 1
        return bits.to(like.dtype)


class CategoricalNode(Node):
    """Independent categorical variables, one-hot; logits ``(*batch, D, K)``."""

    name = "categorical"
    event_dims = 2

    def probs(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=-1)

    def hard(self, logits: Tensor, u: Tensor) -> Tensor:
        """Gumbel-max: ``one_hot(argmax(logits + G))`` with ``G = -log(-log u)``."""
        index = torch.argmax(logits + noise.gumbel(u), dim=-1)
        return F.one_hot(index, logits.shape[-1]).to(logits.dtype)

    def log_prob(self, z: Tensor, logits: Tensor) -> Tensor:
        return self.sum_event(z * torch.log_softmax(logits, dim=-1))

    def kl_divergence(self, logits: Tensor, prior_logits: Tensor) -> Tensor:
        """``KL(q || p)`` between factorised categorical nodes, summed over the event."""
        log_q = torch.log_softmax(logits, -1)
        log_p = torch.log_softmax(prior_logits, -1)
        return (log_q.exp() * (log_q - log_p)).sum((-1, -2))

    def features(self, z: Tensor) -> Tensor:
        """Samples as feature vectors for a network: ``(..., D, K) -> (..., D*K)``."""
        return z.flatten(-2)

    def harden(self, y: Tensor) -> Tensor:
        """The hard sample sharing a relaxed sample's noise: ``one_hot(argmax y)``."""
        return F.one_hot(torch.argmax(y, dim=-1), y.shape[-1]).to(y.dtype)

    def mean_vjp(self, logits: Tensor, v: Tensor) -> Tensor:
        """``v^T d p / d logits`` with ``p = softmax(logits)``: ``p * (v - <p, v>)``."""
        p = torch.softmax(logits, dim=-1)
        return p * (v - (p * v).sum(-1, keepdim=True))

    def relaxed(self, logits: Tensor, u: Tensor, temperature: float) -> Tensor:
        """Gumbel-Softmax sample ``softmax((logits + G) / temperature)``."""
        return torch.softmax((logits + noise.gumbel(u)) / temperature, dim=-1)

    def perturb(self, logits: Tensor, u: Tensor) -> Tensor:
        return logits + noise.gumbel(u)

    def harden_perturbed(self, y: Tensor) -> Tensor:
        return F.one_hot(torch.argmax(y, dim=-1), y.shape[-1]).to(y.dtype)

    def conditional_perturb(self, logits: Tensor, z: Tensor, v: Tensor) -> Tensor:
        """Given the argmax ``i`` (one-hot ``z``) and ``E = -log v ~ Exp(1)``: the maximum is
        ``M = logsumexp(logits) - log E_i``, and every other coordinate is a Gumbel truncated
        at M, ``y_j = -log(exp(-M) + E_j exp(-logits_j))``."""
        log_e = torch.log(-torch.log(v))
        top = torch.logsumexp(logits, -1, keepdim=True) - (z * log_e).sum(-1, keepdim=True)
        rest = -torch.logaddexp(-top, log_e - logits)
        return z * top + (1 - z) * rest

    def soften(self, y: Tensor, temperature: float | Tensor) -> Tensor:
        return torch.softmax(y / temperature, dim=-1)

    def num_states(self, event_shape: torch.Size) -> int:
        d, k = int(event_shape[-2]), int(event_shape[-1])
        return k**d

    def states(self, event_shape: torch.Size, like: Tensor) -> Tensor:
        """All ``K^D`` one-hot configurations, shape ``(K^D, D, K)``."""
        d, k = int(event_shape[-2]), int(event_shape[-1])
        index = torch.tensor(
            list(itertools.product(range(k), repeat=d)), device=like.device, dtype=torch.long
        ).reshape(k**d, d)
        return F.one_hot(index, k).to(like.dtype)

    def check_logits(self, logits: Tensor) -> None:
        super().check_logits(logits)
        if logits.shape[-1] < 2:
            raise ValueError(f"categorical logits need K >= 2 categories, got shape {tuple(logits.shape)}")


class GaussianNode(Node):
    """Independent Gaussian units ``z ~ N(mu, sigma^2)``; "logits" ``(*batch, 2D)`` hold
    ``[mu, log sigma]``, samples are ``(*batch, D)``. The reference point of pathwise
    (reparameterisation) gradients (Kingma & Welling, 2014; Rezende, Mohamed & Wierstra,
    2014). Score-function estimators need only :meth:`sample` and :meth:`score`.

    Noise convention: the one uniform draw has the logits' shape ``(S, *batch, 2D)``; its
    two halves make D standard normals by the Box-Muller transform,
    ``eps = sqrt(-2 log u1) cos(2 pi u2)``.
    """

    name = "gaussian"
    event_dims = 1

    @staticmethod
    def split(logits: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, log sigma)``, each ``(*batch, D)``."""
        return logits.chunk(2, -1)

    @staticmethod
    def standard_normal(u: Tensor) -> Tensor:
        u1, u2 = u.chunk(2, -1)
        return torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)

    def reparameterize(self, logits: Tensor, u: Tensor) -> Tensor:
        """``z = mu + sigma * eps(u)``, differentiable in ``logits``."""
        mu, log_sigma = self.split(logits)
        return mu + torch.exp(log_sigma) * self.standard_normal(u)

    def hard(self, logits: Tensor, u: Tensor) -> Tensor:
        return self.reparameterize(logits, u)

    def score(self, z: Tensor, logits: Tensor) -> Tensor:
        """``d log N(z; mu, sigma^2) / d [mu, log sigma] = [(z - mu) / sigma^2, (z - mu)^2 / sigma^2 - 1]``."""
        mu, log_sigma = self.split(logits)
        scaled = (z - mu) * torch.exp(-log_sigma)
        return torch.cat([scaled * torch.exp(-log_sigma), scaled**2 - 1], -1)

    def log_prob(self, z: Tensor, logits: Tensor) -> Tensor:
        mu, log_sigma = self.split(logits)
        return (-0.5 * math.log(2 * math.pi) - log_sigma - 0.5 * ((z - mu) * torch.exp(-log_sigma)) ** 2).sum(-1)

    def kl_divergence(self, logits: Tensor, prior_logits: Tensor) -> Tensor:
        """``KL(N(mu, sigma^2) || N(m, s^2))`` summed over units:
        ``log(s / sigma) + (sigma^2 + (mu - m)^2) / (2 s^2) - 1/2``."""
        mu, log_sigma = self.split(logits)
        m, log_s = self.split(prior_logits)
        return (log_s - log_sigma + (torch.exp(2 * log_sigma) + (mu - m) ** 2) / (2 * torch.exp(2 * log_s))
                - 0.5).sum(-1)

    def features(self, z: Tensor) -> Tensor:
        return z

    def probs(self, logits: Tensor) -> Tensor:
        """The mean ``mu`` (what a straight-through estimator would pass; none applies here)."""
        return self.split(logits)[0]

    def num_states(self, event_shape: torch.Size) -> int:
        """Points of the Gauss-Hermite grid that ``exact`` sums over: ``n^D``."""
        return QUADRATURE_POINTS ** int(event_shape[-1] // 2)

    def states(self, event_shape: torch.Size, like: Tensor) -> tuple[Tensor, Tensor]:
        """The product Gauss-Hermite rule for ``N(0, I_D)``: standard-normal points ``(n^D, D)``
        and their log weights ``(n^D,)``; ``sum_i w_i g(eps_i)`` is exact for polynomials of
        degree below ``2n`` in each unit."""
        import numpy as np

        d = int(event_shape[-1] // 2)
        x, w = np.polynomial.hermite.hermgauss(QUADRATURE_POINTS)
        points = torch.as_tensor(x * math.sqrt(2.0), dtype=like.dtype, device=like.device)
        log_w = torch.as_tensor(np.log(w / math.sqrt(math.pi)), dtype=like.dtype, device=like.device)
        index = torch.cartesian_prod(*[torch.arange(QUADRATURE_POINTS, device=like.device)] * d).reshape(-1, d)
        return points[index], log_w[index].sum(-1)

    def check_logits(self, logits: Tensor) -> None:
        super().check_logits(logits)
        if logits.shape[-1] % 2:
            raise ValueError(f"gaussian logits hold [mu, log sigma]: the last dim must be even, got {tuple(logits.shape)}")


BERNOULLI = BernoulliNode()
CATEGORICAL = CategoricalNode()
GAUSSIAN = GaussianNode()
_NODES: dict[str, Node] = {"bernoulli": BERNOULLI, "categorical": CATEGORICAL, "gaussian": GAUSSIAN}


def get_node(name: str) -> Node:
    """The node family called ``name`` ("bernoulli", "categorical" or "gaussian")."""
    try:
        return _NODES[name]
    except KeyError:
        raise ValueError(f"unknown node family {name!r}; expected one of {NODE_FAMILIES}") from None


def log2_states(node: Node, event_shape: torch.Size) -> float:
    """log2 of the number of joint states, computed without overflow."""
    if node.name == "gaussian":
        return float(event_shape[-1] // 2) * math.log2(QUADRATURE_POINTS)
    if node.event_dims == 1:
        return float(event_shape[-1])
    return float(event_shape[-2]) * math.log2(int(event_shape[-1]))
