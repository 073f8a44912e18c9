"""The actor's on-disk outbox: every chunk is durable here before it is sent, until acked.

Layout of ``spool_dir``::

    meta.json                    {"actor_id": ..., "reserved": N}
    <seq:012d>_<episode_id>.npz  one chunk (np.savez, numeric arrays only, loaded with allow_pickle=False)

Sequence numbers must never repeat for an actor, even across restarts and after the
chunk files are acked and deleted. Writing a counter per chunk would cost one more
fsync per chunk, so ``reserved`` is advanced in blocks: seqs below it may have been
used, and a restart continues from it (skipping at most one block, which the
learner's range-based seen-set absorbs cheaply).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from daydream.atomic import atomic_write, atomic_write_bytes, remove_temp_files
from daydream.transport.codec import ACTOR_ID_RE, check_dtype

log = logging.getLogger(__name__)

_CHUNK_RE = re.compile(r"(\d{12,})_(-?\d+)\.npz")
META = "meta.json"


class Spool:
    def __init__(self, directory: str | Path, actor_id: str, reserve_block: int = 1024) -> None:
        if not ACTOR_ID_RE.fullmatch(actor_id):
            raise ValueError(f"actor_id {actor_id!r} must be 1-64 chars of [A-Za-z0-9_.-] (it names replay streams)")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.actor_id = actor_id
        self._block = reserve_block
        remove_temp_files(self.directory)
        meta_path = self.directory / META
        self._reserved = 0
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("actor_id") != actor_id:
                raise ValueError(f"spool {self.directory} belongs to actor {meta.get('actor_id')!r}, not {actor_id!r}; "
                                 "give each actor its own spool_dir")
            self._reserved = int(meta["reserved"])
        else:
            self._save_meta()  # claims the directory for this actor_id
        found = {}
        for p in self.directory.iterdir():
            m = _CHUNK_RE.fullmatch(p.name)
            if m:
                found[int(m.group(1))] = (p, int(m.group(2)))
        # seqs are allocated increasingly, so insertion order stays sorted: no sorting per poll
        self._files: dict[int, tuple[Path, int]] = dict(sorted(found.items()))
        self._next = max(self._reserved, max(self._files, default=-1) + 1)
        if self._files:
            log.info("spool %s: %d unacked chunks from a previous run, continuing at seq %d",
                     self.directory, len(self._files), self._next)

    @property
    def next_seq(self) -> int:
        return self._next

    def _save_meta(self) -> None:
        meta = {"actor_id": self.actor_id, "reserved": self._reserved}
        atomic_write_bytes(self.directory / META, json.dumps(meta).encode())

    def allocate(self) -> int:
        """Return a new seq, never returned before for this spool (also across restarts)."""
        seq = self._next
        if seq >= self._reserved:
            self._reserved = seq + self._block
            self._save_meta()
        self._next = seq + 1
        return seq

    def skip_to(self, next_seq: int) -> None:
        """Continue numbering at `next_seq` or later (the learner saw higher seqs: the spool was wiped)."""
        if next_seq > self._next:
            log.warning("spool %s: learner has seen seqs up to %d from %s, jumping from %d (was the spool wiped?)",
                        self.directory, next_seq - 1, self.actor_id, self._next)
            self._next = next_seq

    def write(self, seq: int, episode_id: int, chunk: dict[str, np.ndarray]) -> Path:
        for key, arr in chunk.items():
            if not isinstance(arr, np.ndarray):
                raise TypeError(f"chunk[{key!r}] is {type(arr).__name__}; chunks must hold numpy arrays")
            check_dtype(arr.dtype)
        path = self.directory / f"{seq:012d}_{int(episode_id)}.npz"
        atomic_write(path, lambda f: np.savez(f, **chunk))
        self._files[seq] = (path, int(episode_id))
        return path

    def load(self, seq: int) -> tuple[int, dict[str, np.ndarray]]:
        path, episode_id = self._files[seq]
        with np.load(path, allow_pickle=False) as npz:
            return episode_id, {k: npz[k] for k in npz.files}

    def remove(self, seq: int) -> bool:
        entry = self._files.pop(seq, None)
        if entry is None:
            return False
        entry[0].unlink(missing_ok=True)
        return True

    def quarantine(self, seq: int) -> None:
        """Move an unreadable chunk aside so it is kept for inspection but not resent forever."""
        path, _ = self._files.pop(seq)
        bad = self.directory / "corrupt"
        bad.mkdir(exist_ok=True)
        path.replace(bad / path.name)

    def seqs(self) -> list[int]:
        """Unacked seqs, oldest first."""
        return list(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, seq: int) -> bool:
        return seq in self._files
