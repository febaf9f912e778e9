"""Discrete sequence generation: a recurrent policy over tokens, trained to maximise the
expected reward of the sequences it emits.

    z = (z_1, ..., z_T),  z_t ~ Categorical(softmax(W_o h_t)),  h_t = GRU(h_{t-1}, z_{t-1}),
    maximise  E_q[R(z)]

with ``h_0 = 0`` and a start input of zeros. The node is autoregressive
(:mod:`dgbench.sequences`): score-function estimators (REINFORCE, RLOO, GRPO, NVIL...) work
on whole sequences, ``d log q(z) = sum_t d log q(z_t | z_<t)``; relaxed ones feed the
relaxed or straight-through one-hot token into the next step, as in the Gumbel-softmax
text GAN (Kusner & Hernandez-Lobato, 2016, "GANs for sequences of discrete elements with
the Gumbel-softmax distribution"), and SeqGAN trains the same generator with REINFORCE
(Yu et al., 2017, AAAI). The same estimators train language-model policies on sequence
rewards today (GRPO: Shao et al., 2024).

Rewards (``reward``), both fixed at construction from ``critic_seed`` and differentiable in
the one-hot tokens, so relaxed estimators apply:

* ``discriminator``: a fixed random critic network, ``R(z) = w^T tanh(A vec(z) + a) + c``
  (hidden width 32), a stand-in for a GAN's discriminator;
* ``likelihood``: the log-likelihood of the sequence under a fixed random first-order
  Markov "target" model, ``R(z) = z_1^T log pi + sum_t z_{t-1}^T (log P) z_t``.

Small by default (V = 4 tokens, T = 6: 4096 sequences), so the exact objective and its
gradient come from enumeration and the report ranks on the exact expected reward.
Above 2^16 sequences :meth:`evaluate` falls back to a 10,000-sample Monte Carlo mean with
a fixed generator. ``optimal_reward`` (enumerable sizes) is the best sequence's reward,
the ceiling of the expected reward.

Options: ``vocabulary`` (V), ``length`` (T), ``hidden`` (GRU width), ``reward``,
``critic_seed``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dgbench.domains import Choice, Integer
from dgbench.nodes import CATEGORICAL
from dgbench.problems.base import Problem, Score, builtin
from dgbench.problems.layers import default_generator, linear
from dgbench.sequences import Autoregressive

REWARDS = ("discriminator", "likelihood")
CRITIC_HIDDEN = 32
MAX_ENUMERATED = 2**16
MONTE_CARLO_SAMPLES = 10_000
EVAL_SEED = 0


class GRUPolicy(Autoregressive):
    """The problem's policy as an autoregressive categorical node."""

    def __init__(self, problem: SequenceGeneration, batch: tuple[int, ...] = (), replicas: int = 0) -> None:
        p = problem.output.weight
        super().__init__(CATEGORICAL, (*batch, problem.length, problem.vocabulary), p.dtype, p.device, replicas)
        self.problem = problem

    def initial_state(self, lead: tuple[int, ...]) -> Tensor:
        return torch.zeros((*lead, *self.batch_shape, self.problem.hidden), dtype=self.dtype, device=self.device)

    def step(self, state: Tensor, t: int, previous: Tensor | None) -> tuple[Tensor, Tensor]:
        if previous is None:
            x = torch.zeros((*state.shape[:-1], self.problem.vocabulary), dtype=self.dtype, device=self.device)
        else:
            x = previous.squeeze(-2)
        h = self.problem.gru(x, state)
        return self.problem.output(h).unsqueeze(-2), h

    def _replicated(self, n: int) -> GRUPolicy:
        return GRUPolicy(self.problem, (n, *self.batch_shape), replicas=1)


class GRU(torch.nn.Module):
    """A GRU cell (Cho et al., 2014) on inputs with any leading dims, initialised from a generator."""

    def __init__(self, inputs: int, hidden: int, generator: torch.Generator) -> None:
        super().__init__()
        self.input_gates = linear(inputs, 3 * hidden, generator)
        self.hidden_gates = linear(hidden, 3 * hidden, generator)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        xr, xu, xn = self.input_gates(x).chunk(3, -1)
        hr, hu, hn = self.hidden_gates(h).chunk(3, -1)
        r, u = torch.sigmoid(xr + hr), torch.sigmoid(xu + hu)
        n = torch.tanh(xn + r * hn)
        return (1 - u) * n + u * h


@builtin
class SequenceGeneration(Problem):
    option_domains = {"vocabulary": Integer(2), "length": Integer(1), "hidden": Integer(1),
                      "reward": Choice(REWARDS), "critic_seed": Integer(0)}
    id = "sequence-generation"
    family = "categorical"
    minimize = False
    differentiable = True
    sequential = True
    batch_dims = 0
    description = ("GRU policy over V tokens emitting T-token sequences, maximising a fixed critic's reward; "
                   "autoregressive node, exact gradient by enumerating V^T sequences")
    scores = (Score("expected_reward", "expected reward E_q[R(z)]", higher_is_better=True),)
    test_options = {"vocabulary": 3, "length": 3, "hidden": 5}

    def __init__(
        self,
        *,
        vocabulary: int = 4,
        length: int = 6,
        hidden: int = 16,
        reward: str = "discriminator",
        critic_seed: int = 0,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if vocabulary < 2:
            raise ValueError(f"vocabulary must be >= 2, got {vocabulary}")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        self.vocabulary, self.length, self.hidden = vocabulary, length, hidden
        self.reward, self.critic_seed = reward, critic_seed
        generator = default_generator(generator)
        self.gru = GRU(vocabulary, hidden, generator)
        self.output = linear(hidden, vocabulary, generator)
        self._build_critic(torch.Generator().manual_seed(critic_seed))
        self.to(device=device, dtype=dtype)

    def _build_critic(self, g: torch.Generator) -> None:
        v, t = self.vocabulary, self.length
        if self.reward == "discriminator":
            # Pre-activations of about unit scale for one-hot inputs (T ones per sequence).
            self.register_buffer("critic_in", torch.randn((CRITIC_HIDDEN, t * v), generator=g) * 1.5 / math.sqrt(t))
            self.register_buffer("critic_bias", torch.randn(CRITIC_HIDDEN, generator=g) * 0.5)
            self.register_buffer("critic_out", torch.randn(CRITIC_HIDDEN, generator=g) * 2 / math.sqrt(CRITIC_HIDDEN))
        else:
            self.register_buffer("target_initial", torch.log_softmax(2 * torch.randn(v, generator=g), -1))
            self.register_buffer("target_transition", torch.log_softmax(2 * torch.randn((v, v), generator=g), -1))

    # The problem contract ----------------------------------------------------------------

    def logits(self) -> GRUPolicy:
        return GRUPolicy(self)

    def f(self, z: Tensor) -> Tensor:
        """``R(z)`` for one-hot (or relaxed) tokens ``(..., T, V)``."""
        if self.reward == "discriminator":
            hidden = torch.tanh(z.flatten(-2) @ self.critic_in.T + self.critic_bias)
            return hidden @ self.critic_out
        first = z[..., 0, :] @ self.target_initial
        transitions = ((z[..., :-1, :] @ self.target_transition) * z[..., 1:, :]).sum((-1, -2))
        return first + transitions

    def logit_parameters(self) -> dict[str, torch.nn.Parameter]:
        return dict(self.named_parameters())

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        policy = self.logits()
        if policy.num_states() <= MAX_ENUMERATED:
            z = policy.states()
            rewards = self.f(z)
            return {"expected_reward": float((policy.log_prob(z).exp() * rewards).sum()),
                    "optimal_reward": float(rewards.max())}
        generator = torch.Generator(device=self.output.weight.device).manual_seed(EVAL_SEED)
        return {"expected_reward": float(self.f(policy.sample(MONTE_CARLO_SAMPLES, generator)).mean())}
