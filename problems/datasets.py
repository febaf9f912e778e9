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
    its training set so and converts each minibatch, :mod:`dgbench.problems.minibatch`)."""
    if name == "mnist":
        arrays = load_binarized_mnist()
    elif name == "digits":
        arrays = {split: pixels for split, (pixels, _) in load_digits_binarized().items()}
    else:
        raise ValueError(f"unknown data set {name!r}; expected one of {DATASETS}")
    # Row-major: a minibatch gathers whole rows (column-major storage made every gather of
    # 50 MNIST rows ten times slower).
    return {split: torch.tensor(a, device=device, dtype=dtype).contiguous() for split, a in arrays.items()}
