"""The data sets as tensors, by name: ``"mnist"`` (binarized MNIST) or ``"digits"`` (bundled)."""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench.problems.data import load_binarized_mnist, load_digits_binarized

DATASETS = ("mnist", "digits")


def prepare(name: str) -> None:
    """Download (if needed) and verify data set ``name``; raises ``DataUnavailable``."""
    if name == "mnist":
        load_binarized_mnist()
    elif name != "digits":
        raise ValueError(f"unknown data set {name!r}; expected one of {DATASETS}")


def image_splits(name: str, dtype: torch.dtype, device: torch.device | str) -> dict[str, Tensor]:
    """``{"train", "valid", "test"}`` -> binary images as rows ``(N, pixels)`` of ``dtype``
    (``torch.uint8``: the pixels as stored, a quarter of float32's memory; a problem keeps
    its training set so and converts each minibatch, :mod:`dgbench.problems.minibatch`).

    The bytes are converted to tensors once per process and device and shared by every
    problem built on them (read only: nothing writes to a data set); other dtypes are
    fresh copies."""
    stored = _byte_splits(name, torch.device(device))
    if dtype == torch.uint8:
        return dict(stored)
    return {split: t.to(dtype) for split, t in stored.items()}


def training_mean(name: str, dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """The mean image of the training split, as ``dtype`` (a fresh tensor: a problem keeps
    it as a buffer). Computed once per process: a column mean over MNIST's bytes takes
    80 ms, longer than the rest of building a VAE."""
    device = torch.device(device)
    stored = _byte_splits(name, device)
    key = (name, dtype, device)
    if key not in _MEANS or _MEANS[key][0] is not stored["train"]:
        _MEANS[key] = (stored["train"], stored["train"].mean(0, dtype=dtype))
    return _MEANS[key][1].clone()


# (name, device) -> (the loader's arrays, their tensors); (name, dtype, device) -> (the
# training tensor, its mean). Keyed by the source too, so that a data file replaced on
# disk (the loader memoises by path, size and time) is converted anew.
_SPLITS: dict[tuple[str, torch.device], tuple[dict, dict[str, Tensor]]] = {}
_MEANS: dict[tuple[str, torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}


def _byte_splits(name: str, device: torch.device) -> dict[str, Tensor]:
    if name == "mnist":
        arrays = load_binarized_mnist()
    elif name == "digits":
        arrays = {split: pixels for split, (pixels, _) in load_digits_binarized().items()}
    else:
        raise ValueError(f"unknown data set {name!r}; expected one of {DATASETS}")
    cached = _SPLITS.get((name, device))
    if cached is None or any(cached[0].get(k) is not a for k, a in arrays.items()):
        # Row-major: a minibatch gathers whole rows (column-major storage made every gather
        # of 50 MNIST rows ten times slower).
        tensors = {split: torch.tensor(a, device=device, dtype=torch.uint8).contiguous() for split, a in arrays.items()}
        _SPLITS[(name, device)] = cached = (dict(arrays), tensors)
    return cached[1]
