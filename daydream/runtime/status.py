"""`status.json`: a process's live counters, rewritten every few seconds for monitoring and tests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from daydream.atomic import atomic_write_bytes

STATUS_NAME = "status.json"


class StatusFile:
    def __init__(self, path: str | Path, every_s: float) -> None:
        self.path = Path(path)
        self.every_s = every_s
        self._last = -float("inf")

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_s

    def write(self, data: dict[str, Any]) -> None:
        # atomic against a crash of this process (readers never see half a file); no fsync: it is rewritten anyway
        atomic_write_bytes(self.path, json.dumps({"time": time.time(), **data}, default=float).encode(), durable=False)
        self._last = time.monotonic()


def read_status(path: str | Path) -> dict[str, Any]:
    """The last status written at `path` (a file or the folder holding status.json); {} if none yet."""
    path = Path(path)
    if path.is_dir():
        path = path / STATUS_NAME
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
