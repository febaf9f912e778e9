"""The README's promises: two Quickstart commands, .ci/run runs the test one, examples work."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from dgbench.estimators.plugin import validate_estimator

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def quickstart_commands() -> list[str]:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line and not line.startswith("#")]


def test_quickstart_has_exactly_two_commands_pinning_torch_first():
    commands = quickstart_commands()
    assert len(commands) == 2
    for command in commands:
        assert command.startswith("python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 && ")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert quickstart_commands()[1] in ci


def test_readme_plugin_example_is_a_valid_estimator(tmp_path):
    example = README.split("# my_estimator.py\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(example, "my_estimator.py", "exec"), namespace)
    cls = validate_estimator(namespace["HalfBaseline"])
    logits = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    cls("bernoulli")(logits, lambda z: z.sum(-1), generator=torch.Generator().manual_seed(0)).backward()
    assert logits.grad is not None


def test_readme_tables_are_generated_from_the_declarations():
    from dgbench.harness.listing import estimator_markdown, problem_markdown

    assert estimator_markdown() in README, "run `dgbench list estimators --markdown` and paste it into the README"
    assert problem_markdown() in README, "run `dgbench list problems --markdown` and paste it into the README"


def test_the_default_selection_leaves_the_slow_tests_to_ci():
    """README command 2 runs pytest's default selection, which deselects ``slow``; CI runs
    that command and then the slow tests, so every test still runs there."""
    import tomllib

    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert "-m 'not slow'" in addopts
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command_2 = ci.index(quickstart_commands()[1])
    assert ".venv/bin/python -m pytest -m slow" in ci[command_2 + 1:]
    assert "-m 'not slow'" not in quickstart_commands()[1]
