"""Hand-written PyTorch training steps of ``vae-bernoulli-linear``: the speed reference.

Each reference is what a researcher would write by hand for one estimator, without
dgbench: plain tensors for the linear Bernoulli VAE (784-200-784, learned prior, inputs
centred by the training mean, analytic KL), the estimator's gradient written inline as a
surrogate loss, ``backward`` and an Adam step. :mod:`benchmarks.step_overhead` times
dgbench's own training step (:func:`dgbench.harness.cells.train_step`) against these, and
``tests/test_reference_steps.py`` checks that each reference computes dgbench's gradient
from the same noise, so that the two timings are of the same estimator.

Shared conventions, so that gradients can match: noise is one ``torch.rand`` call per
estimate, clamped into ``(eps, 1 - eps)``; ``b = 1[u < sigmoid(logits)]``; logistic
noise is ``log u - log(1 - u)``; learned control variates run in float64; the loss is
minus the ELBO estimate averaged over the minibatch. Formulas and papers: the docstrings
of the modules in ``estimators/``.

:data:`PLAIN` is the step with no estimator at all: one sample, no gradient to the
encoder through it (only through the KL term), the floor any estimator's step is
compared with.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PLAIN = "plain"


class LinearVAE:
    """Parameters copied from a dgbench linear Bernoulli VAE (``vae-bernoulli-linear``/``-digits``)."""

    def __init__(self, problem: nn.Module) -> None:
        def copy(p: Tensor) -> Tensor:
            return p.detach().clone().requires_grad_(True)

        (encoder,), (decoder,) = problem.encoder, problem.decoder
        self.enc_w, self.enc_b = copy(encoder.weight), copy(encoder.bias)
        self.dec_w, self.dec_b = copy(decoder.weight), copy(decoder.bias)
        self.prior = copy(problem.prior_logits)
        self.mean = problem.input_mean

    def parameters(self) -> list[Tensor]:
        return [self.enc_w, self.enc_b, self.dec_w, self.dec_b, self.prior]

    def logits(self, x: Tensor) -> Tensor:
        return F.linear(x - self.mean, self.enc_w, self.enc_b)

    def f(self, x: Tensor, z: Tensor) -> Tensor:
        """``log p(x | z)`` per sample and example."""
        out = F.linear(z, self.dec_w, self.dec_b)
        return (x * out - F.softplus(out)).sum(-1)

    def kl(self, logits: Tensor) -> Tensor:
        q = torch.sigmoid(logits)
        return (q * (F.logsigmoid(logits) - F.logsigmoid(self.prior))
                + (1 - q) * (F.logsigmoid(-logits) - F.logsigmoid(-self.prior))).sum(-1)


def uniform(shape: tuple[int, ...], g: torch.Generator, like: Tensor) -> Tensor:
    eps = torch.finfo(like.dtype).eps
    return torch.rand(shape, generator=g, dtype=like.dtype).clamp(eps, 1 - eps)


def logistic(u: Tensor) -> Tensor:
    return torch.log(u) - torch.log1p(-u)


def bernoulli(logits: Tensor, samples: int, g: torch.Generator) -> Tensor:
    u = uniform((samples, *logits.shape), g, logits)
    return (u < torch.sigmoid(logits.detach())).to(logits.dtype)


def loss_from(value: Tensor, logits: Tensor, grad_logits: Tensor, m: LinearVAE) -> Tensor:
    """Minus the ELBO estimate, with ``grad_logits`` (per example) as its encoder-logit gradient."""
    return -(value + (grad_logits.detach() * logits).sum(-1) - m.kl(logits)).mean()


def conditional_logits(logits: Tensor, b: Tensor, v: Tensor) -> Tensor:
    """Perturbed logits given the sample ``b`` (Tucker et al., 2017), differentiable in ``logits``."""
    p = torch.sigmoid(logits)
    u = b * (1 - p + v * p) + (1 - b) * (v * (1 - p))
    eps = torch.finfo(u.dtype).eps
    return logits + logistic(u.clamp(eps, 1 - eps))


# Stateless references ----------------------------------------------------------------


def plain(m: LinearVAE, x: Tensor, g: torch.Generator) -> Tensor:
    logits = m.logits(x)
    z = bernoulli(logits, 1, g)
    return -(m.f(x, z).mean(0) - m.kl(logits)).mean()


def reinforce(m: LinearVAE, x: Tensor, g: torch.Generator) -> Tensor:
    logits = m.logits(x)
    z = bernoulli(logits, 1, g)
    fz = m.f(x, z)
    grad = (fz.detach().unsqueeze(-1) * (z - torch.sigmoid(logits.detach()))).mean(0)
    return loss_from(fz.mean(0), logits, grad, m)


def rloo(m: LinearVAE, x: Tensor, g: torch.Generator, samples: int = 2) -> Tensor:
    logits = m.logits(x)
    z = bernoulli(logits, samples, g)
    fz = m.f(x, z)
    signal = fz.detach() - (fz.detach().sum(0) - fz.detach()) / (samples - 1)
    grad = (signal.unsqueeze(-1) * (z - torch.sigmoid(logits.detach()))).mean(0)
    return loss_from(fz.mean(0), logits, grad, m)


def reinforce_optimal(m: LinearVAE, x: Tensor, g: torch.Generator, samples: int = 4) -> Tensor:
    logits = m.logits(x)
    z = bernoulli(logits, samples, g)
    fz = m.f(x, z)
    score = z - torch.sigmoid(logits.detach())
    s2 = score**2
    weighted = fz.detach().unsqueeze(-1) * s2
    num, den = weighted.sum(0) - weighted, s2.sum(0) - s2
    c = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), 0.0)
    grad = ((fz.detach().unsqueeze(-1) - c) * score).mean(0)
    return loss_from(fz.mean(0), logits, grad, m)


def muprop(m: LinearVAE, x: Tensor, g: torch.Generator) -> Tensor:
    logits = m.logits(x)
    p = torch.sigmoid(logits.detach())
    mu = p.clone().requires_grad_(True)
    f_mu = m.f(x, mu)
    (df_mu,) = torch.autograd.grad(f_mu.sum(), mu)
    z = bernoulli(logits, 1, g)
    fz = m.f(x, z)
    signal = fz.detach() - (f_mu.detach() + (df_mu * (z - p)).sum(-1))
    grad = (signal.unsqueeze(-1) * (z - p)).mean(0) + df_mu * p * (1 - p)
    return loss_from(fz.mean(0), logits, grad, m)


def darn(m: LinearVAE, x: Tensor, g: torch.Generator) -> Tensor:
    logits = m.logits(x)
    b = bernoulli(logits, 1, g).requires_grad_(True)
    fb = m.f(x, b)
    (df,) = torch.autograd.grad(fb.sum(), b, retain_graph=True)
    grad = (df * (b.detach() - 0.5) * (b.detach() - torch.sigmoid(logits.detach()))).mean(0)
    return loss_from(fb.mean(0), logits, grad, m)


def straight_through(m: LinearVAE, x: Tensor, g: torch.Generator) -> Tensor:
    logits = m.logits(x)
    z = bernoulli(logits, 1, g)
    p = torch.sigmoid(logits)
    return -(m.f(x, z + (p - p.detach())).mean(0) - m.kl(logits)).mean()


def concrete(logits: Tensor, g: torch.Generator, temperature: float) -> Tensor:
    return torch.sigmoid((logits + logistic(uniform((1, *logits.shape), g, logits))) / temperature)


def gumbel_softmax(m: LinearVAE, x: Tensor, g: torch.Generator, temperature: float = 0.5) -> Tensor:
    logits = m.logits(x)
    return -(m.f(x, concrete(logits, g, temperature)).mean(0) - m.kl(logits)).mean()


def st_gumbel_softmax(m: LinearVAE, x: Tensor, g: torch.Generator, temperature: float = 0.5) -> Tensor:
    logits = m.logits(x)
    y = concrete(logits, g, temperature)
    z = (y > 0.5).to(y.dtype)
    return -(m.f(x, z + (y - y.detach())).mean(0) - m.kl(logits)).mean()


def arm(m: LinearVAE, x: Tensor, g: torch.Generator) -> Tensor:
    logits = m.logits(x)
    u = uniform((1, *logits.shape), g, logits)
    p = torch.sigmoid(logits.detach())
    f1, f2 = m.f(x, torch.stack([(u > 1 - p), (u < p)]).to(u.dtype))
    grad = ((f1 - f2).detach().unsqueeze(-1) * (u - 0.5)).mean(0)
    return loss_from(((f1 + f2) / 2).mean(0), logits, grad, m)


def disarm(m: LinearVAE, x: Tensor, g: torch.Generator) -> Tensor:
    logits = m.logits(x)
    u = uniform((1, *logits.shape), g, logits)
    p = torch.sigmoid(logits.detach())
    b, b_anti = (u < p).to(u.dtype), (1 - u < p).to(u.dtype)
    f1, f2 = m.f(x, torch.stack([b, b_anti]))
    weight = (1 - 2 * b_anti) * (b != b_anti).to(u.dtype) * torch.sigmoid(logits.detach().abs())
    grad = (0.5 * (f1 - f2).detach().unsqueeze(-1) * weight).mean(0)
    return loss_from(((f1 + f2) / 2).mean(0), logits, grad, m)


def gumbel_rao(m: LinearVAE, x: Tensor, g: torch.Generator, draws: int = 10, temperature: float = 0.5) -> Tensor:
    logits = m.logits(x)
    theta = logits.detach()
    u = uniform((1 + draws, 1, *logits.shape), g, logits)
    b = ((theta + logistic(u[0])) > 0).to(u.dtype).requires_grad_(True)
    fb = m.f(x, b)
    (df,) = torch.autograd.grad(fb.sum(), b, retain_graph=True)
    noise = conditional_logits(theta, b.detach(), u[1:]) - theta
    theta = theta.requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.sigmoid((theta + noise) / temperature).mean(0), theta, grad_outputs=df)
    return loss_from(fb.mean(0), logits, grad, m)


def reinmax(m: LinearVAE, x: Tensor, g: torch.Generator, temperature: float = 1.0) -> Tensor:
    logits = m.logits(x)
    d = bernoulli(logits, 1, g).requires_grad_(True)
    fz = m.f(x, d)
    (v,) = torch.autograd.grad(fz.sum(), d, retain_graph=True)
    pi0 = torch.sigmoid(logits.detach())
    pi1 = (d.detach() + torch.sigmoid(logits.detach() / temperature)) / 2
    grad = (2 * pi1 * (1 - pi1) * v - 0.5 * pi0 * (1 - pi0) * v).mean(0)
    return loss_from(fz.mean(0), logits, grad, m)


def indecater(m: LinearVAE, x: Tensor, g: torch.Generator, block_evaluations: int = 2**12) -> Tensor:
    logits = m.logits(x)
    z = bernoulli(logits, 1, g)[0]
    n, d = z.shape
    block = max(1, block_evaluations // (2 * n))
    tables = []
    for start in range(0, d, block):
        units = torch.arange(start, min(d, start + block))
        # (2, units, n, d): z with one unit set to 0, then to 1.
        sub = z.expand(2, len(units), n, d).clone()
        sub[0, torch.arange(len(units)), :, units] = 0.0
        sub[1, torch.arange(len(units)), :, units] = 1.0
        tables.append(m.f(x, sub))
    table = torch.cat(tables, dim=1)  # (2, d, n)
    p = torch.sigmoid(logits.detach())
    f0, f1 = table[0].T, table[1].T
    grad = p * (1 - p) * (f1 - f0).detach()
    return loss_from(((1 - p) * f0 + p * f1).mean(-1), logits, grad, m)


def arms(m: LinearVAE, x: Tensor, g: torch.Generator, samples: int = 2) -> Tensor:
    logits = m.logits(x)
    p = torch.sigmoid(logits.detach())
    e = -torch.log(uniform((samples, *logits.shape), g, logits))
    u = (1 - e / e.sum(0)).pow(samples - 1)
    b = (torch.where(p < 0.5, u, 1 - u) < p).to(u.dtype)
    fb = m.f(x, b)
    loo = fb.detach() - (fb.detach().sum(0) - fb.detach()) / (samples - 1)
    low = torch.minimum(p, 1 - p)
    both = (2 * low.pow(1 / (samples - 1)) - 1).clamp_min(0).pow(samples - 1)
    grad = (loo.unsqueeze(-1) * (b - p)).mean(0) * p * (1 - p) / (low - both)
    return loss_from(fb.mean(0), logits, grad, m)


def gst(m: LinearVAE, x: Tensor, g: torch.Generator, temperature: float = 1.0, gap: float = 1.0) -> Tensor:
    logits = m.logits(x)
    z = bernoulli(logits, 1, g)
    moved = torch.where(z > 0.5, logits.detach().clamp(min=gap), logits.detach().clamp(max=-gap))
    y = torch.sigmoid((logits + (moved - logits.detach())) / temperature)
    return -(m.f(x, z + (y - y.detach())).mean(0) - m.kl(logits)).mean()


def decoupled_st_gs(m: LinearVAE, x: Tensor, g: torch.Generator, forward_temperature: float = 1.6,
                    backward_temperature: float = 1.3) -> Tensor:
    logits = m.logits(x)
    eps = logistic(uniform((1, *logits.shape), g, logits))
    z = (logits.detach() / forward_temperature + eps > 0).to(eps.dtype)
    y = torch.sigmoid(logits / backward_temperature + eps)
    return -(m.f(x, z + (y - y.detach())).mean(0) - m.kl(logits)).mean()


# References with state or learned parts ----------------------------------------------


class ReinforceEMA:
    def __init__(self, source: nn.Module | None = None, decay: float = 0.9) -> None:
        self.decay, self.average, self.updates = decay, 0.0, 0
        if source is not None:  # start from the dgbench estimator's running average
            self.average, self.updates = float(source.part.average), int(source.part.updates)
        self.parameters: list[Tensor] = []

    def __call__(self, m: LinearVAE, x: Tensor, g: torch.Generator) -> Tensor:
        logits = m.logits(x)
        z = bernoulli(logits, 1, g)
        fz = m.f(x, z)
        c = self.average / (1 - self.decay**self.updates) if self.updates else 0.0
        grad = ((fz.detach() - c).unsqueeze(-1) * (z - torch.sigmoid(logits.detach()))).mean(0)
        self.average = self.decay * self.average + (1 - self.decay) * float(fz.detach().mean())
        self.updates += 1
        return loss_from(fz.mean(0), logits, grad, m)


def tanh_network(inputs: int, hidden: int) -> nn.Sequential:
    """float64 ``inputs -> hidden -> 1``, tanh, output layer starting at zero."""
    net = nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, 1)).double()
    nn.init.zeros_(net[2].weight)
    nn.init.zeros_(net[2].bias)
    return net


def copy_network(net: nn.Module, source: nn.Module | None) -> None:
    if source is not None:
        with torch.no_grad():
            for p, q in zip(net.parameters(), source.parameters()):
                p.copy_(q)


class NVIL:
    def __init__(self, latents: int, source: nn.Module | None = None, hidden: int = 16, decay: float = 0.8) -> None:
        self.net = tanh_network(latents, hidden)
        copy_network(self.net, source.part.network if source is not None else None)
        self.decay, self.mean, self.variance = decay, 0.0, 1.0
        if source is not None:
            self.mean, self.variance = float(source.part.mean), float(source.part.variance)
        self.parameters = list(self.net.parameters())

    def __call__(self, m: LinearVAE, x: Tensor, g: torch.Generator) -> Tensor:
        logits = m.logits(x)
        z = bernoulli(logits, 1, g)
        fz = m.f(x, z)
        b = self.net(logits.detach().double()).squeeze(-1)
        centred = fz.detach().double() - self.mean
        grad = (((centred - b.detach()).to(fz.dtype)).unsqueeze(-1) * (z - torch.sigmoid(logits.detach()))).mean(0)
        residual = fz.detach().double() - b.detach()
        self.mean = self.decay * self.mean + (1 - self.decay) * float(residual.mean())
        self.variance = self.decay * self.variance + (1 - self.decay) * float(residual.var(unbiased=False))
        return loss_from(fz.mean(0), logits, grad, m) + ((centred - b) ** 2).mean()


def accumulate(params: list[Tensor], loss: Tensor) -> None:
    for p, grad in zip(params, torch.autograd.grad(loss, params)):
        p.grad = grad if p.grad is None else p.grad + grad


class REBAR:
    def __init__(self, source: nn.Module | None = None, eta: float = 1.0, temperature: float = 0.5) -> None:
        self.eta = torch.tensor(eta, dtype=torch.float64, requires_grad=True)
        self.log_temperature = torch.tensor(math.log(temperature), dtype=torch.float64, requires_grad=True)
        if source is not None:
            with torch.no_grad():
                self.eta.copy_(source.eta_parameter)
                self.log_temperature.copy_(source.log_temperature)
        self.parameters = [self.eta, self.log_temperature]

    def __call__(self, m: LinearVAE, x: Tensor, g: torch.Generator) -> Tensor:
        logits = m.logits(x)
        theta = logits.detach().requires_grad_(True)
        u = uniform((2, 1, *logits.shape), g, logits)
        eta, t = self.eta.to(logits.dtype), self.log_temperature.exp().to(logits.dtype)
        z = theta + logistic(u[0])
        b = (z.detach() > 0).to(u.dtype)
        z_cond = conditional_logits(theta, b, u[1])
        fb = m.f(x, b)
        f_cond = m.f(x, torch.sigmoid(z_cond / t))
        (pathwise,) = torch.autograd.grad((m.f(x, torch.sigmoid(z / t)) - f_cond).sum(), theta, create_graph=True)
        grad = ((fb.detach() - eta * f_cond).unsqueeze(-1) * (b - torch.sigmoid(logits.detach()))).mean(0) + eta * pathwise
        accumulate(self.parameters, (grad**2).sum(-1).mean())
        return loss_from(fb.mean(0), logits, grad, m)


class RELAX:
    def __init__(self, latents: int, source: nn.Module | None = None, hidden: int = 10) -> None:
        self.net = tanh_network(latents, hidden)
        copy_network(self.net, getattr(source, "control", None))
        self.parameters = list(self.net.parameters())

    def c(self, z: Tensor) -> Tensor:
        return self.net(torch.sigmoid(z).double()).squeeze(-1).to(z.dtype)

    def __call__(self, m: LinearVAE, x: Tensor, g: torch.Generator) -> Tensor:
        logits = m.logits(x)
        theta = logits.detach().requires_grad_(True)
        u = uniform((2, 1, *logits.shape), g, logits)
        z = theta + logistic(u[0])
        b = (z.detach() > 0).to(u.dtype)
        c_cond = self.c(conditional_logits(theta, b, u[1]))
        (pathwise,) = torch.autograd.grad((self.c(z) - c_cond).sum(), theta, create_graph=True)
        fb = m.f(x, b)
        grad = ((fb.detach() - c_cond).unsqueeze(-1) * (b - torch.sigmoid(logits.detach()))).mean(0) + pathwise
        accumulate(self.parameters, (grad**2).sum(-1).mean())
        return loss_from(fb.mean(0), logits, grad, m)


def gradients_at(m: LinearVAE, x: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``f(b_k)`` (keeping its graph for the decoder) and ``df/db (b_k)``."""
    b = b.clone().requires_grad_(True)
    fb = m.f(x, b)
    (df,) = torch.autograd.grad(fb.sum(), b, retain_graph=True)
    return fb, df


class DoubleCV:
    def __init__(self, source: nn.Module | None = None) -> None:
        self.alpha = torch.zeros((), dtype=torch.float64, requires_grad=True)
        if source is not None:
            with torch.no_grad():
                self.alpha.copy_(source.alpha)
        self.parameters = [self.alpha]

    def __call__(self, m: LinearVAE, x: Tensor, g: torch.Generator, samples: int = 2) -> Tensor:
        logits = m.logits(x)
        b = bernoulli(logits, samples, g)
        fb, df = gradients_at(m, x, b)
        p = torch.sigmoid(logits.detach())
        score = b - p
        alpha = self.alpha.to(logits.dtype)
        h = alpha * (((df.sum(0) - df) / (samples - 1)) * score).sum(-1)
        shifted = fb.detach() + h
        signal = shifted - (shifted.sum(0) - shifted) / (samples - 1)
        grad = (signal.unsqueeze(-1) * score).mean(0) - alpha * df.mean(0) * p * (1 - p)
        accumulate(self.parameters, (grad**2).sum(-1).mean())
        return loss_from(fb.mean(0), logits, grad, m)


class RODEO:
    """Written as the authors' code is (github.com/thjashin/rodeo): every neighbour of every
    sample materialised, ``(K, batch, D, D)``."""

    def __init__(self, source: nn.Module | None = None, hidden: int = 100) -> None:
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.LeakyReLU(0.3), nn.Linear(hidden, 2)).double()
        copy_network(self.net, getattr(source, "network", None))
        self.alpha = torch.zeros((), dtype=torch.float64, requires_grad=True)
        self.beta = torch.zeros((), dtype=torch.float64, requires_grad=True)
        if source is not None:
            with torch.no_grad():
                self.alpha.copy_(source.alpha)
                self.beta.copy_(source.beta)
        self.parameters = [self.alpha, self.beta, *self.net.parameters()]  # dgbench's order

    def __call__(self, m: LinearVAE, x: Tensor, g: torch.Generator, samples: int = 2) -> Tensor:
        logits = m.logits(x)
        b = bernoulli(logits, samples, g)
        fb, df = gradients_at(m, x, b)
        b, df, values = b.double(), df.double(), fb.detach().double()
        p = torch.sigmoid(logits.detach()).double()
        eye = torch.eye(b.shape[-1], dtype=b.dtype)
        nbrs = eye * (1 - b.unsqueeze(-2)) + (1 - eye) * b.unsqueeze(-2)  # row i: unit i flipped
        h_x, h_n = [], []
        for k in range(samples):
            at_x, at_n = 0.0, 0.0
            for j in range(samples):
                if j != k:
                    anchor = (df[j] * b[j]).sum(-1)
                    lin_x = (df[j] * b[k]).sum(-1) - anchor
                    lin_n = (df[j].unsqueeze(-2) * nbrs[k]).sum(-1) - anchor.unsqueeze(-1)
                    at_x = at_x + self.net(torch.stack([lin_x, values[j]], -1))
                    at_n = at_n + self.net(torch.stack([lin_n, values[j].unsqueeze(-1).expand_as(lin_n)], -1))
            h_x.append(at_x / (samples - 1))
            h_n.append(at_n / (samples - 1))
        h_x, h_n = torch.stack(h_x), torch.stack(h_n)
        w = p * (1 - b) + (1 - p) * b
        score = b - p
        scalar = (w * (h_n[..., 0] - h_x[..., :1])).mean(-1)
        vector = (w.unsqueeze(-1) * (h_n[..., 1:] * (nbrs - p.unsqueeze(-2))
                                     - (h_x[..., 1:] * score).unsqueeze(-2))).mean(-2)
        shifted = values + self.alpha * scalar
        signal = values - (shifted.sum(0) - shifted) / (samples - 1)
        grad = (signal.unsqueeze(-1) * score + self.beta * vector).mean(0)
        accumulate(self.parameters, (grad**2).sum(-1).mean())
        return loss_from(fb.mean(0), logits, grad.to(logits.dtype), m)


Reference = Callable[[LinearVAE, Tensor, torch.Generator], Tensor]

STATELESS: dict[str, Reference] = {
    "reinforce": reinforce,
    "rloo": rloo,
    "reinforce-optimal": reinforce_optimal,
    "muprop": muprop,
    "darn": darn,
    "straight-through": straight_through,
    "gumbel-softmax": gumbel_softmax,
    "st-gumbel-softmax": st_gumbel_softmax,
    "arm": arm,
    "disarm": disarm,
    "gumbel-rao": gumbel_rao,
    "reinmax": reinmax,
    "indecater": indecater,
    "arms": arms,
    "gst": gst,
    "decoupled-st-gs": decoupled_st_gs,
}
STATEFUL = ("reinforce-ema", "nvil", "rebar", "relax", "double-cv", "rodeo")
ESTIMATOR_IDS = (*STATELESS, *STATEFUL)


def make_reference(eid: str, m: LinearVAE, source: nn.Module | None = None) -> tuple[Reference, list[Tensor]]:
    """The reference step of estimator ``eid`` (default hyperparameters) and its own parameters.

    ``source``: a dgbench estimator whose learned parts (control variates, eta,
    temperature, running statistics) the reference starts from.
    """
    if eid == PLAIN:
        return plain, []
    if eid in STATELESS:
        return STATELESS[eid], []
    latents = m.enc_w.shape[0]
    ref = {
        "reinforce-ema": lambda: ReinforceEMA(source),
        "nvil": lambda: NVIL(latents, source),
        "rebar": lambda: REBAR(source),
        "relax": lambda: RELAX(latents, source),
        "double-cv": lambda: DoubleCV(source),
        "rodeo": lambda: RODEO(source),
    }[eid]()
    return ref, ref.parameters
