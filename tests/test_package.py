"""The package: one `dgbench` namespace, a small library API, no import cycles, a thin CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

import dgbench
from dgbench.harness.gradcheck import GradcheckResult
from dgbench.harness.suites import incompatibility

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"dgbench": ROOT / "dgbench", "dgbench.estimators": ROOT / "estimators",
            "dgbench.problems": ROOT / "problems", "dgbench.harness": ROOT / "harness",
            "dgbench.reports": ROOT / "reports"}


def modules() -> dict[str, Path]:
    out = {}
    for package, folder in PACKAGES.items():
        for path in folder.glob("*.py"):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Edges module -> dgbench module it imports (anywhere in the file, lazy imports too)."""
    known = modules()
    graph = {}
    for name, path in known.items():
        edges = set()
        package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            edges |= {t for t in targets if t in known and t != name}
        graph[name] = edges
    return graph


def test_import_graph_has_no_cycles():
    graph = import_graph()
    assert len(graph) > 40
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_cycle_check_finds_a_cycle(monkeypatch):
    """The check above is not vacuous: a planted back edge is reported."""
    graph = import_graph()
    assert "dgbench.harness.execution" in graph["dgbench.harness.run"]
    graph["dgbench.harness.execution"].add("dgbench.harness.run")
    monkeypatch.setattr(sys.modules[__name__], "import_graph", lambda: graph)
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_import_graph_has_no_cycles()


def test_nothing_imports_the_old_top_level_names():
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                assert node.module.split(".")[0] not in {"estimators", "problems", "harness", "reports"}, (name, node.module)


def test_cli_parses_and_prints_only():
    source = (ROOT / "harness" / "cli.py").read_text()
    assert "sqlite" not in source and "import torch" not in source and "SELECT" not in source
    imported = {n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
    assert not any(m and m.startswith(("dgbench.harness.cells", "dgbench.harness.gradstats", "dgbench.store"))
                   for m in imported)


def test_library_api_gradcheck_run_results_report(tmp_path):
    result = dgbench.gradcheck("bernoulli-toy", "disarm", replicas=200, seed=0, options={"dim": 3})
    assert isinstance(result, GradcheckResult) and result.exact_source == "closed-form"
    assert result.variance_mean >= 0 and len(result.exact_gradient) == 3 and result.as_dict()["estimator"] == "disarm"
    with pytest.raises(dgbench.UsageError, match="does not cover the categorical problem"):
        dgbench.gradcheck("categorical-toy", "disarm")
    summary = dgbench.run("smoke", out=tmp_path / "run", estimators=["reinforce", "exact"], workers=1)
    assert summary.counts.get("done", 0) > 0 and not summary.failed
    frames = dgbench.results(tmp_path / "run")
    assert isinstance(frames.cells, pd.DataFrame) and isinstance(frames.metrics, pd.DataFrame)
    assert set(frames.cells["estimator"]) == {"reinforce", "exact"}
    assert frames.estimators["exact"]["group"] == "reference"
    paths = dgbench.report(tmp_path / "run", ["csv", "md"])
    assert {p.name for p in paths} == {"summary.csv", "summary.md"}


def test_incompatibility_includes_the_relaxed_rule():
    class Rough(dgbench.Problem):
        id = "rough"
        family = "bernoulli"
        differentiable = False

    assert "not differentiable" in incompatibility(Rough, dgbench.ESTIMATORS["gumbel-softmax"], {})
    assert incompatibility(Rough, dgbench.ESTIMATORS["reinforce"], {}) is None


@pytest.mark.slow
def test_the_wheel_installs_only_the_dgbench_package(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("dgbench-*.whl")
    tops = {name.split("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"dgbench", next(t for t in tops if t.endswith(".dist-info"))}, tops
    names = zipfile.ZipFile(wheel).namelist()
    assert "dgbench/estimators/disarm.py" in names and "dgbench/harness/suites/quick.toml" in names


def test_no_estimator_module_shadows_a_name_the_package_exports():
    """An estimator module named like an exported helper (``score_function``) would replace
    it on the package once the registry imports every module."""
    import types

    import dgbench.estimators as package

    for name in package.__all__:
        assert not isinstance(getattr(package, name), types.ModuleType), name
