"""`Replay`: the thread-safe owner of one replay directory.

It ties the pieces together: steps arrive per stream into preallocated in-progress
buffers; a full buffer (or any buffer on `flush`) is sealed into a chunk and written
durably (`chunkfile`); whole chunks from remote producers are written at once
(`add_chunk`); chunks on disk are indexed, not loaded, and memory-mapped on demand
(`filecache`); the oldest chunks are evicted past `capacity`; and `sample` draws
uniform fixed-length sequences across chunk boundaries (`sampler`).

Locking: one lock guards the index. File writes, file deletions and the batch copy
happen outside it, so a learner sampling and a network thread adding only wait for
each other for bookkeeping. A sealed chunk stays sampleable from RAM while its file
is being written and switches to the mapped file once the write has committed.

A crash loses at most each stream's in-progress chunk (plus any chunk whose write had
not committed). One producer per stream is assumed: steps of one stream arriving from
two threads at once would be interleaved.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from daydream.replay.chunkfile import ChunkName, check_id, read_layout, remove_temp_files, write_chunk
from daydream.replay.dirlock import LOCK_NAME, DirectoryLock
from daydream.replay.filecache import FileCache
from daydream.replay.index import Chunk, Stream, Track
from daydream.replay.prefetch import Prefetcher
from daydream.replay.sampler import Source, gather, plan
from daydream.replay.spec import Spec

log = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"replay {name} must be a positive integer, got {value!r}")
    return int(value)


class Replay:
    """Chunked, durable, memory-mapped experience replay; see the module docstring."""

    def __init__(self, directory: str | Path, capacity: int, chunk_size: int, batch_size: int,
                 batch_length: int, seed: int = 0, max_open_files: int = 256, spec: Spec | None = None) -> None:
        self.capacity = _positive_int(capacity, "capacity")
        self.chunk_size = _positive_int(chunk_size, "chunk_size")
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.batch_length = _positive_int(batch_length, "batch_length")
        if self.capacity < self.batch_length:
            raise ValueError(f"replay capacity ({capacity}) is smaller than batch_length ({batch_length}), "
                             "so no sequence could ever be sampled; raise capacity")
        if self.capacity < self.chunk_size:
            raise ValueError(f"replay capacity ({capacity}) is smaller than chunk_size ({chunk_size}), so every "
                             "chunk would be evicted as soon as it is written; raise capacity or lower chunk_size")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._dir_lock = DirectoryLock(self.directory)
        self._lock = threading.Lock()
        self._written = threading.Condition(self._lock)  # signalled whenever a chunk write ends
        self._rng = np.random.default_rng(seed)
        self._files = FileCache(max_open_files)
        self._spec: Spec | None = spec  # None: the first data fixes it; chunks on disk that differ are skipped
        self._streams: dict[str, Stream] = {}
        self._labels: dict[tuple[str, str], Chunk] = {}
        self._datasets: list[Prefetcher] = []
        self._next_seq = 0
        self._steps = 0          # sealed chunks + in-progress buffers
        self._chunks = 0         # sealed chunks
        self._bytes = 0          # chunk files on disk
        self._pending = 0        # chunk writes in flight
        self._evicted_steps = 0
        self._evicted_chunks = 0
        self._skipped_files = 0
        self._closed = False
        try:
            self._load()
        except BaseException:
            self._dir_lock.release()
            raise

    # ------------------------------------------------------------------ adding

    def add(self, step: Mapping[str, np.ndarray], stream: str = "0") -> None:
        """Append one step to `stream`; writes the chunk to disk once it holds chunk_size steps."""
        check_id(stream, "stream id")
        with self._lock:
            self._check_open()
            if self._spec is None:
                self._spec = Spec.of_step(step)
            arrays = self._spec.check_step(step)
            s = self._stream(stream)
            if s.buffer is None:
                s.buffer = {k: np.empty((self.chunk_size, *shape), self._spec.dtypes[k])
                            for k, shape in self._spec.shapes.items()}
            for key, value in arrays.items():
                s.buffer[key][s.fill] = value
            s.fill += 1
            self._steps += 1
            sealed = self._seal(s) if s.fill == self.chunk_size else None
            victims = self._evict()
        self._delete(victims)
        if sealed is not None:
            self._write(sealed)

    def add_chunk(self, chunk: Mapping[str, np.ndarray], stream: str, name: str | None = None,
                  position: int | None = None) -> Path:
        """Write a chunk of consecutive steps ([N, ...] arrays) of `stream` durably and make it sampleable.

        `position` is the chunk's place in its stream (a producer's sequence number:
        consecutive positions hold consecutive steps). Chunks are ordered by it, not by
        arrival, and no sampled sequence crosses a position that has not arrived. Without
        it the chunk follows the stream's previous chunk (the stream's in-progress steps,
        if any, are written first). When returning, the chunk is on disk (fsync'd), so a
        network learner may acknowledge it. `name` is an optional producer-chosen id;
        adding a chunk whose (stream, name) or (stream, position) is already held does
        not store it twice and returns the existing file, so a producer can resend a
        chunk whose acknowledgement was lost.
        """
        check_id(stream, "stream id")
        if name is not None:
            check_id(name, "chunk name")
        if position is not None and (isinstance(position, bool) or not isinstance(position, (int, np.integer))
                                     or position < 0):
            raise ValueError(f"chunk position must be a non-negative integer, got {position!r}")
        with self._lock:
            self._check_open()
            spec = self._spec if self._spec is not None else Spec.of_chunk(chunk)
            arrays, length = spec.check_chunk(chunk)
            if length > self.capacity:
                raise ValueError(f"chunk of {length} steps does not fit in the replay capacity of {self.capacity} "
                                 "steps; split it")
            self._spec = spec
            s = self._stream(stream)
            existing = self._labels.get((stream, name)) if name is not None else None
            if existing is None and position is not None:
                existing = s.held.get(int(position))
            if existing is not None:
                to_write = self._resend(existing)
                if not to_write:
                    assert existing.path is not None
                    return existing.path
                new = existing
            else:
                to_write = [self._seal(s)] if s.fill else []
                # A copy, so the producer may reuse its arrays while a sample still reads ours.
                new = Chunk(self._new_name(s, length, name, position),
                            ram={k: np.array(v, copy=True) for k, v in arrays.items()})
                if not self._register(s, new) and position is not None and len(s.held) > 1:
                    log.info("replay stream %r: chunk %d arrived without its neighbours; it starts a separate "
                             "track until they arrive", stream, position)
                to_write.append(new)
                if name is not None:
                    self._labels[(stream, name)] = new
            victims = self._evict()
        self._delete(victims)
        for c in to_write:
            self._write(c)
        if new.path is None:
            # Accepted, then evicted at once by the capacity policy: resending it would not help.
            log.warning("chunk %s was evicted right after it arrived; the replay capacity (%d) is too small "
                        "for the in-progress data of all streams", new.name.filename, self.capacity)
            return self.directory / new.name.filename
        return new.path

    def _resend(self, chunk: Chunk) -> list[Chunk]:
        # Under the lock. The chunk is already held: wait for a write in flight; retry a failed one.
        while chunk.writing:
            self._written.wait()
        if chunk.path is not None:
            return []
        self._claim(chunk)
        return [chunk]

    def flush(self) -> None:
        """Write every stream's in-progress steps to disk now (as shorter chunks) and wait for all writes."""
        with self._lock:
            if self._closed:
                return
            to_write = [self._seal(s) for s in self._streams.values() if s.fill]
            # Retry chunks whose earlier write failed (they are still held in RAM).
            for s in self._streams.values():
                for t in s.tracks:
                    for c in t.chunks:
                        if c.path is None and not c.writing:
                            self._claim(c)
                            to_write.append(c)
        for c in to_write:
            self._write(c)
        with self._lock:
            while self._pending:
                self._written.wait()

    # ------------------------------------------------------------------ sampling

    def sample(self) -> Batch:
        """A batch of uniformly drawn sequences: each array is [batch_size, batch_length, ...], a fresh copy."""
        with self._lock:
            self._check_open()
            if self._spec is None:
                raise RuntimeError(f"cannot sample: the replay is empty and needs at least {self.batch_length} "
                                   "consecutive steps of one stream")
            sources = [Source(t, s.buffer if t is s.tracks[-1] else None, s.fill if t is s.tracks[-1] else 0)
                       for s in self._streams.values() for t in s.tracks]
            pieces = plan(sources, self.batch_size, self.batch_length, self._rng, self._arrays_of)
            spec = self._spec
        return gather(pieces, spec, self.batch_size, self.batch_length)

    def dataset(self, prefetch: int = 0) -> Iterator[Batch]:
        """Endless batches; with prefetch > 0 a daemon thread samples that many ahead. Ends when close() is called."""
        if isinstance(prefetch, bool) or not isinstance(prefetch, (int, np.integer)) or prefetch < 0:
            raise ValueError(f"prefetch must be a non-negative integer, got {prefetch!r}")
        with self._lock:
            self._check_open()
            if prefetch == 0:
                return self._inline()
            prefetcher = Prefetcher(self.sample, int(prefetch))
            self._datasets = [p for p in self._datasets if p.alive] + [prefetcher]
            return prefetcher

    def _inline(self) -> Iterator[Batch]:
        while not self._closed:
            yield self.sample()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop prefetch threads, flush in-progress chunks and release the directory."""
        with self._lock:
            if self._closed:
                return
            datasets, self._datasets = self._datasets, []
        for p in datasets:
            p.stop()
        try:
            self.flush()
        finally:
            with self._lock:
                self._closed = True
                self._files.clear()
            self._dir_lock.release()

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._steps

    @property
    def stats(self) -> dict[str, float]:
        with self._lock:
            return {
                "steps": float(self._steps),
                "chunks": float(self._chunks),
                "streams": float(sum(1 for s in self._streams.values() if s.fill or any(t.chunks for t in s.tracks))),
                "in_progress_steps": float(sum(s.fill for s in self._streams.values())),
                "evicted_steps": float(self._evicted_steps),
                "evicted_chunks": float(self._evicted_chunks),
                "bytes_on_disk": float(self._bytes),
                "skipped_files": float(self._skipped_files),
                "open_files": float(len(self._files)),
            }

    def __repr__(self) -> str:
        return f"Replay({str(self.directory)!r}, steps={self._steps}, capacity={self.capacity})"

    # ------------------------------------------------------------------ internals (callers hold the lock unless noted)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"replay {self.directory} is closed; create a new Replay to use it again")

    def _stream(self, name: str) -> Stream:
        s = self._streams.get(name)
        if s is None:
            s = self._streams[name] = Stream(name, tracks=[Track(name)])
        return s

    def _new_name(self, s: Stream, length: int, label: str | None = None, position: int | None = None) -> ChunkName:
        name = ChunkName(self._next_seq, s.name, s.next_index if position is None else int(position), length, label)
        self._next_seq += 1
        return name

    def _register(self, s: Stream, chunk: Chunk) -> bool:
        joined = s.place(chunk)
        self._chunks += 1
        self._steps += chunk.length
        self._claim(chunk)
        return joined

    def _claim(self, chunk: Chunk) -> None:
        chunk.writing = True
        self._pending += 1

    def _seal(self, s: Stream) -> Chunk:
        # The buffer becomes the chunk's arrays as is; a fresh buffer is allocated on the next
        # add, so slices that a concurrent sample planned from this one stay valid.
        assert s.buffer is not None and s.fill
        chunk = Chunk(self._new_name(s, s.fill), ram={k: v[:s.fill] for k, v in s.buffer.items()})
        self._steps -= s.fill  # counted again by _register
        s.buffer, s.fill = None, 0
        self._register(s, chunk)
        return chunk

    def _write(self, chunk: Chunk) -> None:
        # Called WITHOUT the lock, on a claimed chunk; its ram arrays are never modified.
        with self._lock:
            arrays = chunk.ram
            if chunk.evicted or arrays is None:  # evicted before its turn: nothing to keep
                self._release(chunk)
                return
        try:
            path = write_chunk(self.directory, chunk.name, arrays)
            layout = read_layout(path)
            nbytes = path.stat().st_size
        except BaseException as e:
            with self._lock:
                self._release(chunk)
            log.error("could not write replay chunk %s (%s); its steps stay in memory and the write is retried on "
                      "flush()", chunk.name.filename, e)
            raise
        with self._lock:
            if not chunk.evicted:
                chunk.path, chunk.layout, chunk.nbytes = path, layout, nbytes
                self._bytes += nbytes
            chunk.ram = None
            self._release(chunk)
        if chunk.evicted:
            self._delete([path])

    def _release(self, chunk: Chunk) -> None:
        chunk.writing = False
        self._pending -= 1
        self._written.notify_all()

    def _arrays_of(self, chunk: Chunk) -> dict[str, np.ndarray]:
        if chunk.ram is not None:
            return chunk.ram
        assert chunk.path is not None and chunk.layout is not None
        return self._files.get(chunk, chunk.path, chunk.layout)

    def _evict(self) -> list[Path]:
        """Drop the oldest chunks (by creation order, across streams) until within capacity; returns files to delete."""
        victims: list[Path] = []
        while self._steps > self.capacity:
            # Only a track's first chunk may go, so the rest of every track stays consecutive.
            fronts = [(t.chunks[0].name.seq, i, s, t) for i, s in enumerate(self._streams.values())
                      for t in s.tracks if t.chunks]
            if not fronts:
                break
            _, _, s, track = min(fronts, key=lambda f: (f[0], f[1]))
            chunk = track.pop_oldest()
            chunk.evicted = True
            if not chunk.writing:  # a writer still reads ram; it drops it when done
                chunk.ram = None
            s.remove(track, chunk)
            self._steps -= chunk.length
            self._chunks -= 1
            self._evicted_steps += chunk.length
            self._evicted_chunks += 1
            self._files.discard(chunk)
            if chunk.name.label is not None and self._labels.get((s.name, chunk.name.label)) is chunk:
                del self._labels[(s.name, chunk.name.label)]
            if chunk.path is not None:
                self._bytes -= chunk.nbytes
                victims.append(chunk.path)
            log.debug("evicted replay chunk %s", chunk.name.filename)
        return victims

    def _delete(self, paths: list[Path]) -> None:
        # Called without the lock. A crash before the unlink only means the chunk is evicted again on the next start.
        for path in paths:
            try:
                path.unlink(missing_ok=True)
            except OSError as e:
                log.warning("could not delete evicted replay chunk %s: %s", path, e)

    def _load(self) -> None:
        """Index the chunks already in the directory (no step data is read) and drop leftover temp files."""
        removed = remove_temp_files(self.directory)
        if removed:
            log.info("deleted %d half-written replay chunk(s) left by a crash in %s", len(removed), self.directory)
        found: list[Chunk] = []
        for path in sorted(self.directory.iterdir()):
            if path.name == LOCK_NAME:
                continue
            name = ChunkName.parse(path.name)
            if name is None:
                log.warning("ignoring %s in the replay directory: not a chunk file name", path)
                continue
            # Skipped files still reserve their numbers, so no new chunk reuses their name.
            self._next_seq = max(self._next_seq, name.seq + 1)
            s = self._stream(name.stream)
            s.next_index = max(s.next_index, name.index + 1)
            try:
                layout = read_layout(path)
                spec = Spec({k: a.shape[1:] for k, a in layout.items()}, {k: a.dtype for k, a in layout.items()})
                lengths = {k: a.shape[0] if a.shape else None for k, a in layout.items()}
                if set(lengths.values()) != {name.length}:
                    raise ValueError(f"array lengths {lengths} do not match the {name.length} steps in the file name")
                if self._spec is not None and spec != self._spec:
                    raise ValueError(f"its keys/shapes/dtypes {spec.shapes} {spec.dtypes} differ from the other "
                                     f"chunks' {self._spec.shapes} {self._spec.dtypes}")
            except ValueError as e:
                self._skipped_files += 1
                log.warning("skipping replay chunk %s: %s", path, e)
                continue
            self._spec = spec
            found.append(Chunk(name, path=path, layout=layout, nbytes=path.stat().st_size))
        # Each stream's next_index already counts skipped files, so if its newest chunk(s) were
        # skipped, new data does not follow the last chunk held (place() leaves an empty last track).
        for chunk in sorted(found, key=lambda c: (c.name.stream, c.name.index)):
            s = self._streams[chunk.name.stream]
            if chunk.name.index in s.held:
                self._skipped_files += 1
                log.warning("skipping replay chunk %s: stream %r already has a chunk at index %d (%s)", chunk.path,
                            s.name, chunk.name.index, s.held[chunk.name.index].name.filename)
                continue
            if not s.place(chunk) and len(s.held) > 1:
                log.warning("replay stream %r: chunk %d does not follow the chunk before it (missing or skipped "
                            "chunks); sequences will not cross the gap", s.name, chunk.name.index)
            self._steps += chunk.length
            self._chunks += 1
            self._bytes += chunk.nbytes
            if chunk.name.label is not None:
                self._labels[(s.name, chunk.name.label)] = chunk
        self._delete(self._evict())
        if found:
            log.info("replay %s: indexed %d chunks, %d steps, %d streams", self.directory, self._chunks, self._steps,
                     sum(1 for s in self._streams.values() if any(t.chunks for t in s.tracks)))
