"""The distribution layer as the models use it (dgbench.nodes), and the likelihood helpers."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dgbench.nodes import get_node
from dgbench.problems import latent
from tests.helpers import DTYPE, LOGITS, z_critical

DRAWS = 40000


def frequency_z_scores(z: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    freq = z.mean(0)
    se = (probs * (1 - probs) / z.shape[0]).sqrt()
    return (freq - probs).abs() / se


def test_sample_frequencies_match_probabilities():
    g = torch.Generator().manual_seed(3)
    for family, probs in (("bernoulli", torch.sigmoid(LOGITS["bernoulli"])),
                          ("categorical", torch.softmax(LOGITS["categorical"], -1))):
        z = get_node(family).sample(LOGITS[family], DRAWS, g)
        assert z.shape == (DRAWS, *LOGITS[family].shape)
        assert float(frequency_z_scores(z, probs).max()) < z_critical(1e-3, probs.numel()), family


def test_log_prob_matches_torch_distributions_on_hard_samples():
    g = torch.Generator().manual_seed(4)
    for family, dist in (("bernoulli", torch.distributions.Bernoulli(logits=LOGITS["bernoulli"])),
                         ("categorical", torch.distributions.OneHotCategorical(logits=LOGITS["categorical"]))):
        z = get_node(family).sample(LOGITS[family], 7, g)
        expected = dist.log_prob(z)
        expected = expected.sum(-1)
        torch.testing.assert_close(get_node(family).log_prob(z, LOGITS[family]), expected, rtol=1e-12, atol=1e-12)


def test_kl_matches_torch_distributions():
    prior = {"bernoulli": torch.tensor([0.2, -0.5, 0.0], dtype=DTYPE),
             "categorical": torch.tensor([[0.0, 1.0, -1.0], [0.3, 0.3, 0.3]], dtype=DTYPE)}
    for family, cls in (("bernoulli", torch.distributions.Bernoulli),
                        ("categorical", torch.distributions.Categorical)):
        q, p = cls(logits=LOGITS[family]), cls(logits=prior[family])
        torch.testing.assert_close(get_node(family).kl_divergence(LOGITS[family], prior[family]),
                                   torch.distributions.kl_divergence(q, p).sum(-1), rtol=1e-12, atol=1e-12)


def test_bernoulli_log_likelihood_is_minus_binary_cross_entropy():
    x = torch.tensor([[1.0, 0.0, 1.0]], dtype=DTYPE)
    logits = torch.tensor([[0.3, -2.0, 1.5]], dtype=DTYPE)
    expected = -F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum")
    torch.testing.assert_close(latent.bernoulli_log_likelihood(x, logits)[0], expected, rtol=1e-12, atol=1e-12)
