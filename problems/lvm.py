"""Evaluation shared by the latent-variable models (VAEs, sigmoid belief networks).

A model supplies ``log_weights(x, samples, generator)``: ``log p(x, h) - log q(h | x)``
for ``samples`` draws ``h ~ q(h | x)`` per example, shape ``(samples, N)``. From it:

    ELBO  = mean_i log w_i                          (a sample mean, unbiased)
    IWAE_k = log (1/k) sum_i w_i                    (Burda et al., 2016: the k-sample
                                                     importance-weighted bound)

reported per example, averaged over a split. Both come from the same k draws and are
computed in batches of examples so that memory stays bounded; the draws come from a fixed
generator, so the evaluation is a deterministic function of the parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench.domains import Choice, Integer, SubsetOf
from dgbench.problems.base import Score
from dgbench.problems.datasets import DATASETS
from dgbench.problems.latent import logmeanexp
from dgbench.problems.minibatch import MinibatchProblem

# Examples times samples evaluated at once.
EVAL_ELEMENTS = 2**14
EVAL_SEED = 0
TRAIN_EVAL_EXAMPLES = 10_000


class LatentVariableModel(MinibatchProblem):
    option_domains = {"latents": Integer(1), "categories": Integer(2), "layers": Integer(1),
                      "batch_size": Integer(1), "bound_samples": Integer(1), "iw_samples": Integer(1),
                      "eval_examples": Integer(0), "valid_iw_samples": Integer(0), "dataset": Choice(DATASETS),
                      "eval_splits": SubsetOf(("train", "valid", "test", "train_full"))}
    minimize = False
    # Ranked on the held-out ELBO (what the papers' tables report); IWAE-k is shown beside it.
    scores = (Score("test_elbo", "test ELBO (nats per example)", higher_is_better=True),
              Score("test_iwae", "test IWAE-k bound (nats per example)", higher_is_better=True))
    selection = "valid_elbo"  # grids select on validation, as the papers' protocols do

    def _set_evaluation(self, splits: dict[str, Tensor], iw_samples: int, eval_examples: int,
                        eval_splits: str = "train,valid,test", valid_iw_samples: int = 0,
                        dtype: torch.dtype | None = None) -> None:
        """Evaluation sets: a fixed subset of ``train`` (at most 10,000), ``valid`` and ``test``,
        those of them named in ``eval_splits`` (a protocol evaluates only what it reports).
        ``train_full`` in ``eval_splits`` adds the single-sample ELBO over the whole training
        set (``train_full_elbo``; one draw per example, as papers report the train ELBO).

        ``eval_examples > 0`` caps every split (quick runs); 0 evaluates them whole.
        ``valid_iw_samples > 0``: the validation bound's samples (a grid selects on it at
        every point, the test bound is computed at the selected point only, so a cheaper
        selection bound is what a tuned protocol can afford); 0: ``iw_samples``.
        ``dtype``: the evaluation sets' dtype where ``splits`` are stored in another (bytes);
        only the rows evaluated are converted.
        """
        if iw_samples < 1:
            raise ValueError(f"iw_samples must be >= 1, got {iw_samples}")
        if eval_examples < 0:
            raise ValueError(f"eval_examples must be >= 0 (0: all), got {eval_examples}")
        chosen = [s for s in str(eval_splits).replace(" ", "").split(",") if s]
        unknown = sorted(set(chosen) - {*splits, "train_full"})
        if unknown or not chosen:
            raise ValueError(f"eval_splits must name some of {', '.join([*splits, 'train_full'])}, got {eval_splits!r}")
        self.eval_splits = eval_splits
        caps = {"train": TRAIN_EVAL_EXAMPLES, "valid": None, "test": None}
        self._eval_sets = {}
        for split, data in ((k, v) for k, v in splits.items() if k in chosen):
            n = data.shape[0]
            for cap in (caps.get(split), eval_examples or None):
                if cap is not None:
                    n = min(n, cap)
            self._eval_sets[split] = data[:n].to(dtype or data.dtype)
        self._train_full = (splits["train"][: eval_examples or None].to(dtype or splits["train"].dtype)
                            if "train_full" in chosen else None)
        if valid_iw_samples < 0:
            raise ValueError(f"valid_iw_samples must be >= 0 (0: iw_samples), got {valid_iw_samples}")
        self._iw_samples = iw_samples
        self._split_samples = {"valid": valid_iw_samples} if valid_iw_samples else {}

    def evaluation_splits(self) -> tuple[str, ...]:
        return tuple(self._eval_sets) + (("train_full",) if self._train_full is not None else ())

    def restrict_evaluation(self, splits: set[str]) -> None:
        self._eval_sets = {k: v for k, v in self._eval_sets.items() if k in splits}
        if "train_full" not in splits:
            self._train_full = None

    def evaluation_examples(self, split: str | None = None) -> float:
        """Examples one :meth:`evaluate` draws ``iw_samples`` for, of every split or of
        ``split`` (the cost model scales by it): a split with its own number of samples
        counts in proportion, the one-sample ``train_full`` ELBO as ``1 / iw_samples``."""
        sizes = {k: (int(v.shape[0]), self.samples_of(k)) for k, v in self._eval_sets.items()}
        if self._train_full is not None:
            sizes["train_full"] = (int(self._train_full.shape[0]), 1)
        return sum(n * samples / self._iw_samples for k, (n, samples) in sizes.items() if split in (None, k))

    def samples_of(self, split: str) -> int:
        """The importance samples of ``split``'s bound."""
        return self._split_samples.get(split, self._iw_samples)

    def log_weights(self, x: Tensor, samples: int, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def bounds(self, x: Tensor, samples: int) -> tuple[float, float]:
        """``(ELBO, IWAE_samples)`` per example, averaged over the rows of ``x``."""
        generator = torch.Generator(device=x.device).manual_seed(EVAL_SEED)
        batch = max(1, EVAL_ELEMENTS // samples)
        elbo, iwae = 0.0, 0.0
        for start in range(0, x.shape[0], batch):
            log_w = self.log_weights(x[start:start + batch], samples, generator).to(torch.float64)
            elbo += float(log_w.mean(0).sum())
            iwae += float(logmeanexp(log_w, 0).sum())
        n = x.shape[0]
        return elbo / n, iwae / n

    def evaluate(self) -> dict[str, float]:
        out = {}
        for split, data in self._eval_sets.items():
            if data.shape[0] == 0:
                continue
            elbo, iwae = self.bounds(data, self.samples_of(split))
            out[f"{split}_elbo"] = elbo
            out[f"{split}_iwae"] = iwae
        if self._train_full is not None:
            out["train_full_elbo"] = self.bounds(self._train_full, 1)[0]
        return out
