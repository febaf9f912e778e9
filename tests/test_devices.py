"""Device selection and synchronised timing; the CUDA paths are exercised without a GPU."""

from __future__ import annotations

import pytest
import torch

from harness import devices
from harness.devices import DeviceUnavailable, Stopwatch, resolve_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cpu_and_auto_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@no_cuda
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(DeviceUnavailable, match="CUDA is not available"):
        resolve_device("cuda")


def test_unknown_device_is_an_error():
    with pytest.raises(DeviceUnavailable):
        resolve_device("tpu")
    with pytest.raises(DeviceUnavailable):
        resolve_device("not a device")


def test_stopwatch_synchronises_cuda_before_and_after(monkeypatch):
    calls = []
    monkeypatch.setattr(devices.torch.cuda, "synchronize", lambda device=None: calls.append(device))
    watch = Stopwatch(torch.device("cuda:0"))
    with watch.time():
        calls.append("work")
    assert calls == [torch.device("cuda:0"), "work", torch.device("cuda:0")]
    assert watch.seconds >= 0


def test_stopwatch_does_not_touch_cuda_on_cpu(monkeypatch):
    monkeypatch.setattr(devices.torch.cuda, "synchronize", lambda device=None: pytest.fail("synchronised on CPU"))
    with Stopwatch(torch.device("cpu")).time():
        pass


@needs_cuda
def test_gradcheck_runs_on_cuda():
    from harness.cli import gradcheck

    result = gradcheck("bernoulli-toy", "disarm", replicas=1000, device="cuda", options={"dim": "3"})
    assert result["device"].startswith("cuda") and result["bias_z_max"] < 5
