"""Uniform sampling of fixed-length sequences: choosing starts, planning copies, gathering.

Every valid start position (a step with `batch_length - 1` more steps after it in
the same track, counting the in-progress chunk) is equally likely. Sampling is split
in two so the replay lock is held only for the cheap part: `plan` (under the lock)
turns starts into a list of slices of chunk arrays, and `gather` (outside the lock)
copies those slices into fresh batch arrays. That is safe because chunk arrays are
never written again once a step is in them: a full in-progress buffer becomes the
sealed chunk's arrays and a new buffer is allocated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from daydream.replay.index import Chunk, Track
from daydream.replay.spec import Spec


@dataclasses.dataclass(frozen=True)
class Source:
    """One track as seen by the sampler: its chunks plus the stream's unsealed tail, if any."""

    track: Track
    tail: dict[str, np.ndarray] | None
    tail_length: int

    @property
    def length(self) -> int:
        return self.track.length + self.tail_length


@dataclasses.dataclass(frozen=True)
class Piece:
    row: int    # batch row
    start: int  # time index in the row
    arrays: dict[str, np.ndarray]
    lo: int     # first step inside `arrays`
    count: int


def valid_starts(lengths: np.ndarray, batch_length: int) -> np.ndarray:
    return np.maximum(lengths - batch_length + 1, 0)


def plan(sources: Sequence[Source], batch_size: int, batch_length: int, rng: np.random.Generator,
         arrays_of: Callable[[Chunk], dict[str, np.ndarray]]) -> list[Piece]:
    """Choose `batch_size` starts uniformly and return the slices that make up each sequence."""
    lengths = np.array([s.length for s in sources], np.int64)
    starts = valid_starts(lengths, batch_length)
    total = int(starts.sum())
    if total == 0:
        raise RuntimeError(f"cannot sample sequences of {batch_length} steps: the replay holds "
                           f"{int(lengths.sum())} steps and its longest stream has {int(lengths.max(initial=0))}; "
                           f"add at least {batch_length} "
                           "consecutive steps to one stream first")
    cumulative = np.cumsum(starts)
    draws = rng.integers(0, total, size=batch_size)
    which = np.searchsorted(cumulative, draws, side="right")
    positions = draws - (cumulative[which] - starts[which])
    pieces: list[Piece] = []
    for row, (i, pos) in enumerate(zip(which.tolist(), positions.tolist())):
        _plan_sequence(sources[i], row, pos, batch_length, arrays_of, pieces)
    return pieces


def _plan_sequence(source: Source, row: int, pos: int, batch_length: int,
                   arrays_of: Callable[[Chunk], dict[str, np.ndarray]], pieces: list[Piece]) -> None:
    track = source.track
    ends = track.ends
    i = int(np.searchsorted(ends, pos, side="right"))
    t = 0
    while t < batch_length:
        if i < len(track.chunks):
            chunk = track.chunks[i]
            arrays, first, length = arrays_of(chunk), int(ends[i]) - chunk.length, chunk.length
        else:  # past the sealed chunks: the in-progress tail
            arrays, first, length = source.tail, track.length, source.tail_length
        lo = pos - first
        count = min(length - lo, batch_length - t)
        pieces.append(Piece(row, t, arrays, lo, count))
        t += count
        pos += count
        i += 1


def gather(pieces: Sequence[Piece], spec: Spec, batch_size: int, batch_length: int) -> dict[str, np.ndarray]:
    """Copy the planned slices into new [batch_size, batch_length, ...] arrays."""
    batch = {k: np.empty((batch_size, batch_length, *shape), spec.dtypes[k]) for k, shape in spec.shapes.items()}
    for p in pieces:
        stop = p.lo + p.count
        for key, out in batch.items():
            out[p.row, p.start:p.start + p.count] = p.arrays[key][p.lo:stop]
    return batch
