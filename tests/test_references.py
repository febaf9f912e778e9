"""Reference gradients computed once per configuration and seed: a cell that loads the
shared reference gives bit for bit the numbers of a cell that computed it, also where the
reference is sampled (and so consumed the cell's generator)."""

from __future__ import annotations

import pytest

from dgbench.harness.cells import run_cell
from dgbench.harness.suites import Cell
from dgbench.problems import PROBLEMS
from dgbench.problems.bernoulli_toy import BernoulliToy


class NoClosedForm(BernoulliToy):
    id = "no-closed-form"

    def exact_gradient(self):
        return None


def numbers(result):
    return {k: v for k, v in result["metrics"].items() if not k.startswith("seconds")}


@pytest.mark.parametrize("problem, options", [("no-closed-form", {"dim": 20, "init": 0.5}),  # sampled
                                              ("bernoulli-toy", {"dim": 3})])               # closed form
def test_a_shared_reference_gives_the_numbers_of_a_computed_one(tmp_path, monkeypatch, problem, options):
    monkeypatch.setitem(PROBLEMS, "no-closed-form", NoClosedForm)
    alone = {e: run_cell(Cell("gradstats", problem, options, e, {}, 0, {"replicas": 300})) for e in ("disarm", "rloo")}
    shared = tmp_path / "references"
    first = {e: run_cell(Cell("gradstats", problem, options, e, {}, 0, {"replicas": 300}), references=shared)
             for e in ("disarm", "rloo")}
    assert len(list(shared.glob("*.pt"))) == 1  # computed by the first cell, loaded by the second
    for e in alone:
        assert first[e]["status"] == "done" and numbers(first[e]) == numbers(alone[e])
    other_seed = run_cell(Cell("gradstats", problem, options, "disarm", {}, 1, {"replicas": 300}), references=shared)
    assert len(list(shared.glob("*.pt"))) == 2 and numbers(other_seed) != numbers(alone["disarm"])


def test_a_changed_model_never_picks_up_a_stale_reference(tmp_path, monkeypatch):
    """The key hashes the problem's initial state: another init is another reference."""
    monkeypatch.setitem(PROBLEMS, "no-closed-form", NoClosedForm)
    shared = tmp_path / "references"
    for init in (0.5, 0.6):
        cell = Cell("gradstats", "no-closed-form", {"dim": 20, "init": init}, "disarm", {}, 0, {"replicas": 100})
        assert numbers(run_cell(cell, references=shared)) == numbers(run_cell(cell))
    assert len(list(shared.glob("*.pt"))) == 2


def test_an_unreadable_reference_file_is_computed_again(tmp_path, monkeypatch):
    monkeypatch.setitem(PROBLEMS, "no-closed-form", NoClosedForm)
    shared = tmp_path / "references"
    cell = Cell("gradstats", "no-closed-form", {"dim": 20, "init": 0.5}, "disarm", {}, 0, {"replicas": 100})
    run_cell(cell, references=shared)
    (path,) = shared.glob("*.pt")
    path.write_bytes(b"garbage")
    assert numbers(run_cell(cell, references=shared)) == numbers(run_cell(cell))
