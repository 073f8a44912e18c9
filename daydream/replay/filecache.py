"""A bounded set of memory-mapped chunk files, least recently used closed first.

Every open `mmap` keeps a duplicate file descriptor, so mapping every chunk of a
large replay at once could run into the per-process open-file limit. Reopening a
chunk is cheap because its layout was parsed when it was indexed.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable
from pathlib import Path

import numpy as np

from daydream.replay.chunkfile import ChunkLayout, map_chunk

class FileCache:
    """Not thread safe: the owner calls it under its own lock."""

    def __init__(self, max_open: int) -> None:
        if max_open <= 0:
            raise ValueError(f"max_open must be positive, got {max_open}")
        self.max_open = max_open
        self._open: collections.OrderedDict[Hashable, dict[str, np.ndarray]] = collections.OrderedDict()

    def get(self, key: Hashable, path: Path, layout: ChunkLayout) -> dict[str, np.ndarray]:
        arrays = self._open.get(key)
        if arrays is not None:
            self._open.move_to_end(key)
            return arrays
        try:
            arrays = map_chunk(path, layout)
        except OSError as e:
            raise RuntimeError(f"replay chunk {path} was indexed but cannot be opened now ({e}); "
                               "was the replay directory changed by another program?") from e
        self._open[key] = arrays
        while len(self._open) > self.max_open:
            # Dropping the views unmaps the file once no sampled plan still holds them.
            self._open.popitem(last=False)
        return arrays

    def discard(self, key: Hashable) -> None:
        self._open.pop(key, None)

    def clear(self) -> None:
        self._open.clear()

    def __len__(self) -> int:
        return len(self._open)
