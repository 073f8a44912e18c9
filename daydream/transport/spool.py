"""The actor's on-disk outbox: every chunk is durable here before it is sent, until acked.

Layout of ``spool_dir``::

    meta.json                    {"actor_id": ..., "reserved": N}
    <seq:012d>_<episode_id>.npz  one chunk (np.savez, numeric arrays only, loaded with allow_pickle=False)

Sequence numbers must never repeat for an actor, even across restarts and after the
chunk files are acked and deleted. Writing a counter per chunk would cost one more
fsync per chunk, so ``reserved`` is advanced in blocks: seqs below it may have been
used, and a restart continues from it (skipping at most one block, which the
learner's range-based seen-set absorbs cheaply).

The spool can be bounded (``max_bytes``): the caller either waits for acks to make room
(`has_room`, a sim) or drops the oldest unacked chunks (`drop_oldest`, a robot that
must keep acting). Every write is atomic (temp file + rename), so a write that fails
half-way, e.g. with the disk full (ENOSPC), leaves no partial chunk behind.
"""

from __future__ import annotations

import errno
import json
import logging
import re
from pathlib import Path

import numpy as np

from daydream.atomic import atomic_write, atomic_write_bytes, remove_temp_files
from daydream.transport.codec import check_actor_id, check_dtype

log = logging.getLogger(__name__)

_CHUNK_RE = re.compile(r"(\d{12,})_(-?\d+)\.npz")
META = "meta.json"
# errors that mean "no room on the device", not a broken spool: the caller's full-spool policy handles them
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# np.savez's zip headers per array (and the archive's end), added to the arrays' bytes when estimating a chunk's size
_NPZ_OVERHEAD = 512


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def chunk_bytes(chunk: dict[str, np.ndarray]) -> int:
    """About the bytes `chunk` takes in the spool (uncompressed npz): its arrays plus zip headers."""
    return sum(np.asarray(a).nbytes for a in chunk.values()) + _NPZ_OVERHEAD * (len(chunk) + 1)


class Spool:
    def __init__(self, directory: str | Path, actor_id: str, reserve_block: int = 1024, max_bytes: int = 0) -> None:
        check_actor_id(actor_id)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.actor_id = actor_id
        self._block = reserve_block
        self.max_bytes = max_bytes  # 0 = unbounded
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
        self._sizes: dict[int, int] = {seq: p.stat().st_size for seq, (p, _) in self._files.items()}
        self._steps: dict[int, int] = {}  # seq -> steps, for chunks written by this process
        self.bytes = sum(self._sizes.values())
        self._next = max(self._reserved, max(self._files, default=-1) + 1)
        if self._files:
            log.info("spool %s: %d unacked chunks from a previous run, continuing at seq %d",
                     self.directory, len(self._files), self._next)

    @property
    def next_seq(self) -> int:
        return self._next

    def _save_meta(self, reserved: int | None = None) -> None:
        meta = {"actor_id": self.actor_id, "reserved": self._reserved if reserved is None else reserved}
        atomic_write_bytes(self.directory / META, json.dumps(meta).encode())

    def allocate(self) -> int:
        """Return a new seq, never returned before for this spool (also across restarts)."""
        seq = self._next
        if seq >= self._reserved:
            # saved before it is used: if the write fails (disk full), nothing changed and the call can be retried
            self._save_meta(seq + self._block)
            self._reserved = seq + self._block
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
        atomic_write(path, lambda f: np.savez(f, **chunk))  # raises OSError (ENOSPC...) with nothing left behind
        self._files[seq] = (path, int(episode_id))
        self._sizes[seq] = size = path.stat().st_size
        self._steps[seq] = len(next(iter(chunk.values())))
        self.bytes += size
        return path

    def has_room(self, size: int) -> bool:
        """Whether a chunk of `size` bytes fits under `max_bytes` now (always true for an empty spool)."""
        # an empty spool always takes one chunk, so a bound below one chunk cannot stall an actor forever
        return not self.max_bytes or not self._files or self.bytes + size <= self.max_bytes

    def steps_of(self, seq: int) -> int:
        """Steps in spooled chunk `seq` (read from its file if an earlier process wrote it; 0 if unreadable)."""
        if seq not in self._steps:
            try:
                with np.load(self._files[seq][0], allow_pickle=False) as npz:
                    self._steps[seq] = len(npz[npz.files[0]])
            except Exception:  # an unreadable chunk holds no usable steps
                self._steps[seq] = 0
        return self._steps[seq]

    def drop_oldest(self) -> tuple[int, int] | None:
        """Delete the oldest unacked chunk to make room; returns (seq, steps), or None if the spool is empty."""
        if not self._files:
            return None
        seq = next(iter(self._files))
        steps = self.steps_of(seq)
        self.remove(seq)
        return seq, steps

    def load(self, seq: int) -> tuple[int, dict[str, np.ndarray]]:
        path, episode_id = self._files[seq]
        with np.load(path, allow_pickle=False) as npz:
            return episode_id, {k: npz[k] for k in npz.files}

    def remove(self, seq: int) -> bool:
        entry = self._files.pop(seq, None)
        if entry is None:
            return False
        entry[0].unlink(missing_ok=True)
        self.bytes -= self._sizes.pop(seq, 0)
        self._steps.pop(seq, None)
        return True

    def quarantine(self, seq: int) -> None:
        """Move an unreadable chunk aside so it is kept for inspection but not resent forever."""
        path, _ = self._files.pop(seq)
        self.bytes -= self._sizes.pop(seq, 0)
        self._steps.pop(seq, None)
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
