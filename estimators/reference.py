"""Plain-tensor helpers of the hand-written single-draw references.

Each estimator module defines ``reference_draw(node, logits, u, f, est) -> (gradient,
value)``: the estimator written out from its paper for one call whose noise is ``u`` (of
shape ``est.noise_shape(logits.shape)``), for unbatched logits ``(D,)`` or ``(D, K)``.
``f`` is a test objective offering ``f(z)`` and its derivative ``f.grad(z)``. The tests
check every estimator's forward against its reference exactly; references share nothing
with the estimators' code but the noise convention and these helpers, which are used by
references only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hard(node, logits, u):
    if node == "bernoulli":
        return (u < torch.sigmoid(logits)).to(logits.dtype)
    g = -torch.log(-torch.log(u))
    return F.one_hot((logits + g).argmax(-1), logits.shape[-1]).to(logits.dtype)


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


def relaxed_sample(node, logits, u, tau):
    if node == "bernoulli":
        return torch.sigmoid((logits + torch.log(u) - torch.log(1 - u)) / tau)
    return torch.softmax((logits - torch.log(-torch.log(u))) / tau, -1)


def relaxed_jacobian_t(node, y, v, tau):
    if node == "bernoulli":
        return v * y * (1 - y) / tau
    return y * (v - (y * v).sum(-1, keepdim=True)) / tau


def perturbed(node, theta, u):
    if node == "bernoulli":
        return theta + torch.log(u) - torch.log(1 - u)
    return theta - torch.log(-torch.log(u))


def hard_of(node, y):
    if node == "bernoulli":
        return (y > 0).to(y.dtype)
    return F.one_hot(y.argmax(-1), y.shape[-1]).to(y.dtype)


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
    """A one-hidden-layer tanh (or ReLU) network written out from its weights."""
    first, last = net[0], net[2]
    act = torch.relu if isinstance(net[1], torch.nn.ReLU) else torch.tanh
    return (act(x @ first.weight.T + first.bias) @ last.weight.T + last.bias).squeeze(-1)


def flat(node, x):
    return x if node == "bernoulli" else x.flatten(-2)
