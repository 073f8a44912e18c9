"""Batches sampled ahead by a daemon thread into a bounded queue.

The learner then finds the next batch ready while it trains on the current one.
Errors raised by the sampling function (e.g. not enough data yet) are handed to the
consumer and re-raised by `next()`, so they are not lost in the thread.

An optional `transform` runs in the same thread on every batch: `to_device(device)` turns
the numpy batch into tensors on the learner's device (pinned host memory and a copy on a
side CUDA stream, finished before the batch is queued), so the update finds its inputs
already there and never waits on a host-to-device copy.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]
_POLL_S = 0.05  # how often blocked puts/gets look at the stop flag


class Prefetcher(Iterator[Any]):
    def __init__(self, sample: Callable[[], Batch], size: int, name: str = "replay-prefetch",
                 transform: Callable[[Batch], Any] | None = None) -> None:
        if size <= 0:
            raise ValueError(f"prefetch size must be positive, got {size}")
        self._sample = sample if transform is None else (lambda: transform(sample()))
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item: Any = self._sample()
            except BaseException as e:  # handed to the consumer, who decides
                item = e
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=_POLL_S)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def __next__(self) -> Any:
        while True:
            if self._stop.is_set():
                raise StopIteration
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise StopIteration from None
                continue
            if isinstance(item, BaseException):
                self._stop.set()
                raise item
            return item

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("replay prefetch thread did not stop within %.1f s", timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


def to_device(device: torch.device | str) -> Callable[[Batch], dict[str, torch.Tensor]]:
    """A `Prefetcher` transform: a numpy batch as tensors on `device`, complete when returned.

    On CUDA the arrays go through pinned host memory and are copied on a side stream of
    the prefetch thread; the thread waits for the copy before it queues the batch, so the
    learner's stream never waits on it and needs no event. The device tensors are
    allocated on the learner's (default) stream, so the allocator reuses their memory only
    in that stream's order once the update is done with them. On CPU the arrays are
    wrapped without a copy.
    """
    device = torch.device(device)
    side = torch.cuda.Stream(device) if device.type == "cuda" else None

    def transform(batch: Batch) -> dict[str, torch.Tensor]:
        host = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
        if side is None:
            return host
        out = {k: torch.empty(v.shape, dtype=v.dtype, device=device) for k, v in host.items()}
        with torch.cuda.stream(side):
            for k, v in host.items():
                out[k].copy_(v.pin_memory(), non_blocking=True)
        side.synchronize()
        return out

    return transform
