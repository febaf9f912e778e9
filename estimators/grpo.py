"""Group-normalised advantages (GRPO): S samples, each learning signal centred by the group
mean and scaled by the group standard deviation.

    A_s = (f(z_s) - mean_r f(z_r)) / (std_r f(z_r) + eps)
    g   = 1/S sum_s A_s d log q(z_s) / d logits

with the sample standard deviation (S - 1 in the denominator) and eps = 1e-4, as in TRL's
GRPO trainer; without the clipped ratio and the KL penalty (one on-policy step). The
advantage estimator of Group Relative Policy Optimization, used to train language-model
policies on sequence rewards.

**Biased**, twice: the group mean includes sample s itself, which shrinks the signal by
(S - 1)/S in expectation (RLOO's leave-one-out mean avoids this), and dividing by the
group's own standard deviation rescales each estimate by a random factor correlated with
the samples. The direction follows the gradient of E f, its scale does not (the estimate
is invariant to positive affine transforms of f), so it is compared on the true score.
Needs S >= 2 (default 4, a group).

Shao, Z. et al. (2024). DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open
Language Models. arXiv:2402.03300, Sec. 4.1.2 (outcome supervision).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench.domains import Real
from dgbench.estimators.base import Estimator, Objective, builtin, score_function
from dgbench.estimators.reference import hard, probs
from dgbench.sequences import is_sequence


@builtin
class GRPO(Estimator):
    id = "grpo"
    hyperparameter_domains = {"eps": Real(0.0)}
    family = "any"
    unbiased = False
    relaxed = False
    evals_per_sample = 1
    min_samples = 2
    paper = "Shao et al. (2024), DeepSeekMath (GRPO), arXiv:2402.03300"
    group = "score function"
    sequential = True

    def __init__(self, node: str = "bernoulli", *, samples: int = 4, eps: float = 1e-4) -> None:
        super().__init__(node, samples)
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.eps = eps

    def advantage(self, fz: Tensor) -> Tensor:
        signal = fz.detach()
        return (signal - signal.mean(0, keepdim=True)) / (signal.std(0, keepdim=True) + self.eps)

    def forward(self, logits: Tensor, f: Objective, *, generator: torch.Generator) -> Tensor:
        if is_sequence(logits):  # whole sequences, as GRPO trains language-model policies
            return self.score_function_sequence(logits, f, generator, lambda tf, z, fz: self.advantage(fz))
        z = self.node.sample(logits.detach(), self.samples, generator)
        fz = self.evaluate(f, z, logits)
        return self.attach(fz.mean(0), logits, score_function(self.node, logits, z, self.advantage(fz)))


# The hand-written reference for the exact single-draw test (see dgbench.estimators.reference).
def reference_draw(node, logits, u, f, est):
    z = hard(node, logits, u)
    fz, s = f(z), z.shape[0]
    mean = sum(fz[j] for j in range(s)) / s
    std = torch.sqrt(sum((fz[j] - mean) ** 2 for j in range(s)) / (s - 1))
    grad = sum((fz[j] - mean) / (std + est.eps) * (z[j] - probs(node, logits)) for j in range(s))
    return grad / s, fz.mean(0)
