"""Tests that need binarized MNIST carry the ``mnist`` marker: explicitly, or because one
of their parameters is a problem whose small configuration needs it. Without the data they
skip with the reason (README command 2 on a machine that never saw MNIST), except under
``DGBENCH_REQUIRE_DATA=1`` (CI), where they fail instead of skipping."""

from __future__ import annotations

import pytest

from tests.helpers import MNIST_PROBLEMS, skip_without_mnist


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec and any(isinstance(v, str) and v in MNIST_PROBLEMS for v in callspec.params.values()):
            item.add_marker(pytest.mark.mnist)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("mnist"):
        skip_without_mnist()
