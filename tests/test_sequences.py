"""Autoregressive nodes (dgbench.sequences): sampling law, teacher forcing, the estimators'
sequence paths, refusal of estimators that need factorised units, and GRPO's bias.

Float64, fixed seeds; the distribution test is a chi-square test at level 1e-3.
"""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chi2

from dgbench.errors import NotApplicable
from dgbench.estimators import ESTIMATORS
from dgbench.harness.enumeration import exact_objective_and_gradient
from dgbench.harness.gradstats import flatten, replicated_gradients, summarise
from dgbench.harness.seeding import make_generator
from dgbench.harness.suites import SEQUENTIAL_REFUSAL, incompatibility
from dgbench.nodes import get_node
from dgbench.problems import PROBLEMS
from dgbench.sequences import Autoregressive
from tests.helpers import DTYPE, LOGITS, CoupledQuadratic, small_problem, z_critical
from tests.test_exact_single_draw import build

SEQUENTIAL = [eid for eid, cls in ESTIMATORS.items() if cls.sequential and cls.evals_per_sample is not None]
PAIRS = [(eid, node) for eid in SEQUENTIAL for node in ("bernoulli", "categorical") if ESTIMATORS[eid].supports(node)]


class Independent(Autoregressive):
    """Units that ignore their predecessors: the factorised node, written autoregressively."""

    def __init__(self, node: str, logits: torch.Tensor) -> None:
        super().__init__(get_node(node), tuple(logits.shape), logits.dtype, logits.device)
        self.logits = logits

    def initial_state(self, lead):
        return lead

    def step(self, state, t, previous):
        logits = self.logits.narrow(self.unit_axis, t, 1)
        return logits.expand(*state, *logits.shape), state

    def context(self):  # what the factorised NVIL baseline sees: all the logits
        return self.logits.detach().flatten(len(self.batch_shape))


def test_every_sequential_estimator_is_tested():
    assert {"reinforce", "rloo", "grpo", "nvil", "gumbel-softmax", "st-gumbel-softmax", "reinmax",
            "gumbel-rao", "straight-through"} <= set(SEQUENTIAL)
    assert not ESTIMATORS["disarm"].sequential and not ESTIMATORS["muprop"].sequential


@pytest.mark.parametrize("eid,node", PAIRS)
def test_independent_units_give_the_factorised_estimate_draw_for_draw(eid, node):
    """On an autoregressive node whose units ignore their predecessors, every sequence path
    (whole-sequence score function, per-unit relaxation fed forward) reproduces the
    factorised estimator's value and gradient with the same noise."""
    est, f = build(eid, node), CoupledQuadratic(node)
    logits = LOGITS[node].clone().requires_grad_(True)
    factorised = est(logits, f, generator=torch.Generator().manual_seed(5))
    (expected,) = torch.autograd.grad(factorised.sum(), logits)
    sequential = est(Independent(node, logits), f, generator=torch.Generator().manual_seed(5))
    (got,) = torch.autograd.grad(sequential.sum(), logits)
    torch.testing.assert_close(sequential, factorised)
    torch.testing.assert_close(got, expected)


def test_samples_follow_the_autoregressive_law():
    """Frequencies of 20,000 sampled sequences against q(z) from the teacher-forced logits."""
    problem = small_problem("sequence-generation")
    policy = problem.logits()
    with torch.no_grad():
        states = policy.states()
        q = policy.log_prob(states).exp()
        z = policy.sample(20000, make_generator(3))
    assert torch.allclose(q.sum(), torch.tensor(1.0, dtype=DTYPE))
    index = (z.argmax(-1) * (policy.shape[-1] ** torch.arange(policy.length - 1, -1, -1))).sum(-1)
    state_index = (states.argmax(-1) * (policy.shape[-1] ** torch.arange(policy.length - 1, -1, -1))).sum(-1)
    counts = torch.bincount(index, minlength=len(q)).to(DTYPE)[state_index]
    expected = 20000 * q
    statistic = float(((counts - expected) ** 2 / expected).sum())
    assert statistic < chi2.ppf(1 - 1e-3, len(q) - 1), statistic


@pytest.mark.parametrize("pid", ["sequence-generation", "darn-vae"])
def test_teacher_forcing_reproduces_the_sampling_logits(pid):
    """The logits a rollout draws unit t from equal the teacher-forced logits of its sample,
    for hard samples and for relaxed ones fed forward."""
    problem = small_problem(pid)
    with torch.no_grad():
        torch.manual_seed(0)
        for p in problem.parameters():
            p.add_(0.3 * torch.randn(p.shape, dtype=p.dtype))
        node = problem.logits()
        u = node.noise(3, make_generator(1))
        for transform in (lambda lt, ut: node.node.hard(lt, ut), lambda lt, ut: node.node.relaxed(lt, ut, 0.5)):
            seen = []

            def recording(lt, ut, seen=seen, transform=transform):
                seen.append(lt)
                return transform(lt, ut)

            y = node.rollout(recording, u, 3)
            torch.testing.assert_close(torch.cat(seen, dim=1 + node.unit_axis), node.teacher_forced(y))


@pytest.mark.parametrize("pid", ["sequence-generation", "darn-vae"])
def test_relaxed_units_carry_the_gradient_through_the_recurrence(pid):
    """With the noise fixed, the Gumbel-softmax rollout is a smooth function of the
    parameters: its autograd gradient (through every relaxed unit fed forward) matches
    central finite differences."""
    problem = small_problem(pid, **({"autoregressive_init": 0.5} if pid == "darn-vae" else {}))
    est = ESTIMATORS["gumbel-softmax"](problem.family, samples=2)

    def value():
        return problem.loss(torch.nn.ModuleDict({"z": est}), make_generator(4))

    params = list(problem.logit_parameters().values())
    grads = torch.autograd.grad(value(), params)
    h = 1e-6
    for p, g in zip(params, grads):
        for index in [0, p.numel() // 2, p.numel() - 1]:
            with torch.no_grad():
                p.view(-1)[index] += h
                up = value()
                p.view(-1)[index] -= 2 * h
                down = value()
                p.view(-1)[index] += h
            torch.testing.assert_close(g.view(-1)[index], (up - down) / (2 * h), rtol=1e-4, atol=1e-7)


def test_darn_fast_teacher_forcing_equals_the_step_loop():
    problem = small_problem("darn-vae")
    with torch.no_grad():
        problem.autoregressive.normal_(generator=torch.Generator().manual_seed(2))
        posterior = problem.logits()
        z = posterior.sample(4, make_generator(0))
        torch.testing.assert_close(posterior.teacher_forced(z), Autoregressive.teacher_forced(posterior, z))
        # weights above the diagonal are masked: unit i never sees unit j >= i
        assert torch.equal(posterior.weights, torch.tril(posterior.weights, -1))


def test_exact_sums_over_every_sequence():
    """``exact`` on a two-unit chain written out by hand."""
    base = torch.tensor([0.3, -0.2], dtype=DTYPE, requires_grad=True)
    coupling = 1.1

    class Chain(Autoregressive):
        def initial_state(self, lead):
            return lead

        def step(self, state, t, previous):
            logit = base[t:t + 1] + (coupling * previous if previous is not None else 0)
            return logit.expand(*state, 1), state

    f = lambda z: (z * torch.tensor([2.0, -3.0], dtype=DTYPE)).sum(-1) + z.prod(-1)  # noqa: E731
    value = ESTIMATORS["exact"]("bernoulli")(Chain(get_node("bernoulli"), (2,), DTYPE, torch.device("cpu")), f)
    p1 = torch.sigmoid(base[0])
    expected = sum(
        (p1 if a else 1 - p1) * (torch.sigmoid(base[1] + coupling * a) if b else 1 - torch.sigmoid(base[1] + coupling * a))
        * (2 * a - 3 * b + a * b) for a in (0, 1) for b in (0, 1))
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(torch.autograd.grad(value, base)[0], torch.autograd.grad(expected, base)[0])


@pytest.mark.parametrize("pid", ["sequence-generation", "darn-vae"])
def test_estimators_needing_factorised_units_are_refused(pid):
    problem = small_problem(pid)
    for eid in ("disarm", "muprop", "rebar", "relax"):
        cls = ESTIMATORS[eid]
        if not cls.supports(problem.family):
            continue
        assert incompatibility(PROBLEMS[pid], cls, problem.options()) == SEQUENTIAL_REFUSAL
        with pytest.raises(NotApplicable, match="factorised units"):
            problem.loss(torch.nn.ModuleDict({"z": cls(problem.family)}), make_generator(0))


def test_grpo_is_biased_on_sequence_generation_and_rloo_is_not():
    """GRPO's group mean includes the sample itself and its standard deviation rescales
    each estimate: the z-test detects the bias that RLOO does not have."""
    problem = small_problem("sequence-generation", dtype=DTYPE)
    exact = flatten(exact_objective_and_gradient(problem)[1])
    critical = z_critical(1e-3, exact.numel())
    for eid, biased in (("grpo", True), ("rloo", False)):
        ests = torch.nn.ModuleDict({"z": ESTIMATORS[eid]("categorical", samples=4)})
        stats = summarise(replicated_gradients(problem, ests, 4000, make_generator(11)), exact)
        assert (stats.bias_z_max > critical) == biased, (eid, stats.bias_z_max, critical)


@pytest.mark.mnist
def test_darn_vae_runs_on_mnist():
    problem = small_problem("darn-vae", dataset="mnist")
    assert problem.x.shape[-1] == 784 and problem.options()["dataset"] == "mnist"
    loss = problem.loss(torch.nn.ModuleDict({"z": ESTIMATORS["rloo"]("bernoulli", samples=2)}), make_generator(0))
    loss.backward()
    assert float(problem.autoregressive.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="dataset"):
        small_problem("darn-vae", dataset="cifar")
