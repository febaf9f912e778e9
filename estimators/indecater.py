"""IndeCateR: independent categorical REINFORCE, Rao-Blackwellised unit by unit.

For a factorised node ``q(z) = prod_d q_d(z_d)`` the gradient w.r.t. unit d's logits is

    d E f / d logits_d = sum_k (d pi_dk / d logits_d) E_{z_-d}[ f(z_-d, z_d = k) ]

and IndeCateR estimates the inner expectation with S joint samples, evaluating f with
unit d set to each of its K values in turn:

    g_d = J(pi_d)^T F_d,   F_dk = (1/S) sum_s f(z^s_-d, z_d = k)

(J the softmax Jacobian; for Bernoulli, K = 2 and ``g_d = p_d (1 - p_d) (F_d1 - F_d0)``).
Unbiased. It costs ``S * D * K`` evaluations of f, which depends on the node's size, so
suites cannot equalise its budget: it runs with its ``samples`` (default 1) and its
evaluation count is reported (``evals_per_estimate``). The value is the
Rao-Blackwellised estimate ``mean_d sum_k pi_dk F_dk`` of E f.

De Smet, Sansone & Zuidberg Dos Martires (2023), Differentiable Sampling of Categorical
Distributions Using the CatLog-Derivative Trick (IndeCateR), NeurIPS.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dgbench.estimators.base import Estimator, Objective, builtin
from dgbench.estimators.reference import hard, probs

# f-evaluations per call of f: units are substituted in blocks below this size.
BLOCK_EVALUATIONS = 2**12


@builtin
class IndeCateR(Estimator):
    id = "indecater"
    family = "both"
    unbiased = True
    relaxed = False
    evals_per_sample = 1
    evals_scale_with_event = True
    paper = "De Smet et al. (2023), IndeCateR (CatLog-derivative trick), NeurIPS"
    group = "multi-sample"

    def evals_per_estimate(self, event_shape: torch.Size) -> int:
        units = int(event_shape[0])
        values = 2 if self.node.event_dims == 1 else int(event_shape[1])
        return self.samples * units * values

    def _substituted(self, z: Tensor, units: range, values: int) -> Tensor:
        """``(values, len(units), *z.shape)``: z with unit d set to each value in turn."""
        d_all = z.shape[-self.node.event_dims]
        lead = z.dim() - self.node.event_dims
        eye = torch.eye(d_all, dtype=z.dtype, device=z.device)[list(units)]  # (n, D)
        if self.node.event_dims == 1:
            mask = eye.reshape(1, len(units), *([1] * lead), d_all)
            value = torch.arange(values, dtype=z.dtype, device=z.device).reshape(values, 1, *([1] * (lead + 1)))
        else:
            mask = eye.reshape(1, len(units), *([1] * lead), d_all, 1)
            value = torch.eye(values, dtype=z.dtype, device=z.device).reshape(values, 1, *([1] * (lead + 1)), values)
        return z.unsqueeze(0).unsqueeze(0) * (1 - mask) + mask * value

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        z = self.node.sample(logits.detach(), self.samples, generator)
        d_all = logits.shape[logits.dim() - self.node.event_dims]
        values = 2 if self.node.event_dims == 1 else logits.shape[-1]
        batch = logits.shape[: logits.dim() - self.node.event_dims].numel()
        block = max(1, BLOCK_EVALUATIONS // (values * self.samples * max(1, batch)))
        means = []
        for start in range(0, d_all, block):
            units = range(start, min(d_all, start + block))
            fz = self.evaluate(f, self._substituted(z, units, values), logits, leading=3)
            means.append(fz.mean(2))  # (values, n, *batch)
        table = torch.cat(means, dim=1).movedim(0, -1).movedim(0, -2)  # (*batch, D, values)
        pi = self.node.probs(logits.detach())
        if self.node.event_dims == 1:
            p = pi
            grad = p * (1 - p) * (table[..., 1] - table[..., 0]).detach()
            value = ((1 - p) * table[..., 0] + p * table[..., 1]).mean(-1)
        else:
            f_table = table.detach()
            grad = pi * (f_table - (pi * f_table).sum(-1, keepdim=True))
            value = (pi * table).sum(-1).mean(-1)
        return self.attach(value, logits, grad)


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    z = hard(node, logits, u)
    p = probs(node, logits)
    units = logits.shape[0]
    values = 2 if node == "bernoulli" else logits.shape[1]
    table = torch.zeros(units, values, dtype=logits.dtype)
    for d in range(units):
        for k in range(values):
            zk = z.clone()
            zk[:, d] = k if node == "bernoulli" else F.one_hot(torch.tensor(k), values).to(logits.dtype)
            table[d, k] = f(zk).mean()
    if node == "bernoulli":
        return p * (1 - p) * (table[:, 1] - table[:, 0]), ((1 - p) * table[:, 0] + p * table[:, 1]).mean()
    return p * (table - (p * table).sum(-1, keepdim=True)), (p * table).sum(-1).mean()
