"""The in-memory index of what a replay holds: chunks, grouped into tracks.

A *track* is a run of chunks of one stream whose indices are consecutive, so a
sampled sequence may cross any chunk boundary inside a track but never leaves it.
A chunk's index is its position in the stream: the producer's sequence number for
chunks that arrive over the network (which may arrive out of order, after resends
and restarts), else the next free index. Chunks are placed by index, not by arrival:
a chunk joins the track that ends just before it and/or the one that starts just
after it, and a chunk with neither neighbour starts a track of its own. So a stream
splits wherever a chunk is missing (not arrived yet, dropped by the producer, or a
corrupt file skipped on load), because stitching across the hole would fabricate a
transition that never happened; a late chunk that fills the hole merges the tracks.

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
    """One producer's data: its tracks in index order and its in-progress chunk.

    The in-progress steps (`buffer`) become the chunk at `next_index`, so they continue
    the last track when that track ends at `next_index - 1`; otherwise the last track
    is an empty one that they start.
    """

    name: str
    next_index: int = 0
    tracks: list[Track] = dataclasses.field(default_factory=list)
    held: dict[int, Chunk] = dataclasses.field(default_factory=dict)  # index -> chunk
    buffer: dict[str, np.ndarray] | None = None  # preallocated [chunk_size, ...] arrays
    fill: int = 0  # steps written into `buffer`

    def place(self, chunk: Chunk) -> bool:
        """Insert `chunk` by its index; returns False if it starts a track of its own (no neighbour held)."""
        index = chunk.name.index
        if index in self.held:
            raise ValueError(f"stream {self.name!r} already holds chunk index {index}")
        before = next((t for t in self.tracks if t.chunks and t.chunks[-1].name.index == index - 1), None)
        after = next((t for t in self.tracks if t.chunks and t.chunks[0].name.index == index + 1), None)
        if before is not None:
            before.chunks.append(chunk)
            if after is not None:  # the missing piece between two tracks: one track again
                before.chunks.extend(after.chunks)
                self.tracks.remove(after)
            before.reindex()
        elif after is not None:
            after.chunks.insert(0, chunk)
            after.reindex()
        else:
            track = Track(self.name)
            track.append(chunk)
            self.tracks.append(track)
        self.held[index] = chunk
        self.next_index = max(self.next_index, index + 1)
        self._order()
        return before is not None or after is not None

    def remove(self, track: Track, chunk: Chunk) -> None:
        """Forget an evicted chunk (already popped from `track`)."""
        if self.held.get(chunk.name.index) is chunk:
            del self.held[chunk.name.index]
        if not track.chunks:
            self.tracks.remove(track)
        self._order()

    def _order(self) -> None:
        # Tracks sorted by their first index, then one track for the in-progress steps to extend.
        full = sorted((t for t in self.tracks if t.chunks), key=lambda t: t.chunks[0].name.index)
        if not full or full[-1].chunks[-1].name.index != self.next_index - 1:
            full.append(Track(self.name))
        self.tracks = full
