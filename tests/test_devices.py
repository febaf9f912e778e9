"""Device selection and synchronised timing; the CUDA paths are exercised without a GPU."""

from __future__ import annotations

import pytest
import torch

from dgbench.harness import devices
from dgbench.harness.devices import DeviceUnavailable, Stopwatch, resolve_device

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
    import dgbench

    result = dgbench.gradcheck("bernoulli-toy", "disarm", replicas=1000, device="cuda", options={"dim": 3})
    assert result.device.startswith("cuda") and result.bias_z_max < 5


def test_peak_memory_comes_from_cuda_allocator_on_cuda_and_is_absent_on_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(devices.torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append(("reset", device)))
    monkeypatch.setattr(devices.torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**20)
    cuda = torch.device("cuda:0")
    devices.reset_peak_memory(cuda)
    assert calls == [("reset", cuda)] and devices.peak_memory_mb(cuda) == 3.0
    devices.reset_peak_memory(torch.device("cpu"))
    assert calls == [("reset", cuda)] and devices.peak_memory_mb(torch.device("cpu")) is None


@needs_cuda
def test_cells_on_cuda_record_peak_memory_and_the_gpu(tmp_path):
    import json
    import sqlite3

    from dgbench.harness.cli import main

    assert main(["run", "--suite", "smoke", "--estimators", "disarm,gumbel-softmax", "--device", "cuda",
                 "--workers", "1", "--quiet", "--out", str(tmp_path)]) == 0
    db = sqlite3.connect(tmp_path / "results.db")
    peaks = [v for (v,) in db.execute("SELECT value FROM metrics WHERE name = 'peak_memory_mb'")]
    assert peaks and all(v > 0 for v in peaks)
    info = json.loads(db.execute("SELECT provenance FROM runs").fetchone()[0])
    assert info["gpu"] and info["cuda_version"]
