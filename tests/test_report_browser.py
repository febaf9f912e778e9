"""The HTML report in headless Chromium: it renders, logs no console errors, every figure
decodes, the leaderboard starts on the first screen (1400x900), every table fits a 1024 px
window, and a screenshot is kept as a test artifact (``test-artifacts/report.png``, or
``$DGBENCH_TEST_ARTIFACTS``).

Chromium is a system package: `.ci/run` installs Debian's ``chromium``; contributors
install it themselves (``apt-get install chromium``). Where it is missing the test skips
and says so; it never installs anything itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dgbench.harness.cli import main
from dgbench.reports.build import build_report

ARTIFACTS = Path(os.environ.get("DGBENCH_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
FIRST_SCREEN = (1400, 900)
NARROW = (1024, 768)  # every table of this run's report fits a window this wide (no sideways scrolling)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    return found


def run_chromium(binary: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", *args],
        capture_output=True, text=True, timeout=180,
    )


@pytest.mark.slow
def test_report_page_renders_in_headless_chromium(tmp_path):
    binary = chromium()
    run = tmp_path / "run"
    assert main(["run", "--suite", "smoke", "--estimators", "reinforce,disarm,gumbel-softmax,exact", "--out", str(run),
                 "--workers", "1", "--quiet"]) == 0
    build_report(run, ["html"], tmp_path / "report")
    url = (tmp_path / "report" / "index.html").resolve().as_uri()
    dom = run_chromium(binary, "--dump-dom", f"--window-size={FIRST_SCREEN[0]},{FIRST_SCREEN[1]}", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    images = re.search(r'data-images="(\d+)"', dom.stdout)
    loaded = re.search(r'data-images-loaded="(\d+)"', dom.stdout)
    assert images and loaded, "the page's load handler did not run"
    assert int(images.group(1)) >= 5 and loaded.group(1) == images.group(1)
    top = re.search(r'data-leaderboard-top="(\d+)"', dom.stdout)
    assert top and int(top.group(1)) < FIRST_SCREEN[1] / 2, "the leaderboard does not start on the first screen"
    narrow = run_chromium(binary, "--dump-dom", f"--window-size={NARROW[0]},{NARROW[1]}", url)
    right, width = (re.search(rf'data-{name}="(\d+)"', narrow.stdout) for name in ("tables-right", "viewport-width"))
    assert right and width and int(right.group(1)) <= int(width.group(1)), \
        f"a table is {right and right.group(1)} px wide in a {width and width.group(1)} px window"
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)]
    assert not console_errors, console_errors
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    capture = run_chromium(binary, f"--screenshot={shot}", f"--window-size={FIRST_SCREEN[0]},{FIRST_SCREEN[1]}", url)
    assert capture.returncode == 0 and shot.is_file() and shot.stat().st_size > 10_000, capture.stderr[-2000:]
