"""VIMCO: leave-one-out learning signals for the k-sample importance-weighted bound.

VIMCO estimates the gradient of a multi-sample objective, not of ``E f``: with
``f(z) = log w(z)`` the log importance weight of one sample and k = ``samples`` draws,

    L = log (1/k) sum_j w_j,
    g = sum_j (L - L_-j) d log q(z_j)/d logits  +  (pathwise gradient of L through f),
    L_-j = log (1/k) (sum_{i != j} w_i + exp(mean_{i != j} log w_i)),

the leave-one-out baseline replacing ``w_j`` by the geometric mean of the others. The
value is ``L`` (keeping its graph, so the weights' own dependence on the parameters
contributes the pathwise term). Unbiased for the gradient of ``E[L]``. Problems that
expose a k-sample bound (``bound_samples = k > 1``) hand VIMCO the per-sample log
weight; the harness sets ``samples = k`` and skips problems without such a bound.

A model with several stochastic layers samples the deeper layers itself (given each of
the k draws of this node) and returns a ``dgbench.objectives.LogWeightWithInnerLogQ(log w, log q_deeper)``: VIMCO then adds
``sum_j (L - L_-j) d log q_deeper(j)`` to the gradient (through a term of value zero), so
every layer's score is multiplied by the same leave-one-out signal.

Mnih & Rezende (2016), Variational Inference for Monte Carlo Objectives, ICML.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dgbench.estimators.base import Estimator, Objective, builtin, score_function
from dgbench.estimators.reference import hard, probs
from dgbench.objectives import LogWeightWithInnerLogQ


@builtin
class VIMCO(Estimator):
    id = "vimco"
    family = "both"
    unbiased = True
    relaxed = False
    evals_per_sample = 1
    min_samples = 2
    multi_sample_bound = True
    paper = "Mnih & Rezende (2016), VIMCO, ICML"
    group = "multi-sample"

    def __init__(self, node: str = "bernoulli", *, samples: int = 2) -> None:
        super().__init__(node, samples)

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        k = self.samples
        z = self.node.sample(logits.detach(), k, generator)
        out = f(z)
        inner = None
        if isinstance(out, LogWeightWithInnerLogQ):  # deeper layers drawn inside f: see the module doc
            out, inner = out
            self.evaluate(lambda _: inner, z, logits)
        log_w = self.evaluate(lambda _: out, z, logits)  # (k, *batch)
        bound = torch.logsumexp(log_w, 0) - math.log(k)
        lw = log_w.detach()
        others_mean = (lw.sum(0, keepdim=True) - lw) / (k - 1)
        # log sum_{i != j} w_i + exp(geometric mean of the others), stably:
        expanded = lw.unsqueeze(0).expand(k, *lw.shape).clone()  # row j: all weights
        index = torch.arange(k, device=lw.device)
        expanded[index, index] = others_mean
        loo = torch.logsumexp(expanded, 1) - math.log(k)
        signal = bound.detach().unsqueeze(0) - loo
        grad = k * score_function(self.node, logits, z, signal)
        if inner is not None:  # the same signals multiply the deeper layers' scores
            bound = bound + (signal * (inner - inner.detach())).sum(0)
        return self.attach(bound, logits, grad)


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
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
