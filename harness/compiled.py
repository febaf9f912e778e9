"""Training steps whose objective estimate runs as one compiled graph: a suite's
``[training] compile = true`` (or ``"auto"``: for cells of at least :data:`AUTO_STEPS`
steps).

``torch.compile`` (inductor) fuses the estimate's elementwise work and the autograd graph
around it; the GEMMs, the backward pass's accumulation, the finiteness check and the fused
Adam step are what they are eagerly. On the 784-200 Bernoulli VAE, one CPU thread, a step
takes 0.75-0.94 of the eager one, after 0.2-7 s of compiling (``benchmarks/compiled_step.py``,
measurements in ``benchmarks/measurements/2026-12-07-main-job-and-step.md``): a compilation
pays for itself only after hundreds to thousands of steps, so dgbench does not compile by
default.

A random op inside the graph would draw other noise than the eager step, so none is there.
The first step runs eagerly through a :class:`~dgbench.noise.RecordingNoise`, which notes
the shape of each draw (every estimator draws through :func:`dgbench.noise.uniform`,
tested for each). Every later step draws those shapes from the cell's generator, in the
same order, before the graph runs, and hands them in through a
:class:`~dgbench.noise.PreDrawnNoise`. A compiled cell therefore sees the eager cell's noise
and differs from it only in float rounding.

Only stateless estimators are compiled (no parameters, no buffers: :func:`state_refusal`
says why the others are not). An estimator with state of its own, an estimate that is not
one graph (an estimator calling ``torch.autograd.grad`` inside it, MuProp's for one), or a
machine without the compiler inductor needs: the cell trains eagerly on the same noise.
The cell's ``compiled`` metric says which happened (1 or 0), and
:attr:`CompiledLoss.reason` says why.
"""

from __future__ import annotations

import shutil
from typing import Any

import torch
from torch import Tensor

from dgbench.estimators.base import state_names
from dgbench.noise import PreDrawnNoise, RecordingNoise, predraw

AUTO_STEPS = 20_000  # "auto" compiles cells of at least this many steps


def wanted(settings: dict[str, Any]) -> bool:
    """Whether a training cell with ``settings`` asks to compile its estimate."""
    value = settings.get("compile", False)
    return value is True or (value == "auto" and settings.get("steps", 0) >= AUTO_STEPS)


def refusal(device: torch.device) -> str | None:
    """Why this machine cannot compile for ``device``, or None when it can."""
    if device.type == "cpu":
        import torch._inductor.config  # noqa: F401  (loaded on first use: it is not part of `import torch`)

        candidates = [c for c in torch._inductor.config.cpp.cxx if c]  # inductor's search order
        if not any(shutil.which(c) for c in candidates):
            return f"no C++ compiler on the PATH ({', '.join(candidates)}; inductor's CPU backend needs one)"
        return None
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "triton is not installed (inductor's CUDA backend needs it)"
    return f"no compiled training on {device.type}"


def state_refusal(estimators: torch.nn.ModuleDict) -> str | None:
    """Why estimators with state of their own are not compiled, or None for stateless ones.

    A compiled graph can read a buffer's value as a constant (REINFORCE-EMA's bias
    correction ``1 - decay ** int(updates)`` then stops following its updates, silently), and
    an auxiliary loss that leaves the graph (NVIL's baseline network) cannot be
    differentiated after the main backward pass has freed the graph's saved tensors."""
    state = state_names(estimators)
    if state:
        return f"the estimator keeps state of its own ({', '.join(state[:3])}{', ...' if len(state) > 3 else ''})"
    return None


class CompiledLoss:
    """``problem.loss(estimators, generator)`` with the estimate compiled (module docstring);
    a drop-in ``loss_fn`` for :func:`dgbench.harness.training.forward_backward`."""

    def __init__(self, problem: Any, estimators: torch.nn.ModuleDict, device: torch.device) -> None:
        self.problem, self.estimators = problem, estimators
        self.draws: list | None = None
        self.reason = refusal(device) or state_refusal(estimators)
        self.graph = None
        if self.reason is None:
            import torch._inductor.config

            torch._inductor.config.compile_threads = 1  # no pool of compiling processes inside a worker

            def estimate(tensors: list[Tensor]) -> Tensor:
                return problem.loss(estimators, PreDrawnNoise(tensors))

            # dynamo keeps its compiled graphs, and its limit of 8 recompilations, per code
            # object: each cell's function gets its own, so that the cells of a worker (or of a
            # threaded Dask worker, at once) neither recompile nor evict one another's.
            estimate.__code__ = estimate.__code__.replace()
            self.graph = torch.compile(estimate, fullgraph=True)

    @property
    def compiled(self) -> bool:
        """Whether the steps after the first run the compiled graph."""
        return self.graph is not None

    def __call__(self, generator: torch.Generator) -> Tensor:
        if self.draws is None:
            recording = RecordingNoise(generator)
            loss = self.problem.loss(self.estimators, recording)
            self.draws = recording.draws
            return loss
        tensors = predraw(self.draws, generator)
        if self.graph is not None:
            try:
                return self.graph(tensors)
            except Exception as err:  # noqa: BLE001  (dynamo's refusals come in many types)
                if not _is_compile_error(err):
                    raise
                self.graph, self.reason = None, f"not one graph: {type(err).__name__}: {_first_line(err)}"
        return self.problem.loss(self.estimators, PreDrawnNoise(tensors))


def _is_compile_error(err: Exception) -> bool:
    """An error of dynamo or inductor (the estimate could not be compiled), not one the
    eager estimate would raise too."""
    module = type(err).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor", "torch.fx", "torch._subclasses"))


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else ""
