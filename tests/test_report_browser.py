"""The HTML report in headless Chromium: it renders, logs no console errors, every figure
decodes, and a screenshot is kept as a test artifact (``test-artifacts/report.png``, or
``$DGBENCH_TEST_ARTIFACTS``). Chromium is Debian's package, installed here when missing;
the test skips, saying why, only where it cannot be installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.cli import main
from reports.build import build_report

ARTIFACTS = Path(os.environ.get("DGBENCH_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        if subprocess.run(command, env=env, capture_output=True, timeout=900).returncode != 0:
            pytest.skip(f"could not install Debian's chromium ({' '.join(command)} failed)")
    return shutil.which("chromium") or pytest.skip("chromium installed but not on PATH")


def run_chromium(binary: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", *args],
        capture_output=True, text=True, timeout=180,
    )


@pytest.mark.slow
def test_report_page_renders_in_headless_chromium(tmp_path):
    binary = chromium()
    run = tmp_path / "run"
    assert main(["run", "--suite", "smoke", "--estimators", "reinforce,disarm,gumbel-softmax", "--out", str(run),
                 "--workers", "1", "--quiet"]) == 0
    build_report(run, ["html"], tmp_path / "report")
    url = (tmp_path / "report" / "index.html").resolve().as_uri()
    dom = run_chromium(binary, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    images = re.search(r'data-images="(\d+)"', dom.stdout)
    loaded = re.search(r'data-images-loaded="(\d+)"', dom.stdout)
    assert images and loaded, "the page's load handler did not run"
    assert int(images.group(1)) >= 5 and loaded.group(1) == images.group(1)
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)]
    assert not console_errors, console_errors
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    capture = run_chromium(binary, f"--screenshot={shot}", "--window-size=1400,2400", url)
    assert capture.returncode == 0 and shot.is_file() and shot.stat().st_size > 10_000, capture.stderr[-2000:]
