"""Which chunk sequence numbers the learner has already accepted, per actor, persisted as JSON.

Seqs are mostly consecutive (an actor restart skips at most one reservation block), so
each actor's set is stored as sorted inclusive ``[start, end]`` ranges: the file stays
a few bytes per actor however long the run.
"""

from __future__ import annotations

import bisect
import json
import logging
from pathlib import Path

from daydream.atomic import atomic_write_bytes

log = logging.getLogger(__name__)


class SeqRanges:
    """A set of non-negative ints kept as sorted disjoint inclusive ranges."""

    def __init__(self, ranges: list[list[int]] | None = None) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in sorted(ranges or []):
            if not (type(start) is int and type(end) is int and 0 <= start <= end):
                raise ValueError(f"bad seq range [{start!r}, {end!r}]")
            if self._ends and start <= self._ends[-1] + 1:
                self._ends[-1] = max(self._ends[-1], end)
            else:
                self._starts.append(start)
                self._ends.append(end)

    def __contains__(self, seq: int) -> bool:
        i = bisect.bisect_right(self._starts, seq) - 1
        return i >= 0 and seq <= self._ends[i]

    def add(self, seq: int) -> None:
        if seq in self:
            return
        i = bisect.bisect_right(self._starts, seq) - 1  # range starting at or before seq
        joins_left = i >= 0 and self._ends[i] == seq - 1
        joins_right = i + 1 < len(self._starts) and self._starts[i + 1] == seq + 1
        if joins_left and joins_right:
            self._ends[i] = self._ends[i + 1]
            del self._starts[i + 1], self._ends[i + 1]
        elif joins_left:
            self._ends[i] = seq
        elif joins_right:
            self._starts[i + 1] = seq
        else:
            self._starts.insert(i + 1, seq)
            self._ends.insert(i + 1, seq)

    def max(self) -> int:
        return self._ends[-1] if self._ends else -1

    def ranges(self) -> list[list[int]]:
        return [[s, e] for s, e in zip(self._starts, self._ends)]


class SeenStore:
    """Per-actor `SeqRanges` saved atomically to ``<state_dir>/seen_seqs.json``."""

    FILE = "seen_seqs.json"

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / self.FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._actors: dict[str, SeqRanges] = {}
        self._dirty = False
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                self._actors = {a: SeqRanges(r) for a, r in raw["actors"].items()}
            except (ValueError, KeyError, TypeError) as e:
                # replay.add_chunk is idempotent on (stream, name), so starting empty only costs re-writes
                log.warning("ignoring unreadable seen-seq file %s (%s); duplicates will be caught by the replay",
                            self.path, e)

    def seen(self, actor_id: str, seq: int) -> bool:
        ranges = self._actors.get(actor_id)
        return ranges is not None and seq in ranges

    def add(self, actor_id: str, seq: int) -> None:
        self._actors.setdefault(actor_id, SeqRanges()).add(seq)
        self._dirty = True

    def next_seq(self, actor_id: str) -> int:
        """One past the highest seq seen from `actor_id` (0 if none)."""
        ranges = self._actors.get(actor_id)
        return ranges.max() + 1 if ranges else 0

    def save(self) -> None:
        if not self._dirty:
            return
        data = {"actors": {a: r.ranges() for a, r in self._actors.items()}}
        # not fsync'd: losing the latest update on power loss only means re-writing chunks the replay drops anyway
        atomic_write_bytes(self.path, json.dumps(data).encode(), durable=False)
        self._dirty = False
