"""Every registered problem against the problem contract (joined by registering it).

Shapes of logits, objectives with replica dims and relaxed inputs; gradients reaching
the logit parameters and the pathwise parameters; evaluation metrics; deterministic
minibatches; options that round-trip.
"""

from __future__ import annotations

import math

import pytest
import torch

from dgbench.estimators import ESTIMATORS
from dgbench.harness.cells import node_estimators
from dgbench.harness.enumeration import exact_objective_and_gradient
from dgbench.harness.gradstats import replicated_gradients
from dgbench.harness.seeding import make_generator
from dgbench.problems import PROBLEMS
from dgbench.problems.minibatch import MinibatchProblem
from dgbench.sequences import is_sequence
from tests.helpers import DTYPE, SMALL_OPTIONS, small_problem

IDS = list(PROBLEMS)
EVENT_DIMS = {"bernoulli": 1, "categorical": 2, "gaussian": 1}


def estimators_for(problem, eid="rloo", **hyper):
    return node_estimators(problem, ESTIMATORS[eid], hyper, torch.device("cpu"))


def as_tensor(logits):
    """The logits tensor, or an autoregressive node's teacher-forced logits of one sample."""
    if is_sequence(logits):
        return logits.teacher_forced(logits.sample(1, make_generator(0)))[0]
    return logits


def replicated(logits, n):
    return logits.replicate(n) if is_sequence(logits) else logits.detach().expand(n, *logits.shape)


def test_every_problem_class_is_registered():
    """A class in problems/ with an id is registered (no silent orphan)."""
    import importlib
    import pkgutil

    import dgbench.problems as package
    from dgbench.problems.base import Problem

    registered = set(PROBLEMS.values())
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"dgbench.problems.{info.name}")
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, Problem) and value.__module__ == module.__name__
                    and value.id):
                assert value in registered, f"{value.__name__} ({value.id}) is not registered"


def test_every_problem_has_small_options():
    assert set(SMALL_OPTIONS) == set(PROBLEMS)
    for pid, options in SMALL_OPTIONS.items():
        assert set(options) <= set(PROBLEMS[pid].default_options()), pid


@pytest.mark.parametrize("pid", IDS)
def test_logits_shape_and_family(pid):
    problem = small_problem(pid)
    logits = as_tensor(problem.logits())
    assert logits.dim() == problem.batch_dims + EVENT_DIMS[problem.family]
    assert logits.shape == problem.logits().shape
    assert logits.dtype == DTYPE and torch.isfinite(logits).all()
    if problem.family == "categorical":
        assert logits.shape[-1] >= 2
    assert len(problem.node_names()) >= 1 and set(problem.logit_parameters().values()) <= set(problem.parameters())


@pytest.mark.parametrize("pid", IDS)
def test_objective_has_one_value_per_replica_and_loss_is_scalar(pid):
    problem = small_problem(pid)
    ests = estimators_for(problem)
    out = problem.objective(ests, replicated(problem.logits(), 5), make_generator(0))
    assert out.shape == (5,) and torch.isfinite(out).all()
    loss = problem.loss(ests, make_generator(0))
    assert loss.shape == () and math.isfinite(float(loss.detach()))


@pytest.mark.parametrize("pid", IDS)
def test_training_gradient_reaches_logit_and_pathwise_parameters(pid):
    problem = small_problem(pid)
    loss = problem.loss(estimators_for(problem), make_generator(1))
    loss.backward()
    logit_params = set(problem.logit_parameters().values())
    for name, p in problem.named_parameters():
        assert p.grad is not None, f"{pid}: parameter {name} gets no gradient"
        assert torch.isfinite(p.grad).all()
    assert any(float(p.grad.abs().sum()) > 0 for p in logit_params)


@pytest.mark.parametrize("pid", [p for p in IDS if PROBLEMS[p].differentiable])
def test_differentiable_problems_accept_relaxed_samples(pid):
    problem = small_problem(pid)
    logits = as_tensor(problem.logits()).detach()
    if problem.family == "gaussian":  # samples are (..., D) for [mu, log sigma] logits (..., 2D)
        logits = logits[..., : logits.shape[-1] // 2]
    u = torch.rand((2, *logits.shape), generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    z = (torch.softmax(logits + u, -1) if problem.family == "categorical" else u).requires_grad_(True)
    if len(problem.node_names()) > 1:  # the first node's f nests estimator calls: go through them
        loss = problem.loss(estimators_for(problem, "gumbel-softmax"), make_generator(0))
        grads = torch.autograd.grad(loss, list(problem.parameters()))
        assert all(torch.isfinite(g).all() for g in grads) and all(float(g.abs().sum()) > 0 for g in grads)
        return
    values = problem.f(z)
    assert values.shape == z.shape[: z.dim() - EVENT_DIMS[problem.family]]
    (grad,) = torch.autograd.grad(values.sum(), z)
    assert torch.isfinite(grad).all() and float(grad.abs().sum()) > 0


@pytest.mark.parametrize("pid", IDS)
def test_replicated_gradients_are_finite_and_vary(pid):
    problem = small_problem(pid)
    grads = replicated_gradients(problem, estimators_for(problem), 8, make_generator(2))
    assert grads.shape == (8, sum(p.numel() for p in problem.logit_parameters().values()))
    assert torch.isfinite(grads).all() and float(grads.std(0).sum()) > 0


@pytest.mark.parametrize("pid", IDS)
def test_evaluate_returns_finite_metrics(pid):
    problem = small_problem(pid)
    metrics = problem.evaluate()
    assert metrics and all(isinstance(v, float) and math.isfinite(v) for v in metrics.values()), metrics
    for split in ("train", "valid", "test"):
        if f"{split}_elbo" in metrics:
            # log mean exp >= mean log over the same draws (Jensen), so IWAE_k >= ELBO
            assert metrics[f"{split}_iwae"] >= metrics[f"{split}_elbo"] - 1e-9
    if "test_accuracy" in metrics:
        assert 0.0 <= metrics["test_accuracy"] <= 1.0 and 0.0 <= metrics["test_digit_coverage"] <= 1.0


@pytest.mark.parametrize("pid", IDS)
def test_minibatches_are_deterministic_given_the_data_generator(pid):
    a, b = small_problem(pid), small_problem(pid)
    for _ in range(3):
        a.next_batch(make_generator(9))
        b.next_batch(make_generator(9))
    torch.testing.assert_close(as_tensor(a.logits()), as_tensor(b.logits()))


@pytest.mark.parametrize("pid", IDS)
def test_construction_draws_only_from_its_generator(pid):
    """Equal generators give equal problems, and construction leaves torch's global RNG
    untouched (so concurrent cells in one process cannot disturb each other)."""
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = small_problem(pid, seed=4), small_problem(pid, seed=4)
    assert torch.equal(before, torch.random.get_rng_state())
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    torch.testing.assert_close(as_tensor(a.logits()), as_tensor(b.logits()))
    if any(True for _ in a.parameters()) and PROBLEMS[pid].batch_dims == 1:  # randomly initialised models
        c = small_problem(pid, seed=5)
        assert any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


@pytest.mark.parametrize("pid", IDS)
def test_options_round_trip(pid):
    problem = small_problem(pid)
    options = problem.options()
    assert set(options) == set(PROBLEMS[pid].default_options())
    again = small_problem(pid, **options)
    assert again.options() == options


@pytest.mark.parametrize("pid", [p for p in IDS if issubclass(PROBLEMS[p], MinibatchProblem)])
def test_data_problems_move_through_their_training_set(pid):
    problem = small_problem(pid)
    first = as_tensor(problem.logits()).detach().clone()
    generator = make_generator(3)
    changed = False
    for _ in range(4):
        problem.next_batch(generator)
        changed |= not torch.equal(as_tensor(problem.logits()).detach(), first)
    assert changed


def test_vae_analytic_and_sampled_kl_give_the_same_exact_elbo_and_gradient():
    """E_q[log p(x|z)] - KL(q||p) == E_q[log p(x,z) - log q(z|x)], and so are their
    exact gradients (the pathwise term of log q has zero mean)."""
    analytic = small_problem("vae-bernoulli-tiny", latents=5)
    sampled = small_problem("vae-bernoulli-tiny", latents=5, kl="sampled")
    sampled.load_state_dict(analytic.state_dict())
    va, ga = exact_objective_and_gradient(analytic)
    vs, gs = exact_objective_and_gradient(sampled)
    torch.testing.assert_close(va, vs, rtol=1e-12, atol=1e-12)
    for name in ga:
        torch.testing.assert_close(ga[name], gs[name], rtol=1e-10, atol=1e-12)


def test_categorical_vae_exact_elbo_matches_both_kl_forms():
    analytic = small_problem("vae-categorical-digits")
    sampled = small_problem("vae-categorical-digits", kl="sampled")
    sampled.load_state_dict(analytic.state_dict())
    torch.testing.assert_close(exact_objective_and_gradient(analytic)[0], exact_objective_and_gradient(sampled)[0],
                               rtol=1e-12, atol=1e-12)


def _sbn_log_marginal(problem):
    """log p(x) per example of a tiny SBN by summing p(x, h1, h2) over every state."""
    u = problem.units
    states = ((torch.arange(2**u).unsqueeze(-1) >> torch.arange(u)) & 1).to(DTYPE)
    h1 = states.reshape(-1, 1, 1, u).expand(-1, 2**u, problem.x.shape[0], u)
    h2 = states.reshape(1, -1, 1, u).expand(2**u, -1, problem.x.shape[0], u)
    from dgbench.nodes import get_node
    from dgbench.problems import latent

    log_joint = (latent.bernoulli_log_likelihood(problem.x, problem.generative[0](h1))
                 + get_node("bernoulli").log_prob(h1, problem.generative[1](h2))
                 + get_node("bernoulli").log_prob(h2, problem.prior_logits))
    return torch.logsumexp(log_joint.flatten(0, 1), 0)


def test_sbn_multi_sample_bounds_increase_with_k_towards_log_marginal():
    """Exact (enumerated, nested) L_1 <= L_2 <= log p(x): the IWAE ordering of Burda et al."""
    bounds = []
    for k in (1, 2):
        problem = small_problem("sbn-two-layer", units=2, bound_samples=k)
        bounds.append(float(exact_objective_and_gradient(problem)[0]))
    log_px = float(_sbn_log_marginal(problem).mean().detach())
    assert bounds[0] < bounds[1] < log_px


def test_sbn_nested_exact_elbo_matches_direct_enumeration():
    """Nested exact estimators over two layers == a hand-written double sum of q * log w."""
    problem = small_problem("sbn-two-layer", units=2)
    value = float(exact_objective_and_gradient(problem)[0])
    states = ((torch.arange(4).unsqueeze(-1) >> torch.arange(2)) & 1).to(DTYPE)
    x = problem.x
    W0, W1, V1, V2 = problem.generative[0], problem.generative[1], problem.recognition[0], problem.recognition[1]

    def log_bern(v, logits):
        return (v * torch.nn.functional.logsigmoid(logits) + (1 - v) * torch.nn.functional.logsigmoid(-logits)).sum(-1)

    q1 = V1(x - problem.input_mean)
    total = torch.zeros(x.shape[0], dtype=DTYPE)
    for a in states:
        for b in states:
            h1, h2 = a.expand_as(q1), b.expand_as(q1)
            q2 = V2(h1)
            log_q = log_bern(h1, q1) + log_bern(h2, q2)
            log_p = log_bern(x, W0(h1)) + log_bern(h1, W1(h2)) + log_bern(h2, problem.prior_logits)
            total = total + log_q.exp() * (log_p - log_q)
    assert value == pytest.approx(float(total.mean().detach()), rel=1e-12)


def test_hard_attention_full_mask_sees_every_pixel_and_the_digit_fills_one_cell():
    problem = small_problem("hard-attention")
    x, ink, y = problem._splits["test"]
    k = problem.grid**2
    seen = problem.seen(torch.ones(x.shape[0], k, dtype=DTYPE))
    assert torch.equal(seen, torch.ones_like(seen))
    assert bool((ink <= x).all()) and float(ink.sum(-1).min()) > 0  # the digit is on its canvas
    per_cell = problem.seen(torch.eye(k, dtype=DTYPE)) @ ink.T  # (K, N): digit ink in each cell
    assert bool(((per_cell > 0).sum(0) == 1).all())


def test_hard_attention_looking_at_the_digit_cell_covers_it():
    problem = small_problem("hard-attention-categorical")
    x, ink, _ = problem._splits["test"]
    k = problem.grid**2
    cell = (problem.seen(torch.eye(k, dtype=DTYPE)) @ ink.T).argmax(0)
    z = torch.nn.functional.one_hot(cell, k).to(DTYPE).unsqueeze(-2)
    coverage = (problem.seen(z) * ink).sum(-1) / ink.sum(-1)
    torch.testing.assert_close(coverage, torch.ones_like(coverage))


IMAGE_IDS = [pid for pid in IDS if issubclass(PROBLEMS[pid], MinibatchProblem)
             and SMALL_OPTIONS[pid].get("dataset", getattr(PROBLEMS[pid], "dataset", None)) == "digits"]


@pytest.mark.parametrize("pid", IMAGE_IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_training_set_stored_as_bytes_gives_the_minibatches_and_mean_of_floats(pid, dtype):
    """Binary images are kept as bytes and converted per minibatch: the minibatches, the
    whole training set and the input mean are those of the images as ``dtype``."""
    from dgbench.problems.datasets import image_splits

    problem = small_problem(pid, dtype=dtype)
    floats = image_splits("digits", dtype, "cpu")["train"]
    assert problem._train_inputs.dtype == torch.uint8
    assert torch.equal(problem.training_inputs(), floats)
    generator = make_generator(5)
    for _ in range(3):
        problem.next_batch(generator)
        index = problem._order[problem._position - problem._batch_size:problem._position]
        assert problem.x.dtype == dtype and torch.equal(problem.x, floats[index])
    columns = problem.input_mean.shape[-1]  # the whole image, or the upper half it conditions on
    assert torch.equal(problem.input_mean, floats[:, :columns].mean(0))


def test_data_sets_are_converted_once_per_process_and_anew_when_their_source_changes(monkeypatch):
    """Problems share one tensor of a data set's bytes (building a VAE no longer converts
    MNIST each time); a replaced data file (new arrays from the loader) is converted anew,
    and the shared mean is handed out as a copy (a problem's buffer may be overwritten)."""
    import numpy as np

    from dgbench.problems import datasets

    first, again = datasets.image_splits("digits", torch.uint8, "cpu"), datasets.image_splits("digits", torch.uint8, "cpu")
    assert first["train"] is again["train"]
    mean = datasets.training_mean("digits", torch.float64, "cpu")
    mean.add_(1.0)
    assert torch.equal(datasets.training_mean("digits", torch.float64, "cpu"), first["train"].double().mean(0))
    zeros = {split: (np.zeros((5, 64), dtype=np.uint8), np.zeros(5, dtype=np.int64)) for split in first}
    monkeypatch.setattr(datasets, "load_digits_binarized", lambda: zeros)
    replaced = datasets.image_splits("digits", torch.float32, "cpu")
    assert replaced["train"].shape == (5, 64) and not replaced["train"].any()
    assert not datasets.training_mean("digits", torch.float32, "cpu").any()


@pytest.mark.parametrize("shape", [(5, 3), (784, 200), (1, 1)])
def test_a_layer_drawn_from_a_generator_is_the_nn_linear_its_seed_gives(shape):
    """`layers.linear` with a generator seeded s has the parameters, dtype and module of
    `nn.Linear` after `torch.manual_seed(s)`, and leaves the global RNG alone."""
    from dgbench.problems.layers import linear

    torch.manual_seed(99)
    before = torch.random.get_rng_state()
    layer = linear(*shape, torch.Generator().manual_seed(7))
    assert torch.equal(before, torch.random.get_rng_state())
    torch.manual_seed(7)
    reference = torch.nn.Linear(*shape)
    assert type(layer) is torch.nn.Linear and repr(layer) == repr(reference)
    for name, p in reference.named_parameters():
        q = dict(layer.named_parameters())[name]
        assert torch.equal(p, q) and q.requires_grad and q.dtype == p.dtype, name
    x = torch.randn(2, shape[0], generator=torch.Generator().manual_seed(0))
    assert torch.equal(layer(x), reference(x))
