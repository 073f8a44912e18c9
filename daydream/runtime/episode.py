"""What an actor records: the episode in progress and the fixed-length chunks cut from its steps."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from daydream.runtime.evaluate import EpisodeDiagnostics


class ChunkBuilder:
    """Collects step records and cuts them into [N, ...] chunks."""

    def __init__(self, length: int) -> None:
        if length <= 0:
            raise ValueError(f"transport.chunk_length must be positive, got {length}")
        self.length = length
        self.rows: list[dict[str, np.ndarray]] = []

    def add(self, row: dict[str, Any]) -> dict[str, np.ndarray] | None:
        self.rows.append({k: np.asarray(v) for k, v in row.items()})
        return self.take() if len(self.rows) >= self.length else None

    def take(self) -> dict[str, np.ndarray] | None:
        if not self.rows:
            return None
        rows, self.rows = self.rows, []
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


@dataclasses.dataclass
class Episode:
    """The episode being acted: its id on the wire, the last action and reward (recorded with the next
    observation), its return and length so far, and the env's per-step diagnostics."""

    action: np.ndarray
    id: int = dataclasses.field(default_factory=time.time_ns)
    reward: float = 0.0
    total: float = 0.0
    length: int = 0
    diagnostics: EpisodeDiagnostics = dataclasses.field(default_factory=EpisodeDiagnostics)
