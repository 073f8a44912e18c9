"""The in-memory index of what a replay holds: chunks, grouped into tracks.

A *track* is a run of chunks of one stream whose steps are consecutive, so a
sampled sequence may cross any chunk boundary inside a track but never leaves it.
A stream usually is a single track; it splits only where a chunk is missing on
disk (a gap in the chunk indices, e.g. a corrupt file that was skipped), because
stitching across the hole would fabricate a transition that never happened.

The index holds no step data for chunks on disk (only their file layout); chunks
that are not on disk yet carry their arrays in `ram`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from daydream.replay.chunkfile import ChunkLayout, ChunkName


@dataclasses.dataclass(eq=False)
class Chunk:
    name: ChunkName
    ram: dict[str, np.ndarray] | None = None  # set until the file is written
    path: Path | None = None
    layout: ChunkLayout | None = None
    nbytes: int = 0  # size of the file once written
    writing: bool = False  # a thread is writing (or is about to write) the file
    evicted: bool = False

    @property
    def length(self) -> int:
        return self.name.length


class Track:
    """Consecutive chunks of one stream, with cumulative step counts for fast lookup."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.chunks: list[Chunk] = []
        self.ends = np.zeros(0, np.int64)  # ends[i] = steps in chunks[0..i]

    @property
    def length(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def append(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)
        self.reindex()

    def pop_oldest(self) -> Chunk:
        chunk = self.chunks.pop(0)
        self.reindex()
        return chunk

    def reindex(self) -> None:
        # Only on a new or evicted chunk (every chunk_size steps), never per step or sample.
        self.ends = np.cumsum([c.length for c in self.chunks], dtype=np.int64)


@dataclasses.dataclass(eq=False)
class Stream:
    """One producer's data: its tracks (the last one receives new steps) and in-progress chunk."""

    name: str
    next_index: int = 0
    tracks: list[Track] = dataclasses.field(default_factory=list)
    buffer: dict[str, np.ndarray] | None = None  # preallocated [chunk_size, ...] arrays
    fill: int = 0  # steps written into `buffer`

    def start_track(self) -> None:
        """Make later chunks start a new track (their data does not follow the last chunk's)."""
        if not self.tracks or self.tracks[-1].chunks:
            self.tracks.append(Track(self.name))
