"""Batches sampled ahead by a daemon thread into a bounded queue.

The learner then finds the next batch ready while it trains on the current one.
Errors raised by the sampling function (e.g. not enough data yet) are handed to the
consumer and re-raised by `next()`, so they are not lost in the thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np

log = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]
_POLL_S = 0.05  # how often blocked puts/gets look at the stop flag


class Prefetcher(Iterator[Batch]):
    def __init__(self, sample: Callable[[], Batch], size: int, name: str = "replay-prefetch") -> None:
        if size <= 0:
            raise ValueError(f"prefetch size must be positive, got {size}")
        self._sample = sample
        self._queue: queue.Queue[Batch | BaseException] = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item: Batch | BaseException = self._sample()
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

    def __next__(self) -> Batch:
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
