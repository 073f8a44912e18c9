"""Chunked, durable, memory-mapped experience replay (numpy only).

Steps of each stream (one env or robot) are collected into chunks; each chunk is
one uncompressed `.npz` file written atomically (temp file, fsync, rename), indexed
on start and memory-mapped on demand, so a crash loses at most the in-progress
chunk per stream and the data lives in the OS page cache, not the Python heap.
`Replay.sample()` draws uniform fixed-length sequences that may cross chunk and
episode boundaries. See `replay.py` for the class and `chunkfile.py` for the format.
"""

from daydream.replay.chunkfile import ChunkName, read_layout
from daydream.replay.replay import Replay

__all__ = ["ChunkName", "Replay", "read_layout"]
