"""Metric sinks: one JSON line per record in `metrics.jsonl` plus TensorBoard event files."""

from __future__ import annotations

import json
import logging
import math
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
