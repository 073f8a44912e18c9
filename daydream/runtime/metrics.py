"""Metric sinks (one JSON line per record in `metrics.jsonl` plus TensorBoard event files) and the
bookkeeping of training loops: running means, per-second rates and "every N steps" schedules."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class MetricsWriter:
    """Writes scalar metrics under a kind prefix (train/, episode/, eval/) at an env step."""

    def __init__(self, logdir: str | Path, tensorboard: bool = True) -> None:
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.logdir / "metrics.jsonl", "a", buffering=1)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.logdir / "tb"))
            except ImportError:  # tensorboard is a declared dependency; keep JSONL working regardless
                log.warning("tensorboard is not installed; writing metrics.jsonl only (pip install tensorboard)")

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        clean = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
        self._jsonl.write(json.dumps({"kind": kind, "step": int(step), **clean}) + "\n")
        if self._tb is not None:
            for key, value in clean.items():
                self._tb.add_scalar(f"{kind}/{key}", value, step)

    def flush(self) -> None:
        self._jsonl.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


class Mean:
    """Means of named values over the `add`s since the last `take`."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._count = 0

    def add(self, values: Mapping[str, Any]) -> None:
        for k, v in values.items():
            self._sums[k] = self._sums.get(k, 0.0) + float(v)
        self._count += 1

    def take(self) -> dict[str, float]:
        """The means (empty when nothing was added), and start over."""
        means = {k: v / self._count for k, v in self._sums.items()} if self._count else {}
        self._sums, self._count = {}, 0
        return means


class Rates:
    """Per-second rates of counters between two `take`s: `take(env_steps=n)` gives `env_steps_per_s`."""

    def __init__(self, **counters: int) -> None:
        self._at = time.time()
        self._last = dict(counters)

    def take(self, **counters: int) -> dict[str, float]:
        now = time.time()
        dt = max(now - self._at, 1e-9)
        rates = {f"{k}_per_s": (v - self._last[k]) / dt for k, v in counters.items()}
        self._at, self._last = now, dict(counters)
        return rates


class Every:
    """A schedule on a counter (env steps, updates): due once `n` have passed since it last fired."""

    def __init__(self, n: int, start: int = 0) -> None:
        self.n = n
        self.last = start

    def due(self, now: int) -> bool:
        return now - self.last >= self.n

    def mark(self, now: int) -> None:
        self.last = now

    def __call__(self, now: int) -> bool:
        """True (and marked) when due."""
        if not self.due(now):
            return False
        self.mark(now)
        return True


def read_metrics(path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl, optionally only those of one kind."""
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
            if kind is None or row.get("kind") == kind:
                rows.append(row)
    return rows
