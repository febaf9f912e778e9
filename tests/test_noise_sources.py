"""Noise recorded on one step and drawn in advance on the next (dgbench.noise's sources),
which is what lets a step's estimate be compiled as one graph without changing its noise
(benchmarks/compiled_step.py)."""

from __future__ import annotations

import pytest
import torch

from dgbench import noise
from dgbench.estimators import ESTIMATORS
from dgbench.harness import compiled
from dgbench.nodes import FAMILIES
from tests.helpers import LOGITS, CoupledQuadratic

PAIRS = [(eid, node) for eid, cls in ESTIMATORS.items() for node in FAMILIES if cls.supports(node)]


def test_recording_notes_each_draw_and_draws_what_the_generator_would():
    like = torch.zeros((), dtype=torch.float64)
    recording = noise.RecordingNoise(torch.Generator().manual_seed(5))
    first, second = noise.uniform((2, 3), recording, like), noise.uniform((4,), recording, like)
    plain = torch.Generator().manual_seed(5)
    assert torch.equal(first, noise.uniform((2, 3), plain, like)) and torch.equal(second, noise.uniform((4,), plain, like))
    assert recording.draws == [((2, 3), torch.float64, torch.device("cpu")), ((4,), torch.float64, torch.device("cpu"))]


def test_predrawn_noise_is_handed_out_in_order_and_checked_against_each_draw():
    like = torch.zeros((), dtype=torch.float64)
    draws = [((2, 3), torch.float64, torch.device("cpu")), ((4,), torch.float64, torch.device("cpu"))]
    tensors = noise.predraw(draws, torch.Generator().manual_seed(5))
    assert [t.dtype for t in tensors] == [torch.float64] * 2 and ((tensors[0] > 0) & (tensors[0] < 1)).all()
    source = noise.PreDrawnNoise(tensors)
    assert noise.uniform((2, 3), source, like) is tensors[0] and noise.uniform((4,), source, like) is tensors[1]
    with pytest.raises(ValueError, match="beyond the 2 drawn in advance"):
        noise.uniform((4,), source, like)
    with pytest.raises(ValueError, match=r"has shape \(2, 3\); this draw asks for \(3, 2\)"):
        noise.uniform((3, 2), noise.PreDrawnNoise(tensors), like)


@pytest.mark.parametrize("eid,node", PAIRS)
def test_every_estimate_is_reproduced_from_its_noise_drawn_in_advance(eid, node):
    """Every estimator draws all of its noise through noise.uniform, with shapes that the
    recording of one call gives: replayed from the same seed, estimate and gradient are the
    same bits. An estimator that drew from the generator some other way fails here."""
    estimator = ESTIMATORS[eid](node).eval()
    f = CoupledQuadratic(node)
    results = []
    recording = noise.RecordingNoise(torch.Generator().manual_seed(11))
    replay = None
    for source in ("recorded", "drawn in advance"):
        logits = LOGITS[node].expand(6, *LOGITS[node].shape).clone().requires_grad_(True)
        if source == "recorded":
            out = estimator(logits, f, generator=recording)
        else:
            replay = noise.PreDrawnNoise(noise.predraw(recording.draws, torch.Generator().manual_seed(11)))
            out = estimator(logits, f, generator=replay)
        (grad,) = torch.autograd.grad(out.sum(), logits)
        results.append((out.detach(), grad))
    assert replay.taken == len(recording.draws)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    if ESTIMATORS[eid].evals_per_sample is not None:  # a sampling estimator (enumeration draws nothing)
        assert recording.draws, f"{eid} drew no noise through noise.uniform"


@pytest.mark.slow
@pytest.mark.skipif(compiled.refusal(torch.device("cpu")) is not None, reason="this machine cannot compile")
@pytest.mark.parametrize("eid", ["reinforce", "gumbel-softmax"])
def test_a_compiled_step_trains_as_the_eager_one_on_the_same_noise(eid):
    """benchmarks.compiled_step's step: the estimate compiled as one graph, its noise drawn
    before the graph. After 5 steps of each from the same seeds, the parameters agree to
    float32 rounding; a compiled step with other noise would be off by the step size."""
    from benchmarks.compiled_step import build_compiled_step
    from benchmarks.step_overhead import build_dgbench_step

    options = {"latents": 4, "batch_size": 8, "eval_examples": 1}
    eager, eager_problem = build_dgbench_step("vae-bernoulli-tiny", eid, options)
    compiled, compiled_problem = build_compiled_step("vae-bernoulli-tiny", eid, options)
    for _ in range(5):
        eager()
        compiled()
    moved = max((p - q).abs().max().item() for p, q in zip(eager_problem.parameters(),
                                                             build_dgbench_step("vae-bernoulli-tiny", eid, options)[1].parameters()))
    diff = max((p - q).abs().max().item() for p, q in zip(eager_problem.parameters(), compiled_problem.parameters()))
    assert moved > 1e-4  # the steps moved the parameters, so agreement is not vacuous
    assert diff < 1e-5
