"""A Gaussian mixture with one-hot cluster assignments, fitted by variational inference; the
coordinate-ascent (CAVI) optimum of the same family is the reference.

Model (Blei, Kucukelbir & McAuliffe, 2017, Sec. 3, "Variational inference: a review for
statisticians", JASA): K means ``mu_k ~ N(0, sigma^2 I_d)``, assignments
``c_i ~ Categorical(1/K)`` (one-hot), observations ``x_i | c_i, mu ~ N(c_i^T mu, I_d)``.
Mean-field family: ``q(mu_k) = N(m_k, s_k^2 I_d)`` and ``q(c_i) = Categorical(softmax(l_i))``.
The ELBO per point, maximised:

    ELBO / N = 1/N sum_i ( E_q[c_i]^T a_i + H(q(c_i)) - log K ) - 1/N sum_k KL(q(mu_k) || N(0, sigma^2 I))
    a_ik = E_q(mu)[log N(x_i | mu_k, I)] = -d/2 log(2 pi) - (||x_i - m_k||^2 + d s_k^2) / 2

The estimator under test handles the categorical node ``c`` (N units of K categories: each
point is a batch element with one unit): ``f(c)`` is the first sum's sample ``c_i^T a_i``,
evaluated at the sampled assignments; the entropy, the prior of c and the KL of the means
are closed-form parts (:meth:`analytic`), and ``m``, ``log s`` get their exact gradients
through f and the KL. The exact gradient sums over the K clusters of each point
(enumeration per batch element, or :meth:`exact_gradient`).

CAVI for the same family (Blei et al., 2017, Algorithm 2), one pass over the data per
iteration:

    l_ik = m_k^T x_i - (d s_k^2 + ||m_k||^2) / 2          (then phi_i = softmax(l_i))
    s_k^2 = 1 / (1/sigma^2 + sum_i phi_ik),  m_k = s_k^2 sum_i phi_ik x_i

It starts from the problem's own initial variational parameters, so both methods climb
from the same point. Training is full-batch (one pass per step), and :meth:`evaluate`
reports ``cavi_gap``, CAVI's ELBO after as many passes as training has made minus the
current exact ELBO (per point; positive: CAVI is ahead), and ``cavi_elbo``, CAVI's
converged ELBO.

Options: ``dataset`` ("synthetic": N points from K seeded clusters in d dimensions, means
drawn from the prior with ``data_seed``; "iris": scikit-learn's iris measurements,
standardised, 150 points in 4 dimensions), ``points``, ``clusters``, ``dim`` (synthetic
only), ``prior_scale`` (sigma), ``amortized`` (q(c | x) = softmax of a linear map of x
instead of free per-point logits), ``cavi_iterations`` (the reference's length).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dgbench.domains import Choice, Integer, Real
from dgbench.problems.base import Problem, Score, builtin
from dgbench.problems.layers import linear

DATASETS = ("synthetic", "iris")


def gmm_data(dataset: str, points: int, clusters: int, dim: int, prior_scale: float, data_seed: int,
             dtype: torch.dtype) -> Tensor:
    """The observations ``(N, d)``."""
    if dataset == "iris":
        from sklearn.datasets import load_iris

        x = torch.as_tensor(load_iris().data, dtype=torch.float64)
        return ((x - x.mean(0)) / x.std(0)).to(dtype)
    if dataset != "synthetic":
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    g = torch.Generator().manual_seed(data_seed)
    means = torch.randn((clusters, dim), generator=g, dtype=torch.float64) * prior_scale
    labels = torch.randint(clusters, (points,), generator=g)
    return (means[labels] + torch.randn((points, dim), generator=g, dtype=torch.float64)).to(dtype)


def expected_log_likelihoods(x: Tensor, m: Tensor, s2: Tensor) -> Tensor:
    """``a_ik = E_q(mu_k)[log N(x_i | mu_k, I)]``, ``(N, K)``."""
    d = x.shape[-1]
    return -0.5 * d * math.log(2 * math.pi) - 0.5 * (torch.cdist(x, m) ** 2 + d * s2)


def means_kl(m: Tensor, s2: Tensor, prior_scale: float) -> Tensor:
    """``sum_k KL(N(m_k, s_k^2 I) || N(0, sigma^2 I))``."""
    d, v = m.shape[-1], prior_scale**2
    return (0.5 * d * (s2 / v - 1 - torch.log(s2 / v)) + 0.5 * (m**2).sum(-1) / v).sum()


def elbo_per_point(x: Tensor, logits: Tensor, m: Tensor, s2: Tensor, prior_scale: float) -> Tensor:
    """The exact ELBO / N for free logits ``(N, K)``."""
    phi = torch.softmax(logits, -1)
    entropy = -(phi * torch.log_softmax(logits, -1)).sum(-1)
    k = m.shape[0]
    per_point = (phi * expected_log_likelihoods(x, m, s2)).sum(-1) + entropy - math.log(k)
    return per_point.mean() - means_kl(m, s2, prior_scale) / x.shape[0]


def cavi(x: Tensor, logits: Tensor, m: Tensor, s2: Tensor, prior_scale: float,
         iterations: int) -> tuple[list[float], tuple[Tensor, Tensor, Tensor]]:
    """CAVI from ``(logits, m, s2)``: the exact ELBO / N before and after each iteration, and
    the final ``(logits, m, s2)``."""
    x, logits, m, s2 = (t.detach().to(torch.float64) for t in (x, logits, m, s2))
    d = x.shape[-1]
    trace = [float(elbo_per_point(x, logits, m, s2, prior_scale))]
    for _ in range(iterations):
        logits = x @ m.T - 0.5 * (d * s2 + (m**2).sum(-1))
        phi = torch.softmax(logits, -1)
        s2 = 1.0 / (1.0 / prior_scale**2 + phi.sum(0))
        m = s2.unsqueeze(-1) * (phi.T @ x)
        trace.append(float(elbo_per_point(x, logits, m, s2, prior_scale)))
    return trace, (logits, m, s2)


@builtin
class GMMCAVI(Problem):
    option_domains = {"dataset": Choice(DATASETS), "points": Integer(1), "clusters": Integer(2), "dim": Integer(1),
                      "prior_scale": Real(0.0, low_open=True), "data_seed": Integer(0),
                      "cavi_iterations": Integer(0)}
    id = "gmm-cavi"
    family = "categorical"
    minimize = False
    differentiable = True
    batch_dims = 1
    description = ("Gaussian mixture, mean-field VI over one-hot assignments and Gaussian means; exact "
                   "gradient by summing over clusters; CAVI's ELBO as the reference")
    test_options = {"points": 12, "clusters": 3, "dim": 2}
    scores = (Score("exact_objective", "exact ELBO (nats per point)", higher_is_better=True),
              Score("cavi_gap", "gap to CAVI at equal passes (nats per point)", higher_is_better=False))

    def __init__(
        self,
        *,
        dataset: str = "synthetic",
        points: int = 200,
        clusters: int = 3,
        dim: int = 2,
        prior_scale: float = 3.0,
        data_seed: int = 0,
        amortized: bool = False,
        cavi_iterations: int = 200,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if points < 1 or clusters < 2 or dim < 1:
            raise ValueError(f"need points >= 1, clusters >= 2, dim >= 1; got {points}, {clusters}, {dim}")
        if not prior_scale > 0:
            raise ValueError(f"prior_scale must be > 0, got {prior_scale}")
        if cavi_iterations < 0:
            raise ValueError(f"cavi_iterations must be >= 0, got {cavi_iterations}")
        self.dataset, self.points, self.clusters, self.dim = dataset, points, clusters, dim
        self.prior_scale, self.data_seed, self.amortized = prior_scale, data_seed, amortized
        self.cavi_iterations = cavi_iterations
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        x = gmm_data(dataset, points, clusters, dim, prior_scale, data_seed, dtype).to(device)
        self.register_buffer("x", x)
        n, d = x.shape
        if amortized:
            self.encoder = linear(d, clusters, generator).to(device=device, dtype=dtype)
        else:
            # Small random logits break the symmetry between clusters.
            self.local_logits = torch.nn.Parameter(
                (0.1 * torch.randn((n, 1, clusters), generator=generator, dtype=torch.float64)).to(device, dtype))
        init_means = x[torch.randperm(n, generator=generator)[:clusters]]  # K distinct data points
        self.m = torch.nn.Parameter(init_means.clone())
        self.log_s = torch.nn.Parameter(torch.zeros(clusters, dtype=dtype, device=device))
        self.passes = 0
        with torch.no_grad():
            self.cavi_trace, _ = cavi(x, self.logits()[:, 0], self.m, self.log_s.exp() ** 2, prior_scale,
                                      cavi_iterations)

    def logits(self) -> Tensor:
        if self.amortized:
            return self.encoder(self.x).unsqueeze(-2)
        return self.local_logits

    def logit_parameters(self) -> dict[str, torch.nn.Parameter]:
        if self.amortized:
            return dict(self.encoder.named_parameters(prefix="encoder"))
        return {"local_logits": self.local_logits}

    def _a(self) -> Tensor:
        return expected_log_likelihoods(self.x, self.m, torch.exp(2 * self.log_s))

    def f(self, z: Tensor) -> Tensor:
        return (z[..., 0, :] * self._a()).sum(-1)

    def analytic(self, logits: Tensor) -> Tensor:
        entropy = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum((-2, -1))
        kl = means_kl(self.m, torch.exp(2 * self.log_s), self.prior_scale)
        return entropy - math.log(self.clusters) - kl / self.x.shape[0]

    def exact_objective(self) -> Tensor:
        return elbo_per_point(self.x, self.logits()[:, 0], self.m, torch.exp(2 * self.log_s), self.prior_scale)

    def exact_gradient(self) -> dict[str, Tensor] | None:
        if self.amortized:
            return None  # enumeration (K states per point) through the encoder
        # The exact ELBO is closed form: its gradient (entropy and E[f] together) by autograd.
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.exact_objective(), self.local_logits)
        return {"local_logits": grad}

    def next_batch(self, generator: torch.Generator) -> None:
        self.passes += 1  # full batch: every step is one pass over the data

    def batch_state(self) -> dict:
        return {"passes": self.passes}

    def load_batch_state(self, state: dict) -> None:
        self.passes = int(state.get("passes", 0))

    def evaluate(self) -> dict[str, float]:
        current = float(self.exact_objective().detach())
        at_equal_passes = self.cavi_trace[min(self.passes, len(self.cavi_trace) - 1)]
        return {"exact_objective": current, "cavi_gap": at_equal_passes - current, "cavi_elbo": self.cavi_trace[-1]}
