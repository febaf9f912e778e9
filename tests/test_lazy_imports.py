"""`dgbench --help`, `report` and `export` answer without loading torch or the registries;
`import dgbench` stays the library API, its registries loaded on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dgbench.harness.run import run


def _torch_loaded_after(code: str) -> bool:
    probe = f"import sys\n{code}\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1] == "True"


def test_help_and_import_do_not_load_torch():
    assert not _torch_loaded_after("import dgbench, dgbench.harness.cli")
    assert not _torch_loaded_after(
        "from dgbench.harness.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert not _torch_loaded_after(
        "from dgbench.harness.cli import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass")


def test_the_library_api_loads_registries_on_first_use():
    assert _torch_loaded_after("import dgbench\nassert 'reinforce' in dgbench.ESTIMATORS")
    import dgbench

    assert "Estimator" in dir(dgbench) and dgbench.register is not None
    with pytest.raises(AttributeError):
        dgbench.no_such_thing  # noqa: B018


def test_report_and_export_of_a_run_do_not_load_torch(tmp_path):
    out = tmp_path / "smoke"
    run("smoke", out, in_process=True, problems=["bernoulli-toy"], estimators=["reinforce", "rloo"])
    code = (f"from dgbench.harness.cli import main\n"
            f"assert main(['report', {str(out)!r}, '--format', 'md,csv,tex,html']) == 0\n"
            f"assert main(['export', {str(out)!r}]) == 0")
    assert not _torch_loaded_after(code)
