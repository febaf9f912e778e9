"""Problems trained on minibatches of a data set.

The current minibatch is the problem's batch dimension: ``logits()`` and ``f`` work on
it, :meth:`MinibatchProblem.next_batch` advances it (epochs of a random permutation drawn
from the harness's data generator, which depends on the problem, its options and the
seed, never on the estimator). The first batch, used for gradient statistics at the
initial parameters, is drawn at construction from the construction generator.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dgbench.problems.base import Problem


class MinibatchProblem(Problem):
    batch_dims = 1

    def _set_training_data(self, inputs: Tensor, batch_size: int, generator: torch.Generator,
                           labels: Tensor | None = None, dtype: torch.dtype | None = None) -> None:
        """``inputs`` rows are the examples; ``dtype``: the minibatches' dtype where the
        inputs are stored in another (binary images as bytes: gathering 50 random rows of
        MNIST and converting them costs half of gathering them as float32, whose 157 MB
        miss the cache)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if batch_size > inputs.shape[0]:
            raise ValueError(f"batch_size {batch_size} exceeds the {inputs.shape[0]} training examples")
        self._train_inputs, self._train_labels = inputs, labels
        self._input_dtype = None if dtype == inputs.dtype else dtype
        self._batch_size = batch_size
        self._order = torch.randperm(inputs.shape[0], generator=generator)
        self._position = 0
        self._take(self._order[:batch_size])

    def training_inputs(self) -> Tensor:
        """The whole training set as minibatches see it (in their dtype)."""
        return self._train_inputs if self._input_dtype is None else self._train_inputs.to(self._input_dtype)

    def batch_state(self) -> dict[str, Any]:
        return {"order": self._order.clone(), "position": self._position}

    def load_batch_state(self, state: dict[str, Any]) -> None:
        self._order, self._position = state["order"].to(self._order.device), int(state["position"])
        self._take(self._order[self._position - self._batch_size:self._position])

    def _take(self, index: Tensor) -> None:
        # index_select gathers rows at a third of the cost of advanced indexing on the CPU
        if index.device != self._train_inputs.device:
            index = index.to(self._train_inputs.device)
        x = self._train_inputs.index_select(0, index)
        self.x = x if self._input_dtype is None else x.to(self._input_dtype)
        self.y = None if self._train_labels is None else self._train_labels.index_select(0, index)

    def next_batch(self, generator: torch.Generator) -> None:
        n = self._train_inputs.shape[0]
        if self._position + self._batch_size > n:
            self._order = torch.randperm(n, generator=generator, device=generator.device)
            self._position = 0
        self._take(self._order.narrow(0, self._position, self._batch_size))
        self._position += self._batch_size

    def take_member_batches(self, members: list[Problem]) -> None:
        self.x = torch.stack([m.x for m in members])
        self.y = None if members[0].y is None else torch.stack([m.y for m in members])
