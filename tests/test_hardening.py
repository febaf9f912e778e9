"""Bad input and damaged files: one line on stderr, exit status 2, nothing written; damaged
caches are discarded and recomputed (issue 31, rows D1-D13)."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
import time
import zipfile

import numpy as np
import pytest
import torch

from dgbench.domains import undeclared
from dgbench.estimators import ESTIMATORS
from dgbench.estimators.plugin import PluginError, validate_estimator
from dgbench.harness.checkpoints import MAGIC, load_saved, remove_stale_files, save_atomically
from dgbench.harness.cli import main
from dgbench.harness.gradstats import gradient_statistics, replicated_gradients, summarise
from dgbench.harness.seeding import make_generator
from dgbench.problems import PROBLEMS
from dgbench.problems.data import CorruptData, _read_npz
from dgbench.store import DB_NAME, ResultStore, read_tables

SUITE = """
name = "hard"
seeds = {seeds}
{extra}
[budget]
evals = 2
[training]
steps = 4
lr = {lr}
eval_every = 2
variance_every = 2
variance_replicas = 4
[gradstats]
replicas = {replicas}
[[problems]]
id = "bernoulli-toy"
options = {options}
{more_problems}
[estimators]
include = {include}
{hyper}
"""


def suite(tmp_path, *, seeds=1, lr="0.1", replicas=50, options="{ dim = 2 }", include='["reinforce", "rloo"]',
          hyper="", extra="", more_problems=""):
    path = tmp_path / "s.toml"
    path.write_text(SUITE.format(seeds=seeds, lr=lr, replicas=replicas, options=options, include=include,
                                 hyper=hyper, extra=extra, more_problems=more_problems))
    return path


def refused(capsys, tmp_path, *argv, out=None):
    """Run the CLI; assert exit 2, one line on stderr, and no results directory written."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("dgbench: error:"), err
    if out is not None:
        assert not out.exists()
    return err


@pytest.mark.parametrize("lr", ["nan", "inf", "-inf", "0", "-0.1"])
def test_d1_a_non_finite_or_non_positive_learning_rate_is_refused(capsys, tmp_path, lr):
    out = tmp_path / "out"
    err = refused(capsys, tmp_path, "run", "--suite", suite(tmp_path, lr=lr), "--out", out)
    assert "lr" in err


@pytest.mark.parametrize("flag", ["--cell-timeout", "--checkpoint-every"])
@pytest.mark.parametrize("value", ["nan", "inf", "0"])
def test_d2_d7_non_finite_seconds_on_the_command_line_are_refused(capsys, tmp_path, flag, value):
    out = tmp_path / "out"
    err = refused(capsys, tmp_path, "run", "--suite", suite(tmp_path), "--out", out, flag, value)
    assert flag in err


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_d2_a_non_finite_cell_timeout_in_a_suite_is_refused(capsys, tmp_path, value):
    out = tmp_path / "out"
    err = refused(capsys, tmp_path, "run", "--suite", suite(tmp_path, extra=f"cell_timeout = {value}"), "--out", out)
    assert "cell_timeout" in err


def test_d2_compare_refuses_a_non_finite_cell_timeout(capsys, tmp_path):
    refused(capsys, tmp_path, "compare", "reinforce", "--suite", "smoke", "--cell-timeout", "inf",
            "--out", tmp_path / "c")


def test_d3_seeds_that_would_exhaust_memory_are_refused(capsys, tmp_path):
    out = tmp_path / "out"
    assert "seeds" in refused(capsys, tmp_path, "run", "--suite", suite(tmp_path, seeds=1_000_000_000), "--out", out)
    assert "seeds" in refused(capsys, tmp_path, "run", "--suite", suite(tmp_path), "--out", out,
                              "--seeds", "1000000000")
    assert "seeds" in refused(capsys, tmp_path, "reproduce", "relax-toy", "--seeds", "1000000000",
                              "--out", out)


def test_d4_replicas_beyond_the_bound_are_refused(capsys, tmp_path):
    out = tmp_path / "out"
    assert "replicas" in refused(capsys, tmp_path, "run", "--suite", suite(tmp_path, replicas=10**12), "--out", out)
    assert "replicas" in refused(capsys, tmp_path, "gradcheck", "--problem", "bernoulli-toy", "--estimator",
                                 "reinforce", "--replicas", str(10**12))


def test_d4_gradient_statistics_stream_chunks_and_agree_with_the_whole_matrix():
    """Statistics are accumulated chunk by chunk (O(P) memory for any R) and equal those of
    the whole (R, P) matrix of the same estimates (the same chunks: the noise follows them)."""
    problem = PROBLEMS["bernoulli-toy"](dim=3, target=0.3, init=0.4)
    est = ESTIMATORS["rloo"]("bernoulli", samples=2)
    exact = torch.cat(list(problem.exact_gradient().values()))
    whole = summarise(replicated_gradients(problem, est, 5000, make_generator(3), chunk=7), exact)
    import dgbench.harness.gradstats as gradstats

    previous = gradstats.CHUNK_ELEMENTS
    gradstats.CHUNK_ELEMENTS = 3 * 2 * 7  # chunks of 7 replicas
    try:
        streamed, _ = gradient_statistics(problem, est, exact, 5000, make_generator(3), torch.device("cpu"))
    finally:
        gradstats.CHUNK_ELEMENTS = previous
    for key in ("bias_norm", "variance_mean", "variance_total", "mse", "cosine", "cosine_single_mean", "snr_mean"):
        assert getattr(streamed, key) == pytest.approx(getattr(whole, key), rel=1e-10, abs=1e-14), key
    assert streamed.replicas == 5000


@pytest.mark.parametrize("options, hyper, word", [
    ("{ dim = -3 }", "", "dim"),
    ("{ dim = 2, colour = 1 }", "", "colour"),
    ("{ target = nan }", "", "target"),
    ("{ dim = 2 }", "hyperparameters = { gumbel-softmax = { temperature = -1 } }", "temperature"),
    ("{ dim = 2 }", "hyperparameters = { rloo = { samples = 0 } }", "samples"),
    ("{ dim = 2 }", "variants = { cold = { estimator = \"gumbel-softmax\", temperature = 0 } }", "temperature"),
    ("{ dim = 2 }", "hyperparameters = { relax = { activation = \"sigmoid\" } }", "activation"),
])
def test_d5_invalid_options_and_hyperparameters_are_refused_when_the_suite_loads(capsys, tmp_path, options, hyper,
                                                                                 word):
    out = tmp_path / "out"
    err = refused(capsys, tmp_path, "run", "--suite", suite(tmp_path, options=options, hyper=hyper), "--out", out)
    assert word in err


def test_d5_gradcheck_refuses_out_of_range_values_before_computing(capsys, tmp_path):
    assert "dim" in refused(capsys, tmp_path, "gradcheck", "--problem", "bernoulli-toy", "--estimator", "reinforce",
                            "--option", "dim=-3")
    assert "temperature" in refused(capsys, tmp_path, "gradcheck", "--problem", "bernoulli-toy", "--estimator",
                                    "gumbel-softmax", "--hparam", "temperature=-1")


@pytest.mark.parametrize("pid", list(PROBLEMS))
def test_d5_every_problem_declares_its_options_and_its_defaults_are_in_range(pid):
    cls = PROBLEMS[pid]
    assert undeclared(cls.default_options(), cls.domains()) == []
    assert cls.check_options(cls.default_options()) == []
    assert cls.check_options(cls.test_options) == []


@pytest.mark.parametrize("eid", list(ESTIMATORS))
def test_d5_every_estimator_declares_its_hyperparameters_and_its_defaults_are_in_range(eid):
    cls = ESTIMATORS[eid]
    assert undeclared(cls.default_hyperparameters(), cls.domains()) == []
    assert cls.check_hyperparameters(cls.default_hyperparameters()) == []


def test_d5_shipped_suites_and_reproductions_pass_the_checks():
    from dgbench.harness import reproduce
    from dgbench.harness.suites import available_suites, load_suite

    for name in available_suites():
        load_suite(name)
    for name in reproduce.available():
        reproduce.load(name)


def test_d6_a_problem_or_estimator_listed_twice_is_refused(capsys, tmp_path):
    out = tmp_path / "out"
    twice = '[[problems]]\nid = "bernoulli-toy"\noptions = { dim = 2 }'
    assert "repeats" in refused(capsys, tmp_path, "run", "--suite", suite(tmp_path, more_problems=twice), "--out", out)
    assert "repeats" in refused(capsys, tmp_path, "run", "--suite",
                                suite(tmp_path, include='["reinforce", "rloo", "reinforce"]'), "--out", out)
    other = '[[problems]]\nid = "bernoulli-toy"\noptions = { dim = 3 }'  # another configuration is fine
    assert main(["run", "--suite", str(suite(tmp_path, more_problems=other)), "--out", str(out), "--dry-run"]) == 0


@pytest.mark.parametrize("scale", ["inf", "1e300", "nan", "0", "-1"])
def test_d7_steps_scale_must_be_finite_and_bounded(capsys, tmp_path, scale):
    out = tmp_path / "out"
    assert "--steps-scale" in refused(capsys, tmp_path, "reproduce", "relax-toy", "--steps-scale", scale, "--out", out)


def test_d7_the_provenance_is_strict_json(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite(tmp_path)), "--out", str(out), "--quiet", "--in-process"]) == 0
    db = sqlite3.connect(out / DB_NAME)
    (text,) = db.execute("SELECT provenance FROM runs").fetchone()
    db.close()

    def refuse(constant):
        raise ValueError(constant)

    json.loads(text, parse_constant=refuse)  # NaN, Infinity and -Infinity would raise


HANGING = '''
from dgbench.estimators.base import Estimator


class Hangs(Estimator):
    id = "hangs"
    family = "bernoulli"
    unbiased = True

    def forward(self, logits, f, *, generator):
        while True:
            pass
'''


def test_d8_a_plugin_whose_forward_never_returns_is_refused_within_the_time_limit(capsys, tmp_path, monkeypatch):
    plugin = tmp_path / "hangs.py"
    plugin.write_text(HANGING)
    monkeypatch.setenv("DGBENCH_PLUGIN_TIMEOUT", "1")
    start = time.monotonic()
    err = refused(capsys, tmp_path, "gradcheck", "--problem", "bernoulli-toy", "--estimator", plugin)
    assert "did not finish within 1 s" in err and time.monotonic() - start < 30
    err = refused(capsys, tmp_path, "compare", plugin, "--suite", "smoke", "--out", tmp_path / "c")
    assert "did not finish" in err


WAITING = '''
import os
import time

from dgbench.estimators.base import Estimator


class WaitsForAFile(Estimator):
    id = "waits-for-a-file"
    family = "bernoulli"
    unbiased = True

    def forward(self, logits, f, *, generator):
        while not os.path.exists({release!r}):  # sleeps, so a test can end it (no thread left spinning)
            time.sleep(0.01)
        raise RuntimeError("released")
'''


def test_d8_the_time_limit_holds_outside_the_main_thread(tmp_path, monkeypatch):
    from dgbench.estimators.plugin import load_estimator

    release = tmp_path / "release"
    plugin = tmp_path / "waits.py"
    plugin.write_text(WAITING.format(release=str(release)))
    monkeypatch.setenv("DGBENCH_PLUGIN_TIMEOUT", "0.5")
    caught: list[BaseException] = []

    def target():
        try:
            load_estimator(str(plugin))
        except BaseException as err:
            caught.append(err)

    thread = threading.Thread(target=target)
    try:
        thread.start()
        thread.join(30)
        assert not thread.is_alive() and isinstance(caught[0], PluginError) and "did not finish" in str(caught[0])
    finally:
        release.write_text("")  # the validation thread the limit abandoned ends too


def test_d8_a_valid_plugin_still_validates_under_the_limit(monkeypatch):
    monkeypatch.setenv("DGBENCH_PLUGIN_TIMEOUT", "30")
    assert validate_estimator(ESTIMATORS["rloo"]) is ESTIMATORS["rloo"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("finished")
    out = base / "out"
    assert main(["run", "--suite", str(suite(base)), "--out", str(out), "--quiet", "--in-process"]) == 0
    return out


def test_d9_an_archived_copy_without_its_wal_files_is_read(finished_run, tmp_path, capsys):
    """The copy says WAL in its header; where SQLite cannot make its shared-memory file
    (read-only media; here a directory stands in the file's place), the immutable mode
    reads it."""
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / DB_NAME).write_bytes((finished_run / DB_NAME).read_bytes())
    assert (archive / DB_NAME).read_bytes()[18:20] == b"\x02\x02"  # WAL mode
    (archive / f"{DB_NAME}-shm").mkdir()  # no -shm can be created
    expected = read_tables(finished_run)
    tables = read_tables(archive)
    assert len(tables.cells) == len(expected.cells) > 0 and len(tables.metrics) == len(expected.metrics)
    assert main(["export", str(archive), "--out", str(tmp_path / "exported")]) == 0
    assert (tmp_path / "exported" / "cells.csv").is_file()


def test_d9_report_and_export_into_an_unwritable_place_give_one_line(finished_run, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    err = refused(capsys, tmp_path, "report", finished_run, "--out", blocker / "report", "--format", "md")
    assert "--out" in err
    err = refused(capsys, tmp_path, "export", finished_run, "--out", blocker / "export")
    assert "--out" in err


def test_d10_a_database_damaged_in_the_middle_gives_one_line(finished_run, tmp_path, capsys):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    blob = bytearray((finished_run / DB_NAME).read_bytes())
    middle = len(blob) // 2 // 4096 * 4096
    blob[middle:middle + 3 * 4096] = b"\xff" * (3 * 4096)
    (damaged / DB_NAME).write_bytes(bytes(blob))
    for argv in (["report", damaged, "--out", tmp_path / "r"], ["export", damaged, "--out", tmp_path / "e"]):
        err = refused(capsys, tmp_path, *argv)
        assert "damaged" in err


def flip(path, at):
    blob = bytearray(path.read_bytes())
    blob[at] ^= 0x10
    path.write_bytes(bytes(blob))


def test_d11_a_damaged_checkpoint_or_reference_is_detected_discarded_and_recomputed(tmp_path, capsys):
    path = tmp_path / "checkpoints" / "k.pt"
    state = {"format": 1, "weights": torch.arange(1000, dtype=torch.float64)}
    save_atomically(path, state)
    assert path.read_bytes().startswith(MAGIC)
    assert torch.equal(load_saved(path, 1)["weights"], state["weights"])
    size = path.stat().st_size
    for at in (size // 3, size // 2, size - 9):  # a bit flip anywhere, even in the tensor data
        save_atomically(path, state)
        flip(path, at)
        assert load_saved(path, 1) is None
        assert not path.exists()  # discarded
        assert "damaged" in capsys.readouterr().err
    path.write_bytes(b"PK\x03\x04 an old unchecked file")
    assert load_saved(path, 1) is None and not path.exists()


def test_d11_a_damaged_shared_reference_is_recomputed_to_the_same_numbers(tmp_path):
    from dgbench.harness.references import shared_reference

    calls = []

    def compute():
        calls.append(1)
        g = torch.tensor([1.0, 2.0], dtype=torch.float64)
        return g, "closed-form", torch.zeros(2, dtype=torch.float64)

    gen = make_generator(0)
    first = shared_reference(tmp_path, "key", gen, compute, torch.device("cpu"))
    flip(tmp_path / "key.pt", (tmp_path / "key.pt").stat().st_size // 2)
    again = shared_reference(tmp_path, "key", gen, compute, torch.device("cpu"))
    assert len(calls) == 2 and torch.equal(first[0], again[0])
    shared_reference(tmp_path, "key", gen, compute, torch.device("cpu"))
    assert len(calls) == 2  # the recomputed file is used


def test_d11_a_bit_flipped_data_file_is_named_not_a_traceback(tmp_path):
    """A bit flip in a compressed npz is caught as CorruptData naming the file (zlib errors,
    CRC errors, bad headers), never an unexpected exception, or leaves the data intact."""
    from dgbench.problems.data import SplitCheck, pixel_digest

    rng = np.random.default_rng(0)
    splits = {s: (rng.random((8, 784)) < 0.2).astype(np.uint8) for s in ("train", "valid", "test")}
    checks = {s: SplitCheck(8, pixel_digest(p)) for s, p in splits.items()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{s: np.packbits(p, axis=1) for s, p in splits.items()})
    blob = buffer.getvalue()
    path = tmp_path / "binarized_mnist.npz"
    path.write_bytes(blob)
    assert set(_read_npz(path, checks)) == {"train", "valid", "test"}
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        info = z.infolist()[0]
    name_length, extra_length = np.frombuffer(blob[info.header_offset + 26:info.header_offset + 30], dtype="<u2")
    data_start = info.header_offset + 30 + int(name_length) + int(extra_length)  # the local header's own lengths
    kinds = set()
    for at in range(data_start, data_start + info.compress_size, max(1, info.compress_size // 40)):
        damaged = bytearray(blob)
        damaged[at] ^= 0x01
        path.write_bytes(bytes(damaged))
        try:
            read = _read_npz(path, checks)
        except CorruptData as caught:
            message = str(caught)
            assert str(path) in message or "checksum" in message
            kinds.add(message.split("(")[1].split(":")[0] if "unreadable" in message else "checksum")
            continue
        # A flip in bits deflate ignores (padding) leaves the data intact: verified, and used.
        assert all(np.array_equal(read[s], splits[s]) for s in splits)
    assert "error" in kinds  # zlib.error among them: the traceback of the issue


def test_d12_report_reads_all_tables_in_one_transaction(finished_run, tmp_path, monkeypatch):
    """A cell written between two of the reader's queries is invisible to all of them."""
    import pandas as pd

    import dgbench.store as store_module

    copy = tmp_path / "live"
    copy.mkdir()
    (copy / DB_NAME).write_bytes((finished_run / DB_NAME).read_bytes())
    before = read_tables(copy)
    original = pd.read_sql
    written = []

    class Late:
        key = "late-cell"
        kind, problem, options, estimator, hyperparameters, seed = "gradstats", "bernoulli-toy", {}, "rloo", {}, 0

    def read_sql(query, db, *args, **kwargs):
        frame = original(query, db, *args, **kwargs)
        if "FROM cells" in query and not written:
            writer = ResultStore(copy)
            writer.add_suite_cells(["late-cell"])
            writer.write_cell(1, Late(), {"status": "done", "metrics": {"bias_norm": 1.0}})
            writer.close()
            written.append(True)
        return frame

    monkeypatch.setattr(store_module.pd, "read_sql", read_sql)
    during = read_tables(copy)
    assert written
    assert "late-cell" not in set(during.metrics["cell_key"]) and len(during.metrics) == len(before.metrics)
    monkeypatch.setattr(store_module.pd, "read_sql", original)
    assert "late-cell" in set(read_tables(copy).metrics["cell_key"])


def test_d13_a_finished_run_leaves_no_partial_files_or_stale_checkpoints(tmp_path):
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    (out / "references").mkdir(parents=True)
    dead = 2**22 + 12345  # beyond the default pid_max: no such process
    (out / "checkpoints" / f"abc.pt.{dead}.partial").write_bytes(b"half")
    (out / "references" / f"ref.pt.{dead}.partial").write_bytes(b"half")
    (out / "checkpoints" / "0123456789abcdef01234567.pt").write_bytes(b"a group's checkpoint nobody needs")
    alive = out / "references" / f"ref.pt.{os.getpid()}.partial"  # a writer still at work
    alive.write_bytes(b"in progress")
    assert main(["run", "--suite", str(suite(tmp_path)), "--out", str(out), "--quiet", "--workers", "1"]) == 0
    assert not (out / "checkpoints").exists()
    leftovers = [p.name for p in (out / "references").iterdir() if p.name.endswith(".partial")]
    assert leftovers == [alive.name]


def test_d13_checkpoints_of_unfinished_cells_are_kept_for_their_retry(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    for key in ("keep", "drop"):
        (tmp_path / "checkpoints" / f"{key}.pt").write_bytes(b"x")
    assert remove_stale_files(tmp_path, {"keep"}) == 1
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["keep.pt"]
