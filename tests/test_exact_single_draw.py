"""With fixed noise, each estimator's gradient (and value) equals a hand-written formula.

The formulas below are written from the papers with plain tensor operations; they share
nothing with the estimator code except the noise convention (one uniform draw ``u`` of
shape ``(S, *logits.shape)`` from the generator).
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from dgbench.estimators import ESTIMATORS
from dgbench.estimators.noise import uniform
from tests.helpers import DTYPE, LOGITS, CoupledQuadratic

SEED = 1234
TAU = 0.7


def hard(node, logits, u):
    if node == "bernoulli":
        return (u < torch.sigmoid(logits)).to(DTYPE)
    g = -torch.log(-torch.log(u))
    return F.one_hot((logits + g).argmax(-1), logits.shape[-1]).to(DTYPE)


def probs(node, logits):
    return torch.sigmoid(logits) if node == "bernoulli" else torch.softmax(logits, -1)


def mean_jacobian_t(node, logits, v):
    """v^T d probs / d logits, written out."""
    p = probs(node, logits)
    if node == "bernoulli":
        return v * p * (1 - p)
    return p * (v - (p * v).sum(-1, keepdim=True))


def expand(x, node):
    return x.reshape(x.shape + (1,) * (1 if node == "bernoulli" else 2))


def reinforce(node, logits, u, f, est):
    z = hard(node, logits, u)
    return (expand(f(z), node) * (z - probs(node, logits))).mean(0), f(z).mean(0)


def reinforce_ema(node, logits, u, f, est):
    c = float(est.average) / (1 - est.decay ** int(est.updates))
    z = hard(node, logits, u)
    return (expand(f(z) - c, node) * (z - probs(node, logits))).mean(0), f(z).mean(0)


def reinforce_optimal(node, logits, u, f, est):
    z = hard(node, logits, u)
    fz, score = f(z), z - probs(node, logits)
    s = z.shape[0]
    grad = torch.zeros_like(logits)
    for j in range(s):
        others = [r for r in range(s) if r != j]
        num = sum(fz[r] * score[r] ** 2 for r in others)
        den = sum(score[r] ** 2 for r in others)
        grad += (fz[j] - num / den) * score[j]
    return grad / s, fz.mean(0)


def rloo(node, logits, u, f, est):
    z = hard(node, logits, u)
    fz, s = f(z), z.shape[0]
    grad = sum((fz[j] - (fz.sum() - fz[j]) / (s - 1)) * (z[j] - probs(node, logits)) for j in range(s))
    return grad / s, fz.mean(0)


def muprop(node, logits, u, f, est):
    mu = probs(node, logits)
    z = hard(node, logits, u)
    taylor = f(mu) + (f.grad(mu) * (z - mu)).sum(tuple(range(1, z.dim())))
    grad = (expand(f(z) - taylor, node) * (z - mu)).mean(0) + mean_jacobian_t(node, logits, f.grad(mu))
    return grad, f(z).mean(0)


def darn(node, logits, u, f, est):
    b = hard(node, logits, u)
    return (f.grad(b) * (b - 0.5) * (b - torch.sigmoid(logits))).mean(0), f(b).mean(0)


def straight_through(node, logits, u, f, est):
    z = hard(node, logits, u)
    return mean_jacobian_t(node, logits, f.grad(z)).mean(0), f(z).mean(0)


def relaxed_sample(node, logits, u):
    if node == "bernoulli":
        return torch.sigmoid((logits + torch.log(u) - torch.log(1 - u)) / TAU)
    return torch.softmax((logits - torch.log(-torch.log(u))) / TAU, -1)


def relaxed_jacobian_t(node, y, v):
    if node == "bernoulli":
        return v * y * (1 - y) / TAU
    return y * (v - (y * v).sum(-1, keepdim=True)) / TAU


def gumbel_softmax(node, logits, u, f, est):
    y = relaxed_sample(node, logits, u)
    return relaxed_jacobian_t(node, y, f.grad(y)).mean(0), f(y).mean(0)


def st_gumbel_softmax(node, logits, u, f, est):
    y = relaxed_sample(node, logits, u)
    if node == "bernoulli":
        z = (logits + torch.log(u) - torch.log(1 - u) > 0).to(DTYPE)
    else:
        z = F.one_hot((logits - torch.log(-torch.log(u))).argmax(-1), logits.shape[-1]).to(DTYPE)
    return relaxed_jacobian_t(node, y, f.grad(z)).mean(0), f(z).mean(0)


def arm(node, logits, u, f, est):
    p = torch.sigmoid(logits)
    f1, f2 = f((u > 1 - p).to(DTYPE)), f((u < p).to(DTYPE))
    return (expand(f1 - f2, node) * (u - 0.5)).mean(0), ((f1 + f2) / 2).mean(0)


def disarm(node, logits, u, f, est):
    p = torch.sigmoid(logits)
    b, bt = (u < p).to(DTYPE), (1 - u < p).to(DTYPE)
    fb, fbt = f(b), f(bt)
    weight = (-1.0) ** bt * (b != bt).to(DTYPE) * torch.sigmoid(logits.abs())
    return (0.5 * expand(fb - fbt, node) * weight).mean(0), ((fb + fbt) / 2).mean(0)


def exact(node, logits, u, f, est):
    shape = logits.shape
    p = probs(node, logits)
    grad, value = torch.zeros_like(logits), torch.zeros((), dtype=DTYPE)
    if node == "bernoulli":
        configurations = [torch.tensor(bits, dtype=DTYPE) for bits in itertools.product([0, 1], repeat=shape[0])]
    else:
        configurations = [F.one_hot(torch.tensor(ks), shape[1]).to(DTYPE) for ks in itertools.product(range(shape[1]), repeat=shape[0])]
    for z in configurations:
        q = torch.exp((z * torch.log(p)).sum()) if node == "categorical" else torch.prod(p**z * (1 - p) ** (1 - z))
        value += q * f(z)
        grad += q * f(z) * (z - p)
    return grad, value


def perturbed(node, theta, u):
    if node == "bernoulli":
        return theta + torch.log(u) - torch.log(1 - u)
    return theta - torch.log(-torch.log(u))


def hard_of(node, y):
    if node == "bernoulli":
        return (y > 0).to(DTYPE)
    return F.one_hot(y.argmax(-1), y.shape[-1]).to(DTYPE)


def conditional(node, theta, b, v):
    """Perturbed logits given the sample b (REBAR, appendix): written from the formulas."""
    if node == "bernoulli":
        p = torch.sigmoid(theta)
        ut = torch.where(b == 1, 1 - p + v * p, v * (1 - p))
        return theta + torch.log(ut) - torch.log(1 - ut)
    e = -torch.log(v)
    top = torch.log(torch.exp(theta).sum(-1, keepdim=True)) - torch.log((b * e).sum(-1, keepdim=True))
    rest = -torch.log(torch.exp(-top) + e * torch.exp(-theta))
    return torch.where(b == 1, top, rest)


def soft(node, y, t):
    return torch.sigmoid(y / t) if node == "bernoulli" else torch.softmax(y / t, -1)


def d_dtheta(fn, theta):
    """Derivative of a scalar hand-written function of the logits."""
    theta = theta.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(theta), theta)
    return g


def mlp(net, x):
    """A one-hidden-layer tanh network written out from its weights."""
    first, last = net[0], net[2]
    return (torch.tanh(x @ first.weight.T + first.bias) @ last.weight.T + last.bias).squeeze(-1)


def flat(node, x):
    return x if node == "bernoulli" else x.flatten(-2)


def nvil(node, logits, u, f, est):
    z = hard(node, logits, u)
    b = mlp(est.baseline, flat(node, logits))
    signal = f(z) - float(est.mean) - b
    return (expand(signal, node) * (z - probs(node, logits))).mean(0), f(z).mean(0)


def rebar(node, logits, u, f, est):
    eta, lam, s = est.eta, est.temperature, u.shape[1]
    b = hard_of(node, perturbed(node, logits, u[0]))
    f_cond = f(soft(node, conditional(node, logits, b, u[1]), lam))
    pathwise = d_dtheta(lambda th: (f(soft(node, perturbed(node, th, u[0]), lam))
                                    - f(soft(node, conditional(node, th, b, u[1]), lam))).sum(), logits)
    grad = (expand(f(b) - eta * f_cond, node) * (b - probs(node, logits))).mean(0) + eta * pathwise / s
    return grad, f(b).mean(0)


def relax(node, logits, u, f, est):
    s = u.shape[1]
    b = hard_of(node, perturbed(node, logits, u[0]))

    def c(y):
        return mlp(est.control, flat(node, soft(node, y, 1.0)))

    c_cond = c(conditional(node, logits, b, u[1]))
    pathwise = d_dtheta(lambda th: (c(perturbed(node, th, u[0])) - c(conditional(node, th, b, u[1]))).sum(), logits)
    grad = (expand(f(b) - c_cond, node) * (b - probs(node, logits))).mean(0) + pathwise / s
    return grad, f(b).mean(0)


def gumbel_rao(node, logits, u, f, est):
    s = u.shape[1]
    b = hard_of(node, perturbed(node, logits, u[0]))
    v = f.grad(b)
    noise = conditional(node, logits, b, u[1:]) - logits  # held fixed
    grad = d_dtheta(lambda th: (soft(node, th + noise, TAU).mean(0) * v).sum(), logits) / s
    return grad, f(b).mean(0)


def reinmax(node, logits, u, f, est):
    d = hard(node, logits, u)
    v = f.grad(d)

    def jt(pi):
        return pi * (1 - pi) * v if node == "bernoulli" else pi * (v - (pi * v).sum(-1, keepdim=True))

    pi1 = (d + probs(node, logits / TAU)) / 2
    return (2 * jt(pi1) - 0.5 * jt(probs(node, logits))).mean(0), f(d).mean(0)


def indecater(node, logits, u, f, est):
    z = hard(node, logits, u)
    p = probs(node, logits)
    units = logits.shape[0]
    values = 2 if node == "bernoulli" else logits.shape[1]
    table = torch.zeros(units, values, dtype=DTYPE)
    for d in range(units):
        for k in range(values):
            zk = z.clone()
            zk[:, d] = k if node == "bernoulli" else F.one_hot(torch.tensor(k), values).to(DTYPE)
            table[d, k] = f(zk).mean()
    if node == "bernoulli":
        return p * (1 - p) * (table[:, 1] - table[:, 0]), ((1 - p) * table[:, 0] + p * table[:, 1]).mean()
    return p * (table - (p * table).sum(-1, keepdim=True)), (p * table).sum(-1).mean()


def vimco(node, logits, u, f, est):
    z = hard(node, logits, u)
    k = z.shape[0]
    w = torch.exp(f(z))
    bound = torch.log(w.mean())
    grad = torch.zeros_like(logits)
    for j in range(k):
        others = [i for i in range(k) if i != j]
        geometric = torch.exp(torch.log(w[others]).mean())
        loo = torch.log((w[others].sum() + geometric) / k)
        grad = grad + (bound - loo) * (z[j] - probs(node, logits))
    return grad, bound


def disarm_categorical(node, logits, u, f, est):
    k = logits.shape[-1]
    # stick-breaking logits a_j = theta_j - log sum_{i>j} exp(theta_i), and their Jacobian
    def sticks(th):
        return torch.stack([th[..., j] - torch.log(torch.exp(th[..., j + 1:]).sum(-1)) for j in range(k - 1)], -1)

    a = sticks(logits)
    p = torch.sigmoid(a)
    b, bt = (u < p).to(DTYPE), (1 - u < p).to(DTYPE)

    def cls(bits):  # first stick that breaks, else the last class
        out = torch.zeros(*bits.shape[:-1], k, dtype=DTYPE)
        for index in itertools.product(*[range(n) for n in bits.shape[:-1]]):
            ones = [j for j in range(k - 1) if bits[index][j] == 1]
            out[index][ones[0] if ones else k - 1] = 1
        return out

    fb, fbt = f(cls(b)), f(cls(bt))
    weight = (-1.0) ** bt * (b != bt).to(DTYPE) * torch.sigmoid(a.abs())
    grad_a = (0.5 * expand(fb - fbt, node) * weight).mean(0)
    grad = d_dtheta(lambda th: (sticks(th) * grad_a).sum(), logits)
    return grad, ((fb + fbt) / 2).mean(0)


# Noise sources per sample (u has shape (n, S, *logits.shape) when n > 1).
NOISE_SOURCES = {"rebar": lambda est: 2, "relax": lambda est: 2, "gumbel-rao": lambda est: 1 + est.draws}

FORMULAS = {
    "exact": exact,
    "reinforce": reinforce,
    "reinforce-ema": reinforce_ema,
    "reinforce-optimal": reinforce_optimal,
    "rloo": rloo,
    "muprop": muprop,
    "darn": darn,
    "straight-through": straight_through,
    "gumbel-softmax": gumbel_softmax,
    "st-gumbel-softmax": st_gumbel_softmax,
    "arm": arm,
    "disarm": disarm,
    "nvil": nvil,
    "rebar": rebar,
    "relax": relax,
    "gumbel-rao": gumbel_rao,
    "reinmax": reinmax,
    "indecater": indecater,
    "vimco": vimco,
    "disarm-categorical": disarm_categorical,
}
PAIRS = [(eid, node) for eid, cls in ESTIMATORS.items() for node in ("bernoulli", "categorical") if cls.supports(node)]


def test_every_registered_estimator_has_a_hand_formula():
    assert set(FORMULAS) == set(ESTIMATORS), "add a hand-written formula for each new estimator"


def build(eid, node):
    cls = ESTIMATORS[eid]
    hp = cls.default_hyperparameters()
    kwargs = {}
    if "samples" in hp and cls.multi_sample:
        kwargs["samples"] = max(3, cls.min_samples)
    if "temperature" in hp:
        kwargs["temperature"] = TAU
    est = cls(node, **kwargs)
    if eid == "reinforce-ema":  # a non-trivial baseline state, as after 3 updates
        est.average.fill_(0.37)
        est.updates.fill_(3)
    randomize_learned_parts(est, node)
    return est.eval()


def randomize_learned_parts(est, node, seed=0):
    """Give learned baselines/control variates random (not initial) values."""
    if est.id == "rebar":
        with torch.no_grad():
            est.eta_parameter.fill_(0.63)
            est.log_temperature.fill_(-0.4)
    if any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in est.parameters()):
        est.eval()(LOGITS[node].clone(), CoupledQuadratic(node), generator=torch.Generator().manual_seed(99))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in est.named_parameters():
            if name not in ("eta_parameter", "log_temperature"):
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    if est.id == "nvil":
        est.mean.fill_(0.21)


@pytest.mark.parametrize("eid,node", PAIRS)
def test_single_draw_matches_hand_formula(eid, node):
    est = build(eid, node)
    f = CoupledQuadratic(node)
    logits = LOGITS[node].clone().requires_grad_(True)
    generator = torch.Generator().manual_seed(SEED)
    state = generator.get_state()
    out = est(logits, f, generator=generator)
    (grad,) = torch.autograd.grad(out, logits)

    generator.set_state(state)
    n = NOISE_SOURCES.get(eid, lambda est: 1)(est)
    shape = logits.shape if eid != "disarm-categorical" else (*logits.shape[:-1], logits.shape[-1] - 1)
    u = uniform(((n,) if n > 1 else ()) + (est.samples, *shape), generator, logits)
    expected_grad, expected_value = FORMULAS[eid](node, logits.detach(), u, f, est)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.detach(), expected_value, rtol=1e-10, atol=1e-12)
