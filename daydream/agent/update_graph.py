"""The learner's whole update captured once as a CUDA graph and replayed (`cuda_graph: true`).

An eager update launches tens of thousands of small kernels from Python, and at DreamerV3's
batch (16 x 64) the GPU waits on the host: on an H200 the 12M update took as long at 50M
parameters (benchmarks/RESULTS.md). Captured, an update is one graph launch: the batch is
copied into static input buffers, the graph replays every kernel of the world model's,
actor's and critic's losses, backward passes and optimiser steps, and the metrics come back
through one static vector.

What the agent guarantees for this: fixed batch shapes (a batch of another shape is refused,
not silently recaptured), no host syncs in the update (`benchmarks/check_cuda.py` counts
them), optimisers whose step counts and learning rates live on the device
(`ClippedAdam(capturable=True)`, their warm-up applied outside the graph), and noise drawn on
the device from torch's default generator, which a graph capture registers (each replay draws
afresh).

The first `warmup` updates run eagerly (on a side stream on CUDA, as torch's capture notes
ask) so that lazily made state (optimiser moments, cuBLAS workspaces) exists before the
capture. `capture` is how the graph is made; tests on a CPU pass an eager stand-in that
re-runs the captured function on the static buffers, so this module's bookkeeping is the
code they test.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch
from torch import Tensor

log = logging.getLogger(__name__)

Update = Callable[[dict[str, Tensor]], dict[str, Tensor]]
# capture(body) runs `body` under capture and returns the replay: a call that redoes its work
Capture = Callable[[Callable[[], None]], Callable[[], None]]


def cuda_capture(body: Callable[[], None]) -> Callable[[], None]:
    """Capture `body`'s kernels in a CUDA graph (torch's private memory pool); returns its replay."""
    graph = torch.cuda.CUDAGraph()
    # thread_local: the learner's prefetch thread may copy the next batch to the GPU meanwhile
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        body()
    return graph.replay


class UpdateGraph:
    """Wraps `update` (a batch of device tensors in, scalar metric tensors out): eager for the
    first `warmup` calls, then captured and replayed. Returned metrics are the caller's to keep
    (a copy of the graph's output, not overwritten by the next replay)."""

    def __init__(self, update: Update, warmup: int = 3, capture: Capture | None = None) -> None:
        if warmup < 1:
            raise ValueError(f"an update graph needs at least 1 eager warm-up update before its capture, got {warmup}")
        self.update, self.warmup = update, warmup
        self.capture = capture or cuda_capture
        self.on_cuda = capture is None
        self.warmed = 0
        self.capture_s: float | None = None  # seconds the (last) capture took, for benchmarks
        self._replay: Callable[[], None] | None = None
        self._static: dict[str, Tensor] = {}
        self._keys: list[str] = []
        self._out: Tensor | None = None

    @property
    def captured(self) -> bool:
        return self._replay is not None

    def reset(self) -> None:
        """Forget the graph (it holds the addresses of tensors that were replaced, e.g. optimiser
        state loaded from a checkpoint); the next call captures afresh, without more warm-up."""
        self._replay, self._static, self._out = None, {}, None

    def __call__(self, data: dict[str, Tensor]) -> dict[str, Tensor]:
        if self._replay is None:
            if self.warmed < self.warmup:
                self.warmed += 1
                return self._eager(data)
            self._capture(data)
        else:
            self._load(data)
        assert self._replay is not None
        self._replay()
        assert self._out is not None
        values = self._out.clone()  # one copy: the next replay rewrites the graph's output
        return {key: values[i] for i, key in enumerate(self._keys)}

    def _eager(self, data: dict[str, Tensor]) -> dict[str, Tensor]:
        if not self.on_cuda:
            return self.update(data)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            metrics = self.update(data)
        # warm-up only: a full sync keeps the side stream's memory out of the main stream's way
        torch.cuda.synchronize()
        return metrics

    def _body(self) -> None:
        metrics = self.update(self._static)
        self._keys = list(metrics)
        self._out = torch.stack([value.detach().float().reshape(()) for value in metrics.values()])

    def _capture(self, data: dict[str, Tensor]) -> None:
        self._static = {key: value.clone() for key, value in data.items()}
        if self.on_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            self._replay = self.capture(self._body)
        except Exception as error:  # torch's capture errors name the CUDA call, not what to do
            self.reset()
            raise RuntimeError(
                f"capturing the learner's update in a CUDA graph failed ({type(error).__name__}: {error}). Something "
                "in the update synchronises with the host or allocates pinned memory while capturing (see "
                "benchmarks/check_cuda.py for host syncs); set cuda_graph: false to train eagerly") from error
        if self.on_cuda:
            torch.cuda.synchronize()
        self.capture_s = time.perf_counter() - start
        log.info("captured the update in a graph in %.2f s (%d metrics)", self.capture_s, len(self._keys))

    def _load(self, data: dict[str, Tensor]) -> None:
        if data.keys() != self._static.keys():
            raise ValueError(f"this batch has keys {sorted(data)}, the captured update {sorted(self._static)}; "
                             "a graph replays one fixed set of inputs (set cuda_graph: false for varying batches)")
        for key, value in data.items():
            static = self._static[key]
            if value.shape != static.shape or value.dtype != static.dtype:
                raise ValueError(
                    f"batch '{key}' is {tuple(value.shape)} {value.dtype}, the captured update's "
                    f"{tuple(static.shape)} {static.dtype}: a graph replays fixed shapes; keep replay.batch_size "
                    "and replay.batch_length fixed or set cuda_graph: false")
            static.copy_(value, non_blocking=True)
