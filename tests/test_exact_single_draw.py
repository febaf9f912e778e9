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

from estimators import ESTIMATORS
from estimators.noise import uniform
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
    return est.eval()


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
    u = uniform((est.samples, *logits.shape), generator, logits)
    expected_grad, expected_value = FORMULAS[eid](node, logits.detach(), u, f, est)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.detach(), expected_value, rtol=1e-10, atol=1e-12)
