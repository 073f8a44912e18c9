"""`status.json`: a process's live counters, rewritten every few seconds for monitoring and tests."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from daydream.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

STATUS_NAME = "status.json"


class StatusFile:
    def __init__(self, path: str | Path, every_s: float) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.every_s = every_s
        self.failures = 0
        self._last = -float("inf")

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_s

    def write(self, data: dict[str, Any]) -> None:
        # atomic against a crash of this process (readers never see half a file); no fsync: it is rewritten anyway
        try:
            atomic_write_bytes(self.path, json.dumps({"time": time.time(), **data}, default=float).encode(),
                               durable=False)
        except OSError as exc:  # a full disk: monitoring must not stop a robot; the next write tries again
            self.failures += 1
            if self.failures <= 3 or self.failures % 1000 == 0:
                log.warning("could not write %s (#%d): %s", self.path, self.failures, exc)
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


def format_learner_status(status: dict[str, Any], now: float | None = None) -> str:
    """A readable summary of a learner's status.json: counters, then one line per actor."""
    if status.get("role") != "learner":
        return "no learner status yet (is the learner running with this logdir?)"
    age = (now if now is not None else time.time()) - status["time"]
    lines = [f"learner: {status['received_steps']} steps received, {status['updates']} updates, policy version "
             f"{status['policy_version']} (status {age:.0f} s old)"]
    bad = {k: v for k, v in status.get("experience", {}).items()
           if k in ("malformed", "unknown_type", "oversized", "rejected", "auth_failures") and v}
    if bad:
        lines.append("dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(bad.items())))
    if status.get("done"):
        lines.append("the run is finished (train.steps reached): actors are told to stop; resume with a larger "
                     "--set train.steps=... to extend it")
    actors = status.get("actors", {})
    lines.append(f"{len(actors)} actors:" if actors else "no actors connected yet")
    for actor_id, a in sorted(actors.items()):
        lines.append(f"  {actor_id:<20} {a['steps_per_s']:8.1f} steps/s  {a['steps']:>9} steps  policy "
                     f"{a['policy_version']} (lag {a['policy_lag']})  {a['pending']} chunks pending  "
                     f"last heard {a['age_s']:.1f} s ago")
    return "\n".join(lines)
