"""Hard attention on cluttered digits: learn where to look.

Data: each bundled 8x8 digit is placed at a random position of a 24x24 canvas, together
with ``clutter`` 4x4 fragments cropped from other digits at random positions (pixels
OR-ed). Canvases are generated once per split from a fixed seed, so they are part of the
data set's definition.

``hard-attention`` (Bernoulli): the canvas is cut into a ``grid x grid`` grid of patches;
an attention network a(x) emits one Bernoulli per patch, ``z ~ Bernoulli(sigmoid(a(x)))``;
a classifier sees only the kept patches (the masked canvas, and the mask itself, so that a
hidden patch differs from an empty one). The objective, maximised, is

    f(z) = log p(y | x * m(z), m(z)) - cost * sum_i z_i,

the classifier's log-likelihood of the label minus ``patch_cost`` nats per kept patch.

``hard-attention-categorical``: the attention network picks one of ``K = grid^2``
overlapping glimpse windows of ``window x window`` pixels on a regular grid,
``z ~ Categorical(softmax(a(x)))``; the classifier sees the glimpse's pixels and its
location, ``f(z) = log p(y | glimpse(x, z), z)``.

The classifier trains pathwise (its parameters are inside f); the attention network gets
its gradient from the estimator under test. ``f`` is differentiable in z (masks and
glimpses are linear in z), so relaxed estimators apply. With ``grid = 3`` the node has
2^9 = 512 (Bernoulli) or 9 (categorical) states per example, so exact gradients come from
enumeration.

Evaluation on the test canvases, with one attention sample per canvas from a fixed
generator: ``test_accuracy``, ``test_objective``, ``test_patches_kept`` (fraction of
patches, Bernoulli) and ``test_digit_coverage`` (fraction of the digit's ink that the
classifier sees).

In the spirit of Mnih et al. (2014), Recurrent Models of Visual Attention, NeurIPS, and
Xu et al. (2015), Show, Attend and Tell, ICML (hard attention trained by REINFORCE).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from problems import latent
from problems.data import SPLITS, load_digits_binarized
from problems.minibatch import MinibatchProblem

CANVAS = 24
DIGIT = 8
FRAGMENT = 4
CLASSES = 10
CANVAS_SEED = 7


def cluttered_canvases(pixels: np.ndarray, labels: np.ndarray, clutter: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(canvases, digit_only)``, each ``(N, 24*24)`` uint8, from 8x8 digits ``(N, 64)``."""
    rng = np.random.default_rng(seed)
    n = pixels.shape[0]
    images = pixels.reshape(n, DIGIT, DIGIT)
    canvases = np.zeros((n, CANVAS, CANVAS), dtype=np.uint8)
    digits = np.zeros_like(canvases)
    for i in range(n):
        for _ in range(clutter):
            j = int(rng.integers(n - 1))
            j += j >= i  # another digit
            cy, cx = rng.integers(DIGIT - FRAGMENT + 1, size=2)
            py, px = rng.integers(CANVAS - FRAGMENT + 1, size=2)
            canvases[i, py:py + FRAGMENT, px:px + FRAGMENT] |= images[j, cy:cy + FRAGMENT, cx:cx + FRAGMENT]
        oy, ox = rng.integers(CANVAS - DIGIT + 1, size=2)
        digits[i, oy:oy + DIGIT, ox:ox + DIGIT] = images[i]
        canvases[i] |= digits[i]
    return canvases.reshape(n, -1), digits.reshape(n, -1)


class HardAttentionBase(MinibatchProblem):
    minimize = False
    differentiable = True

    def _build(self, *, glimpses: int, clutter: int, hidden: int, batch_size: int, dtype: torch.dtype,
               device: str | torch.device) -> None:
        if clutter < 0 or hidden < 1:
            raise ValueError(f"clutter must be >= 0 and hidden >= 1, got clutter={clutter}, hidden={hidden}")
        digits = load_digits_binarized()
        self._splits = {}
        for s, split in enumerate(SPLITS):
            pixels, labels = digits[split]
            canvases, ink = cluttered_canvases(pixels, labels, clutter, CANVAS_SEED + s)
            self._splits[split] = tuple(
                torch.as_tensor(a).to(device=device, dtype=dtype) for a in (canvases, ink)
            ) + (torch.as_tensor(labels, device=device),)
        self.attention = nn.Sequential(nn.Linear(CANVAS * CANVAS, hidden), nn.ReLU(), nn.Linear(hidden, glimpses))
        self.classifier = nn.Sequential(nn.Linear(self.view_features(), hidden), nn.ReLU(), nn.Linear(hidden, CLASSES))
        self.to(device=device, dtype=dtype)
        train_x, _, train_y = self._splits["train"]
        self._set_training_data(train_x, batch_size, train_y)

    # Subclasses: what the classifier sees for a (possibly relaxed) attention sample.
    def view_features(self) -> int:
        raise NotImplementedError

    def view(self, x: Tensor, z: Tensor) -> Tensor:
        raise NotImplementedError

    def seen(self, z: Tensor) -> Tensor:
        """The pixel mask ``(..., 576)`` the classifier sees for hard ``z``."""
        raise NotImplementedError

    def cost(self, z: Tensor) -> Tensor:
        return torch.zeros(z.shape[: z.dim() - (1 if self.family == "bernoulli" else 2)], dtype=z.dtype, device=z.device)

    def attend(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def objective_value(self, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        log_p = torch.log_softmax(self.classifier(self.view(x, z)), -1)
        return (log_p * F.one_hot(y, CLASSES).to(log_p.dtype)).sum(-1) - self.cost(z)

    # The problem contract -------------------------------------------------------------

    def logits(self) -> Tensor:
        return self.attend(self.x)

    def logit_parameters(self) -> dict[str, nn.Parameter]:
        return {f"attention.{k}": v for k, v in self.attention.named_parameters()}

    def f(self, z: Tensor) -> Tensor:
        return self.objective_value(self.x, self.y, z)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        x, ink, y = self._splits["test"]
        generator = torch.Generator(device=x.device).manual_seed(0)
        logits = self.attend(x)
        z = latent.sample(self.family, logits, 1, generator)[0]
        correct = self.classifier(self.view(x, z)).argmax(-1) == y
        seen = self.seen(z)
        out = {
            "test_accuracy": float(correct.to(torch.float64).mean()),
            "test_objective": float(self.objective_value(x, y, z).to(torch.float64).mean()),
            "test_digit_coverage": float(((seen * ink).sum(-1) / ink.sum(-1).clamp_min(1)).to(torch.float64).mean()),
        }
        if self.family == "bernoulli":
            out["test_patches_kept"] = float(z.to(torch.float64).mean())
        return out


class HardAttention(HardAttentionBase):
    id = "hard-attention"
    family = "bernoulli"
    description = "Bernoulli mask over a grid of patches of a cluttered-digit canvas; classifier sees kept patches"

    def __init__(self, *, grid: int = 3, patch_cost: float = 0.1, clutter: int = 4, hidden: int = 128,
                 batch_size: int = 32, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        super().__init__()
        if grid < 1 or CANVAS % grid:
            raise ValueError(f"grid must divide the canvas size {CANVAS}, got {grid}")
        if patch_cost < 0:
            raise ValueError(f"patch_cost must be >= 0, got {patch_cost}")
        self.grid, self.patch_cost, self.clutter, self.hidden, self.batch_size = grid, patch_cost, clutter, hidden, batch_size
        self._build(glimpses=grid * grid, clutter=clutter, hidden=hidden, batch_size=batch_size, dtype=dtype, device=device)

    def view_features(self) -> int:
        return 2 * CANVAS * CANVAS

    def seen(self, z: Tensor) -> Tensor:
        g, p = self.grid, CANVAS // self.grid
        lead = z.shape[:-1]
        blocks = z.reshape(*lead, g, 1, g, 1).expand(*lead, g, p, g, p)
        return blocks.reshape(*lead, CANVAS * CANVAS)

    def view(self, x: Tensor, z: Tensor) -> Tensor:
        mask = self.seen(z)
        return torch.cat([x * mask, mask], -1)

    def cost(self, z: Tensor) -> Tensor:
        return self.patch_cost * z.sum(-1)

    def attend(self, x: Tensor) -> Tensor:
        return self.attention(x)


class HardAttentionCategorical(HardAttentionBase):
    id = "hard-attention-categorical"
    family = "categorical"
    description = "Choose one of grid^2 glimpse windows of a cluttered-digit canvas; classifier sees the glimpse"

    def __init__(self, *, grid: int = 3, window: int = 14, clutter: int = 4, hidden: int = 128,
                 batch_size: int = 32, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        super().__init__()
        if grid < 2 or not DIGIT <= window <= CANVAS or (CANVAS - window) % (grid - 1):
            raise ValueError(f"need grid >= 2, {DIGIT} <= window <= {CANVAS} and (24 - window) divisible "
                             f"by grid - 1; got grid={grid}, window={window}")
        self.grid, self.window, self.clutter, self.hidden, self.batch_size = grid, window, clutter, hidden, batch_size
        stride = (CANVAS - window) // (grid - 1)
        index = torch.arange(CANVAS * CANVAS).reshape(CANVAS, CANVAS)
        windows = [index[r * stride:r * stride + window, c * stride:c * stride + window].reshape(-1)
                   for r in range(grid) for c in range(grid)]
        self.register_buffer("window_index", torch.stack(windows))  # (K, window^2)
        self._build(glimpses=grid * grid, clutter=clutter, hidden=hidden, batch_size=batch_size, dtype=dtype, device=device)

    def view_features(self) -> int:
        return self.window**2 + self.grid**2

    def view(self, x: Tensor, z: Tensor) -> Tensor:
        choice = z.squeeze(-2)  # (..., B, K)
        patches = x[..., self.window_index]  # (B, K, window^2)
        glimpse = (choice.unsqueeze(-1) * patches).sum(-2)
        return torch.cat([glimpse, choice], -1)

    def seen(self, z: Tensor) -> Tensor:
        masks = torch.zeros(self.grid**2, CANVAS * CANVAS, dtype=z.dtype, device=z.device)
        masks.scatter_(1, self.window_index, 1.0)
        return z.squeeze(-2) @ masks

    def attend(self, x: Tensor) -> Tensor:
        return self.attention(x).unsqueeze(-2)

