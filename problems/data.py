"""Data sets: statically binarized MNIST (cached, downloaded, verified) and the bundled digits.

Binarized MNIST (Larochelle & Murray, 2011; the fixed binarization of the NVIL, MuProp,
REBAR, RELAX, VIMCO and Gumbel-Softmax papers): 50,000 / 10,000 / 10,000 images of
784 binary pixels. The cache is one ``binarized_mnist.npz`` (keys ``train``, ``valid``,
``test``; uint8 rows of 784 pixels packed with ``np.packbits(x, axis=1)``) in the data
directory, resolved in this order:

1. an explicit directory (the CLI's ``--data-dir``),
2. the ``DGBENCH_DATA_DIR`` environment variable,
3. the user cache, ``$XDG_CACHE_HOME/dgbench`` (default ``~/.cache/dgbench``).

Every split is verified (row count and SHA-256 of its unpacked pixels) each time it is
loaded. A missing or corrupt cache is (re)built by downloading the three original
``binarized_mnist_{split}.amat`` text files, verifying them, and writing the npz
atomically (temporary file, then rename); a corrupt file is never used. Without network
the loader raises :class:`DataUnavailable`, saying where to put the file.

The download location is ``MNIST_URL``, overridable with ``DGBENCH_MNIST_URL`` (tests
point it at a server on 127.0.0.1).

The bundled data set is scikit-learn's handwritten digits (1,797 images of 8x8 pixels,
with labels; no download), binarised at half intensity (pixel >= 8 of 16) and split by a
fixed permutation into 1,197 / 300 / 300.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import io
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train", "valid", "test")
PIXELS = 784
MNIST_FILE = "binarized_mnist.npz"
MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class SplitCheck:
    """Expected row count and first 16 hex digits of SHA-256 of the unpacked pixels."""

    rows: int
    sha256_16: str


MNIST_CHECKS = {
    "train": SplitCheck(50_000, "43490d4d6ac90027"),
    "valid": SplitCheck(10_000, "069b4f0beb389b77"),
    "test": SplitCheck(10_000, "ca0294c3b8d984c7"),
}


class DataUnavailable(RuntimeError):
    """The data set is neither cached nor downloadable; the message says what to do."""


class CorruptData(ValueError):
    """A data file failed its checks (wrong size, unparsable, or wrong checksum)."""


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: ``explicit``, else ``$DGBENCH_DATA_DIR``, else the user cache."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("DGBENCH_DATA_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "dgbench"


def pixel_digest(pixels: np.ndarray) -> str:
    """First 16 hex digits of SHA-256 of ``(N, 784)`` uint8 0/1 pixels (the shared README's check)."""
    return hashlib.sha256(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()).hexdigest()[:16]


def verify(split: str, pixels: np.ndarray, checks: dict[str, SplitCheck]) -> None:
    """Raise :class:`CorruptData` unless ``pixels`` pass ``checks[split]``."""
    check = checks[split]
    if pixels.ndim != 2 or pixels.shape[1] != PIXELS:
        raise CorruptData(f"{split}: expected rows of {PIXELS} pixels, got shape {pixels.shape}")
    if pixels.shape[0] != check.rows:
        raise CorruptData(f"{split}: expected {check.rows} rows, got {pixels.shape[0]} (truncated?)")
    digest = pixel_digest(pixels)
    if digest != check.sha256_16:
        raise CorruptData(f"{split}: checksum {digest} does not match the expected {check.sha256_16}")


def parse_amat(text: bytes, split: str = "?") -> np.ndarray:
    """Pixels ``(N, 784)`` uint8 from an ``.amat`` file (one image a line, 784 0/1 values)."""
    lines = [line for line in text.split(b"\n") if line.strip()]
    raw = np.frombuffer(b" ".join(lines), dtype=np.uint8)
    digits = raw[(raw == ord("0")) | (raw == ord("1"))] - ord("0")
    other = raw[(raw != ord("0")) & (raw != ord("1")) & (raw != ord(" ")) & (raw != ord("\r")) & (raw != ord("\t"))]
    if other.size or digits.size != len(lines) * PIXELS:
        raise CorruptData(f"{split}: not an .amat file of {PIXELS} binary values per line")
    return digits.reshape(len(lines), PIXELS)


def _read_npz(path: Path, checks: dict[str, SplitCheck]) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as npz:
            packed = {split: npz[split] for split in SPLITS}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, zlib.error) as err:  # zlib: a flipped bit
        raise CorruptData(f"{path}: unreadable ({type(err).__name__}: {err})") from None
    out = {}
    for split, a in packed.items():
        if a.dtype != np.uint8 or a.ndim != 2:
            raise CorruptData(f"{path}: {split} is {a.dtype} {a.shape}, expected packed uint8 rows")
        # Contiguous rows: minibatches gather rows, and the slice alone would leave a stride of 800.
        pixels = np.ascontiguousarray(np.unpackbits(a, axis=1)[:, :PIXELS])
        verify(split, pixels, checks)
        out[split] = pixels
    return out


def _write_npz_atomically(path: Path, splits: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{s: np.packbits(splits[s], axis=1) for s in SPLITS})
    fd, tmp = tempfile.mkstemp(prefix=".binarized_mnist.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(buffer.getvalue())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        return response.read()


def download_binarized_mnist(url: str, checks: dict[str, SplitCheck]) -> dict[str, np.ndarray]:
    """Download and verify the three ``.amat`` splits from ``url`` (a directory URL)."""
    base = url if url.endswith("/") else url + "/"
    out = {}
    for split in SPLITS:
        pixels = parse_amat(_download(f"{base}binarized_mnist_{split}.amat"), split)
        verify(split, pixels, checks)
        out[split] = pixels
    return out


_MEMO: dict[tuple, dict[str, np.ndarray]] = {}


def load_binarized_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    url: str | None = None,
    checks: dict[str, SplitCheck] = MNIST_CHECKS,
    download: bool = True,
) -> dict[str, np.ndarray]:
    """``{"train", "valid", "test"}`` -> uint8 pixels ``(N, 784)``, verified; see the module doc."""
    directory = resolve_data_dir(data_dir)
    path = directory / MNIST_FILE
    url = url or os.environ.get("DGBENCH_MNIST_URL") or MNIST_URL
    problem = None
    if path.exists():
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, tuple(sorted(checks.items())))
        if key in _MEMO:
            return _MEMO[key]
        try:
            splits = _read_npz(path, checks)
            _MEMO[key] = splits
            return splits
        except CorruptData as err:
            problem = f"the cached {path} is corrupt ({err}) and was not used"
    if not download:
        raise DataUnavailable(_missing_message(path, problem or f"{path} does not exist", None))
    try:
        splits = download_binarized_mnist(url, checks)
    except (urllib.error.URLError, OSError, CorruptData) as err:
        raise DataUnavailable(_missing_message(path, problem or f"{path} does not exist", f"download from {url} failed: {err}")) from None
    try:
        _write_npz_atomically(path, splits)
    except OSError as err:
        raise DataUnavailable(f"downloaded binarized MNIST but cannot write {path}: {err}; "
                              "choose a writable directory with --data-dir or DGBENCH_DATA_DIR") from None
    return splits


def _missing_message(path: Path, what: str, download: str | None) -> str:
    parts = [f"binarized MNIST is not available: {what}"]
    if download:
        parts.append(download)
    parts.append(
        f"put {MNIST_FILE} (keys train/valid/test, uint8 rows of 784 pixels packed with np.packbits) "
        f"into {path.parent}, or point --data-dir or DGBENCH_DATA_DIR at a directory that holds it"
    )
    return "; ".join(parts)


DIGITS_SPLIT = (1197, 300, 300)
DIGITS_SEED = 20111  # fixed: the split is part of the data set's definition


def load_digits_binarized() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train", "valid", "test"}`` -> (uint8 pixels ``(N, 64)``, int64 labels ``(N,)``),
    read-only arrays read once per process (scikit-learn parses its CSV on every call)."""
    return dict(_digits_binarized())


def _digits_table() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``(pixels (1797, 64), labels)``, read from the CSV it ships
    without importing it (its import is 0.95 s of a process's start, the file 10 ms);
    through ``sklearn.datasets.load_digits`` where the file is not where it was."""
    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "datasets" / "data" / "digits.csv.gz" if locations else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.data, bunch.target
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int)


@functools.cache
def _digits_binarized() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    data, target = _digits_table()
    pixels = (data >= 8).astype(np.uint8)
    labels = target.astype(np.int64)
    order = np.random.default_rng(DIGITS_SEED).permutation(len(labels))
    out, start = {}, 0
    for split, n in zip(SPLITS, DIGITS_SPLIT):
        index = order[start:start + n]
        out[split] = (pixels[index], labels[index])
        for a in out[split]:
            a.setflags(write=False)
        start += n
    return out
