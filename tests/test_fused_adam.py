"""FusedAdam runs torch's fused Adam kernel on torch's state: its parameters, state and
state_dict must equal ``torch.optim.Adam(fused=True)``'s bit for bit, through the cases
its lean step handles and the ones it hands to the parent."""

from __future__ import annotations

import pytest
import torch

from dgbench.harness.fused_adam import FusedAdam
from dgbench.harness.training import make_optimizer


def _params(seed: int, dtype: torch.dtype = torch.float64) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g, dtype=dtype)) for shape in [(3, 4), (4,), (2,)]]


def _grads(step: int, params: list[torch.nn.Parameter]) -> list[torch.Tensor | None]:
    g = torch.Generator().manual_seed(100 + step)
    grads = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
    if step % 3 == 1:  # a parameter without a gradient this step
        grads[1] = None
    if step == 0:  # and one that first gets a gradient later (its state starts late)
        grads[2] = None
    return grads


@pytest.mark.parametrize("groups", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_adam_matches_torch_fused_adam_bit_for_bit(groups, dtype, monkeypatch):
    ours, theirs = _params(0, dtype), _params(0, dtype)
    parent_steps = []
    parent = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, closure=None: parent_steps.append(type(self))
                        or parent(self, closure))

    def arrange(ps):
        return [{"params": ps[:2], "lr": 0.01}, {"params": ps[2:], "lr": 0.003}] if groups else ps

    mine = FusedAdam(arrange(ours), lr=0.01)
    reference = torch.optim.Adam(arrange(theirs), lr=0.01, fused=True)
    for step in range(12):
        for opt, ps in ((mine, ours), (reference, theirs)):
            opt.zero_grad(set_to_none=True)
            for p, g in zip(ps, _grads(step, ps)):
                p.grad = None if g is None else g.clone()
            if step == 6:  # a schedule changes the learning rate
                for group in opt.param_groups:
                    group["lr"] *= 0.5
            opt.step()
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b), step
    # the lean step ran: the parent's only where a parameter had no state yet (steps 0 and 1)
    assert parent_steps.count(FusedAdam) == 2 and parent_steps.count(torch.optim.Adam) == 12
    for a, b in zip(mine.state_dict()["state"].values(), reference.state_dict()["state"].values()):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fused_adam_resumes_from_a_state_dict_like_torch():
    ours, theirs = _params(1), _params(1)
    mine, reference = FusedAdam(ours, lr=0.01), torch.optim.Adam(theirs, lr=0.01, fused=True)
    for step in range(3):
        for opt, ps in ((mine, ours), (reference, theirs)):
            for p, g in zip(ps, _grads(step, ps)):
                p.grad = g
            opt.step()
    resumed = FusedAdam(ours, lr=0.01)
    resumed.load_state_dict(mine.state_dict())
    for step in range(3, 6):
        for opt, ps in ((resumed, ours), (reference, theirs)):
            for p, g in zip(ps, _grads(step, ps)):
                p.grad = g
            opt.step()
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_fused_adam_zero_grad():
    ps = _params(2)
    opt = FusedAdam(ps, lr=0.1)
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.zero_grad(set_to_none=False)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in ps)
    opt.zero_grad()
    assert all(p.grad is None for p in ps)


def test_make_optimizer_uses_fused_adam_on_the_cpu():
    assert type(make_optimizer("adam", _params(3), 0.1, torch.device("cpu"))) is FusedAdam
    assert type(make_optimizer("sgd", _params(3), 0.1, torch.device("cpu"))) is torch.optim.SGD
