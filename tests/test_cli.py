"""The dgbench command line: list, gradcheck, and clear errors with exit status 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from dgbench.estimators import ESTIMATORS
from dgbench.harness.cli import main
from dgbench.problems import PROBLEMS
from tests.test_plugin_loader import VALID

GRADCHECK_KEYS = {
    "problem", "estimator", "replicas", "seed", "exact_gradient", "mean_gradient", "standard_error",
    "bias_norm", "variance_mean", "variance_total", "mse", "cosine", "evals_per_estimate", "seconds_per_estimate",
}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_estimators_text_and_json(capsys):
    code, out, _ = run(capsys, "list", "estimators")
    assert code == 0 and all(eid in out for eid in ESTIMATORS)
    code, out, _ = run(capsys, "list", "estimators", "--json")
    rows = json.loads(out)
    assert [r["id"] for r in rows] == list(ESTIMATORS)
    for r in rows:
        assert {"id", "family", "unbiased", "relaxed", "evals_per_sample"} <= r.keys()


def test_list_problems_json(capsys):
    code, out, _ = run(capsys, "list", "problems", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == list(PROBLEMS)


def test_gradcheck_json_has_the_documented_keys_and_sane_values(capsys):
    code, out, _ = run(capsys, "gradcheck", "--problem", "bernoulli-toy", "--estimator", "disarm",
                       "--replicas", "2000", "--seed", "0", "--option", "target=0.499", "--option", "dim=4", "--json")
    assert code == 0
    result = json.loads(out)
    assert GRADCHECK_KEYS <= result.keys()
    assert result["options"]["dim"] == 4 and result["options"]["target"] == 0.499
    assert len(result["exact_gradient"]) == len(result["mean_gradient"]) == len(result["standard_error"]) == 4
    assert result["evals_per_estimate"] == 2 and result["replicas"] == 2000
    assert result["bias_z_max"] < 5 and result["cosine"] > 0


def test_gradcheck_is_reproducible_and_independent_of_estimator_for_noise(capsys):
    args = ["gradcheck", "--problem", "categorical-toy", "--estimator", "reinforce", "--replicas", "500", "--json"]
    first = json.loads(run(capsys, *args)[1])
    second = json.loads(run(capsys, *args)[1])
    first.pop("seconds_per_estimate"), second.pop("seconds_per_estimate")
    assert first == second


def test_gradcheck_text_output(capsys):
    code, out, _ = run(capsys, "gradcheck", "--problem", "bernoulli-toy", "--estimator", "rloo", "--replicas", "200")
    assert code == 0
    for label in ("bias norm", "variance (mean per coord)", "MSE", "cosine(mean, exact)"):
        assert label in out


def test_gradcheck_accepts_a_plugin_file(capsys, tmp_path):
    path = tmp_path / "half.py"
    path.write_text(VALID)
    code, out, _ = run(capsys, "gradcheck", "--problem", "bernoulli-toy", "--estimator", str(path), "--replicas", "300", "--json")
    assert code == 0 and json.loads(out)["estimator"] == "half-reinforce"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--problem", "nope", "--estimator", "disarm"], "unknown problem 'nope'"),
        (["--problem", "bernoulli-toy", "--estimator", "nope"], "unknown estimator 'nope'"),
        (["--problem", "categorical-toy", "--estimator", "disarm"], "does not cover the categorical problem"),
        (["--problem", "bernoulli-toy", "--estimator", "disarm", "--option", "colour=red"], "unknown option for bernoulli-toy colour"),
        (["--problem", "bernoulli-toy", "--estimator", "disarm", "--option", "dim=two"], "expected a int"),
        (["--problem", "bernoulli-toy", "--estimator", "disarm", "--option", "dim"], "not of the form key=value"),
        (["--problem", "bernoulli-toy", "--estimator", "rloo", "--samples", "1"], "needs samples >= 2"),
        (["--problem", "bernoulli-toy", "--estimator", "disarm", "--replicas", "1"], "replicas must be between 2 and"),
        (["--problem", "bernoulli-toy", "--estimator", "disarm", "--option", "dim=0"], "dim must be >= 1"),
        (["--problem", "bernoulli-toy", "--estimator", "gumbel-softmax", "--hparam", "temperature=-1"], "temperature must be > 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(capsys, argv, message):
    code, out, err = run(capsys, "gradcheck", *argv)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_request_without_cuda_exits_2(capsys):
    code, _, err = run(capsys, "gradcheck", "--problem", "bernoulli-toy", "--estimator", "disarm", "--device", "cuda")
    assert code == 2 and "CUDA is not available" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_run_on_cuda_without_cuda_exits_2_before_writing_anything(capsys, tmp_path):
    code, _, err = run(capsys, "run", "--suite", "smoke", "--device", "cuda", "--out", str(tmp_path / "out"))
    assert code == 2 and "CUDA is not available" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,message", [
    (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler needs --backend dask"),
    (["--backend", "dask", "--retries", "-1"], "--retries must be between 0 and"),
])
def test_bad_backend_options_exit_2(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, "run", "--suite", "smoke", "--out", str(tmp_path / "out"), *argv)
    assert code == 2 and message in err and not (tmp_path / "out").exists()


def test_console_script_is_installed():
    exe = shutil.which("dgbench") or str(__import__("pathlib").Path(sys.executable).parent / "dgbench")
    proc = subprocess.run([exe, "list", "problems"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "bernoulli-toy" in proc.stdout


def test_data_dir_flag_and_offline_message(capsys, tmp_path, monkeypatch):
    """Without the data and without network, a run needing MNIST stops before any cell
    with one line that says where to put the file."""
    from dgbench.problems import data

    monkeypatch.setattr(data, "_MEMO", {})
    monkeypatch.setenv("DGBENCH_MNIST_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("DGBENCH_DATA_DIR", os.environ.get("DGBENCH_DATA_DIR", ""))  # restored after the flag sets it
    empty = tmp_path / "empty"
    code = main(["run", "--suite", "full", "--problems", "vae-bernoulli-linear", "--estimators", "disarm",
                 "--out", str(tmp_path / "out"), "--data-dir", str(empty), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "binarized_mnist.npz" in err and str(empty.resolve()) in err
    assert not (tmp_path / "out").exists()
    code = main(["gradcheck", "--problem", "vae-bernoulli-tiny", "--estimator", "disarm", "--replicas", "50",
                 "--data-dir", str(empty), "--json"])  # the bundled digits need no data directory
    assert code == 0 and json.loads(capsys.readouterr().out)["exact_source"] == "enumeration"


def test_gradcheck_is_reproducible_across_processes_on_a_randomly_initialised_model():
    """The model's initialisation is seeded from (problem, options, seed) like a suite cell's;
    it used to come from the unseeded global RNG, so two runs disagreed."""
    import json as json_module
    import subprocess
    import sys

    argv = [sys.executable, "-m", "dgbench.harness.cli", "gradcheck", "--problem", "vae-bernoulli-tiny",
            "--estimator", "rloo", "--replicas", "20", "--option", "batch_size=2", "--json"]
    runs = [subprocess.run(argv, capture_output=True, text=True, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-1000:]
    first, second = (json_module.loads(r.stdout) for r in runs)
    assert first["exact_gradient"] == second["exact_gradient"] and first["variance_mean"] == second["variance_mean"]


def test_device_auto_resolves_before_cells_run_and_oversubscription_is_recorded(tmp_path, capsys):
    """`--device auto` used to pass validation and then fail every runnable cell; a worker
    count above the core count used to be accepted silently."""
    import json as json_module
    import os
    import sqlite3

    out = tmp_path / "run"
    workers = (os.cpu_count() or 1) + 1
    code = main(["run", "--suite", "smoke", "--estimators", "reinforce", "--device", "auto", "--workers",
                 str(workers), "--out", str(out), "--quiet"])
    assert code == 0
    assert f"--workers {workers} exceeds" in capsys.readouterr().err
    with sqlite3.connect(out / "results.db") as db:
        statuses = {s for (s,) in db.execute("SELECT status FROM cells")}
        provenance = json_module.loads(db.execute("SELECT provenance FROM runs").fetchone()[0])
    assert statuses == {"done"}
    assert provenance["device"] in ("cpu", "cuda") and provenance["oversubscribed"] is True
