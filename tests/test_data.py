"""Data loading: directory resolution, cached, downloaded (loopback server), corrupt, offline.

The download path is exercised against a local HTTP server on 127.0.0.1 serving small
fixture ``.amat`` files, with checks computed for those fixtures; the real checks are
verified against the shared copy when it is available.
"""

from __future__ import annotations

import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from dgbench.problems import data
from dgbench.problems.data import (
    MNIST_CHECKS,
    MNIST_FILE,
    SPLITS,
    CorruptData,
    DataUnavailable,
    SplitCheck,
    load_binarized_mnist,
    load_digits_binarized,
    parse_amat,
    pixel_digest,
    resolve_data_dir,
)

ROWS = {"train": 5, "valid": 3, "test": 2}


def fixture_pixels() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {s: (rng.random((n, 784)) < 0.2).astype(np.uint8) for s, n in ROWS.items()}


def amat(pixels: np.ndarray) -> bytes:
    return "".join(" ".join(map(str, row)) + "\n" for row in pixels).encode()


def checks_for(pixels: dict[str, np.ndarray]) -> dict[str, SplitCheck]:
    return {s: SplitCheck(a.shape[0], pixel_digest(a)) for s, a in pixels.items()}


class Server:
    """A loopback HTTP server for a directory, counting requests."""

    def __init__(self, root: Path) -> None:
        self.requests = 0
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                outer.requests += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/datasets/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    pixels = fixture_pixels()
    root = tmp_path / "www"
    (root / "datasets").mkdir(parents=True)
    for split, a in pixels.items():
        (root / "datasets" / f"binarized_mnist_{split}.amat").write_bytes(amat(a))
    server = Server(root)
    yield server, pixels, root / "datasets"
    server.close()


@pytest.fixture(autouse=True)
def fresh_memo(monkeypatch):
    monkeypatch.setattr(data, "_MEMO", {})


def test_data_dir_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("DGBENCH_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("DGBENCH_DATA_DIR")
    assert resolve_data_dir(None) == tmp_path / "cache" / "dgbench"


def test_download_verifies_writes_cache_atomically_and_reuses_it(served, tmp_path):
    server, pixels, _ = served
    target = tmp_path / "data"
    got = load_binarized_mnist(target, url=server.url, checks=checks_for(pixels))
    for split in SPLITS:
        np.testing.assert_array_equal(got[split], pixels[split])
    assert server.requests == 3
    assert sorted(p.name for p in target.iterdir()) == [MNIST_FILE]  # no temporary file left behind
    with np.load(target / MNIST_FILE) as npz:  # the shared README's format
        np.testing.assert_array_equal(np.unpackbits(npz["train"], axis=1)[:, :784], pixels["train"])
    data._MEMO.clear()
    again = load_binarized_mnist(target, url=server.url, checks=checks_for(pixels))
    np.testing.assert_array_equal(again["test"], pixels["test"])
    assert server.requests == 3  # served from the cache


def test_environment_variables_pick_directory_and_url(served, tmp_path, monkeypatch):
    server, pixels, _ = served
    monkeypatch.setenv("DGBENCH_DATA_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("DGBENCH_MNIST_URL", server.url)
    load_binarized_mnist(checks=checks_for(pixels))
    assert (tmp_path / "from-env" / MNIST_FILE).exists()


def test_corrupt_download_is_rejected_and_nothing_written(served, tmp_path):
    server, pixels, root = served
    text = (root / "binarized_mnist_valid.amat").read_bytes()
    flipped = bytearray(text)
    flipped[0] = ord("1") if flipped[0] == ord("0") else ord("0")
    (root / "binarized_mnist_valid.amat").write_bytes(bytes(flipped))
    with pytest.raises(DataUnavailable, match="valid: checksum"):
        load_binarized_mnist(tmp_path / "data", url=server.url, checks=checks_for(pixels))
    assert not (tmp_path / "data" / MNIST_FILE).exists()


def test_truncated_download_is_rejected(served, tmp_path):
    server, pixels, root = served
    lines = (root / "binarized_mnist_train.amat").read_bytes().splitlines(keepends=True)
    (root / "binarized_mnist_train.amat").write_bytes(b"".join(lines[:-1]) + lines[-1][:100])
    with pytest.raises(DataUnavailable, match="train"):
        load_binarized_mnist(tmp_path / "data", url=server.url, checks=checks_for(pixels))
    assert not (tmp_path / "data" / MNIST_FILE).exists()


def test_corrupt_cache_is_never_used_and_is_replaced_by_a_verified_download(served, tmp_path):
    server, pixels, _ = served
    target = tmp_path / "data"
    target.mkdir()
    bad = {s: np.packbits(1 - a, axis=1) for s, a in pixels.items()}  # right shapes, wrong content
    np.savez(target / MNIST_FILE, **bad)
    got = load_binarized_mnist(target, url=server.url, checks=checks_for(pixels))
    np.testing.assert_array_equal(got["train"], pixels["train"])
    assert server.requests == 3
    data._MEMO.clear()
    load_binarized_mnist(target, url=server.url, checks=checks_for(pixels), download=False)  # now valid


def test_truncated_cache_file_is_detected(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    pixels = fixture_pixels()
    np.savez(target / MNIST_FILE, **{s: np.packbits(a, axis=1) for s, a in pixels.items()})
    blob = (target / MNIST_FILE).read_bytes()
    (target / MNIST_FILE).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataUnavailable, match="corrupt"):
        load_binarized_mnist(target, checks=checks_for(pixels), download=False)


def test_offline_fails_with_one_clear_message(tmp_path):
    # A closed port on the loopback interface: the connection is refused at once.
    with pytest.raises(DataUnavailable) as info:
        load_binarized_mnist(tmp_path / "empty", url="http://127.0.0.1:9/")
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "empty") in message and MNIST_FILE in message and "DGBENCH_DATA_DIR" in message


def test_parse_amat_rejects_non_binary_text():
    with pytest.raises(CorruptData):
        parse_amat(b"0 1 2\n", "train")
    assert parse_amat(amat(fixture_pixels()["test"]), "test").shape == (2, 784)


def test_shared_copy_passes_the_real_checks():
    shared = Path(os.environ.get("DGBENCH_DATA_DIR", Path(__file__).parents[2] / "shared" / "data"))
    if not (shared / MNIST_FILE).exists():
        pytest.skip(f"no {MNIST_FILE} in {shared}")
    got = load_binarized_mnist(shared, download=False)
    assert {s: a.shape[0] for s, a in got.items()} == {s: c.rows for s, c in MNIST_CHECKS.items()}
    assert abs(float(got["train"].mean()) - 0.13056) < 5e-5


def test_digits_are_binary_labelled_and_split_deterministically():
    a, b = load_digits_binarized(), load_digits_binarized()
    assert [a[s][0].shape[0] for s in SPLITS] == [1197, 300, 300]
    for s in SPLITS:
        np.testing.assert_array_equal(a[s][0], b[s][0])
        assert set(np.unique(a[s][0])) <= {0, 1} and a[s][0].shape[1] == 64
    assert set(np.unique(a["train"][1])) == set(range(10))


def test_digits_read_from_scikit_learns_file_equal_its_loader_and_the_loader_is_the_fallback(monkeypatch):
    """The bundled digits are read from the CSV scikit-learn ships (its import costs a
    second per process); they are its `load_digits`, value for value, and where the file is
    not found the loader itself is used."""
    from sklearn.datasets import load_digits

    from dgbench.problems import data

    pixels, labels = data._digits_table()
    bunch = load_digits()
    np.testing.assert_array_equal(pixels, bunch.data)
    np.testing.assert_array_equal(labels, bunch.target)
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    fallback_pixels, fallback_labels = data._digits_table()
    np.testing.assert_array_equal(fallback_pixels, bunch.data)
    np.testing.assert_array_equal(fallback_labels, bunch.target)
