"""Hard attention on cluttered digits: learn where to look.

Data: the canvas is a ``grid x grid`` array of 8x8 cells (24x24 pixels for grid 3). Each
bundled digit is placed in a random cell; ``clutter`` 4x4 fragments cropped from other
digits are placed at random offsets inside random other cells (pixels OR-ed). Canvases are
generated once per split from a fixed seed, so they are part of the data set's definition;
the training split holds ``copies`` canvases of each training digit (different cells and
clutter), so that a classifier cannot do well by memorising clutter.

The classifier sees only what attention selects, through a patch encoder phi shared by all
cells (so that what it learns about a digit does not depend on where the digit is):

``hard-attention`` (Bernoulli): an attention network a(x) emits one Bernoulli per cell,
``z ~ Bernoulli(sigmoid(a(x)))``; the classifier sees ``h = sum_i z_i phi(patch_i)``. The
objective, maximised, is

    f(z) = log p(y | h(z)) - cost * sum_i z_i,

the classifier's log-likelihood of the label minus ``patch_cost`` nats per kept patch: the
best policy keeps exactly the digit's cell. The default cost, 0.01 nats, is small enough
that a deterministic gradient does not shut every cell before the classifier has learned
anything: at 0.05 the exact gradient (and straight-through) drove every keep probability
to 0 within 50 Adam steps at lr 1e-2, 1e-3 and 1e-4 (an empty mask, test accuracy at
chance, 0.08-0.12, with saturated logits that no gradient revives), while REINFORCE's
noisy gradient kept exploring (0.82). At 0.01 the exact gradient finds the one-cell policy
(9 cells, 12% kept, 99% of the digit's ink seen, test accuracy 0.90-0.92 after 400 steps
at lr 1e-2 on two of three seeds; 0.77 on the third, a local optimum).

``hard-attention-categorical``: the attention network picks one cell,
``z ~ Categorical(softmax(a(x)))`` (``K = grid^2`` classes), and the classifier sees that
glimpse, ``f(z) = log p(y | phi(sum_k z_k patch_k))``.

The classifier (phi and its head) trains pathwise, its parameters being inside f; the
attention network gets its gradient from the estimator under test. f is differentiable in
z (linear in z before the head), so relaxed estimators apply. With ``grid = 3`` the node
has 2^9 = 512 (Bernoulli) or 9 (categorical) states per example, so exact gradients come
from enumeration.

Evaluation on the test canvases, with one attention sample per canvas from a fixed
generator: ``test_accuracy``, ``test_objective``, ``test_patches_kept`` (fraction of
cells, Bernoulli) and ``test_digit_coverage`` (fraction of the digit's ink the classifier
sees).

In the spirit of Mnih et al. (2014), Recurrent Models of Visual Attention, NeurIPS, and
Xu et al. (2015), Show, Attend and Tell, ICML (hard attention trained by REINFORCE).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgbench.domains import Integer, Real
from dgbench.nodes import get_node
from dgbench.problems.base import Score, builtin
from dgbench.problems.data import SPLITS, load_digits_binarized
from dgbench.problems.layers import default_generator, linear
from dgbench.problems.minibatch import MinibatchProblem

CELL = 8
FRAGMENT = 4
CLASSES = 10
CANVAS_SEED = 7


def cluttered_canvases(pixels: np.ndarray, grid: int, clutter: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(canvases, digit_only)``, each ``(N, (8 grid)^2)`` uint8, from 8x8 digits ``(N, 64)``."""
    rng = np.random.default_rng(seed)
    n, side = pixels.shape[0], CELL * grid
    images = pixels.reshape(n, CELL, CELL)
    canvases = np.zeros((n, side, side), dtype=np.uint8)
    digits = np.zeros_like(canvases)
    for i in range(n):
        cell = int(rng.integers(grid * grid))
        others = [c for c in range(grid * grid) if c != cell]
        for _ in range(clutter if others else 0):
            j = int(rng.integers(n - 1))
            j += j >= i  # another digit
            cy, cx = rng.integers(CELL - FRAGMENT + 1, size=2)
            target = others[int(rng.integers(len(others)))]
            py = (target // grid) * CELL + int(rng.integers(CELL - FRAGMENT + 1))
            px = (target % grid) * CELL + int(rng.integers(CELL - FRAGMENT + 1))
            canvases[i, py:py + FRAGMENT, px:px + FRAGMENT] |= images[j, cy:cy + FRAGMENT, cx:cx + FRAGMENT]
        oy, ox = (cell // grid) * CELL, (cell % grid) * CELL
        digits[i, oy:oy + CELL, ox:ox + CELL] = images[i]
        canvases[i] |= digits[i]
    return canvases.reshape(n, -1), digits.reshape(n, -1)


@functools.lru_cache(maxsize=8)
def split_canvases(split: str, grid: int, clutter: int, copies: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(canvases, digit_only, labels)`` of one split, read-only: a fixed function of the
    options (the canvas seed is part of the data set), so a worker builds each once rather
    than once per cell (a Python loop over every digit: about 0.7 s for the three splits)."""
    pixels, labels = load_digits_binarized()[split]
    if split == "train":  # several canvases per training digit: other cells, other clutter
        pixels, labels = np.tile(pixels, (copies, 1)), np.tile(labels, copies)
    arrays = (*cluttered_canvases(pixels, grid, clutter, CANVAS_SEED + SPLITS.index(split)), labels)
    for a in arrays:
        a.setflags(write=False)
    return arrays


class HardAttentionBase(MinibatchProblem):
    option_domains = {"grid": Integer(2), "clutter": Integer(0), "copies": Integer(1), "hidden": Integer(1),
                      "batch_size": Integer(1), "patch_cost": Real(0.0)}
    minimize = False
    scores = (Score("test_accuracy", "test accuracy (fraction)", higher_is_better=True),
              Score("test_objective", "test objective at hard attention (nats)", higher_is_better=True))
    differentiable = True

    def _build(self, *, grid: int, clutter: int, copies: int, hidden: int, batch_size: int, dtype: torch.dtype,
               device: str | torch.device, generator: torch.Generator) -> None:
        if grid < 2:
            raise ValueError(f"grid must be >= 2, got {grid}")
        if copies < 1:
            raise ValueError(f"copies must be >= 1, got {copies}")
        if clutter < 0 or hidden < 1:
            raise ValueError(f"clutter must be >= 0 and hidden >= 1, got clutter={clutter}, hidden={hidden}")
        self.grid, self.clutter, self.copies, self.hidden, self.batch_size = grid, clutter, copies, hidden, batch_size
        side = CELL * grid
        self._splits = {}
        for split in SPLITS:
            canvases, ink, labels = split_canvases(split, grid, clutter, copies)
            self._splits[split] = tuple(torch.tensor(a, device=device, dtype=dtype) for a in (canvases, ink)) + (
                torch.tensor(labels, device=device),)
        index = torch.arange(side * side).reshape(grid, CELL, grid, CELL).permute(0, 2, 1, 3)
        self.register_buffer("cell_index", index.reshape(grid * grid, CELL * CELL))  # (K, 64)
        self.attention = nn.Sequential(linear(side * side, hidden, generator), nn.ReLU(), linear(hidden, grid * grid, generator))
        self.patch_encoder = nn.Sequential(linear(CELL * CELL, hidden, generator), nn.ReLU())
        self.head = linear(hidden, CLASSES, generator)
        self.to(device=device, dtype=dtype)
        train_x, _, train_y = self._splits["train"]
        self._set_training_data(train_x, batch_size, generator, train_y)

    def choice(self, z: Tensor) -> Tensor:
        """Per-cell weights ``(..., K)`` of a (possibly relaxed) attention sample."""
        return z if self.family == "bernoulli" else z.squeeze(-2)

    def cost(self, z: Tensor) -> Tensor:
        return torch.zeros(z.shape[: z.dim() - get_node(self.family).event_dims], dtype=z.dtype, device=z.device)

    def objective_value(self, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        """``log p(y | sum_k w_k phi(patch_k)) - cost(z)`` with ``w = choice(z)``."""
        features = self.patch_encoder(x[..., self.cell_index])  # (B, K, hidden)
        seen = torch.einsum("...bk,bkh->...bh", self.choice(z), features)
        log_p = torch.log_softmax(self.head(seen), -1)
        return (log_p * F.one_hot(y, CLASSES).to(log_p.dtype)).sum(-1) - self.cost(z)

    def seen(self, z: Tensor) -> Tensor:
        """The pixels ``(..., side^2)`` the classifier sees for hard ``z`` (1: seen)."""
        k, side2 = self.grid**2, (CELL * self.grid) ** 2
        masks = torch.zeros(k, side2, dtype=z.dtype, device=z.device)
        masks.scatter_(1, self.cell_index, 1.0)
        return self.choice(z) @ masks

    # The problem contract -------------------------------------------------------------

    def logits(self) -> Tensor:
        out = self.attention(self.x)
        return out if self.family == "bernoulli" else out.unsqueeze(-2)

    def logit_parameters(self) -> dict[str, nn.Parameter]:
        return {f"attention.{k}": v for k, v in self.attention.named_parameters()}

    def f(self, z: Tensor) -> Tensor:
        return self.objective_value(self.x, self.y, z)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        x, ink, y = self._splits["test"]
        generator = torch.Generator(device=x.device).manual_seed(0)
        logits = self.attention(x)
        if self.family == "categorical":
            logits = logits.unsqueeze(-2)
        z = get_node(self.family).sample(logits, 1, generator)[0]
        features = torch.einsum("bk,bkh->bh", self.choice(z), self.patch_encoder(x[..., self.cell_index]))
        correct = self.head(features).argmax(-1) == y
        seen = self.seen(z)
        out = {
            "test_accuracy": float(correct.to(torch.float64).mean()),
            "test_objective": float(self.objective_value(x, y, z).to(torch.float64).mean()),
            "test_digit_coverage": float(((seen * ink).sum(-1) / ink.sum(-1).clamp_min(1)).to(torch.float64).mean()),
        }
        if self.family == "bernoulli":
            out["test_patches_kept"] = float(z.to(torch.float64).mean())
        return out


@builtin
class HardAttention(HardAttentionBase):
    id = "hard-attention"
    test_options = {"hidden": 2, "batch_size": 2}  # small enough for the generic tests
    family = "bernoulli"
    description = "Bernoulli mask over the cells of a cluttered-digit canvas; the classifier sees the kept cells"

    def __init__(self, *, grid: int = 3, patch_cost: float = 0.01, clutter: int = 4, copies: int = 4,
                 hidden: int = 64, batch_size: int = 32, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if patch_cost < 0:
            raise ValueError(f"patch_cost must be >= 0, got {patch_cost}")
        self.patch_cost = patch_cost
        self._build(grid=grid, clutter=clutter, copies=copies, hidden=hidden, batch_size=batch_size, dtype=dtype, device=device,
                    generator=default_generator(generator))

    def cost(self, z: Tensor) -> Tensor:
        return self.patch_cost * z.sum(-1)


@builtin
class HardAttentionCategorical(HardAttentionBase):
    id = "hard-attention-categorical"
    test_options = {"hidden": 2, "batch_size": 2}  # small enough for the generic tests
    family = "categorical"
    description = "Choose one cell of a cluttered-digit canvas to look at; the classifier sees that glimpse"

    def __init__(self, *, grid: int = 3, clutter: int = 4, copies: int = 4, hidden: int = 64, batch_size: int = 32,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self._build(grid=grid, clutter=clutter, copies=copies, hidden=hidden, batch_size=batch_size, dtype=dtype, device=device,
                    generator=default_generator(generator))
