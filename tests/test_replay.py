"""Replay: sampling across chunks and episodes, durability across crashes, eviction, streams, memory."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from daydream.replay import Replay
from daydream.replay.chunkfile import ChunkName

REPO = Path(__file__).resolve().parents[1]


def make_step(count: int, episode_length: int = 1000, image: bool = False) -> dict[str, np.ndarray]:
    """One step whose `count` key identifies it, so tests can check order after sampling."""
    first = count % episode_length == 0
    step = {
        "count": np.int64(count),
        "obs": np.full(3, count, np.float32),
        "action": np.zeros(2, np.float32) if first else np.ones(2, np.float32),
        "reward": np.float32(count % 7),
        "is_first": np.bool_(first),
        "is_last": np.bool_(count % episode_length == episode_length - 1),
        "is_terminal": np.bool_(False),
    }
    if image:
        step["image"] = np.full((64, 64, 3), count % 256, np.uint8)
    return step


def make_chunk(start: int, length: int) -> dict[str, np.ndarray]:
    steps = [make_step(i) for i in range(start, start + length)]
    return {k: np.stack([s[k] for s in steps]) for k in steps[0]}


def fill(replay: Replay, start: int, stop: int, stream: str = "0", **kw) -> None:
    for i in range(start, stop):
        replay.add(make_step(i, **kw), stream=stream)


def assert_consecutive(batch: dict[str, np.ndarray]) -> None:
    steps = np.diff(batch["count"], axis=1)
    assert (steps == 1).all(), f"sampled sequences are not consecutive: {batch['count']}"


def chunk_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix == ".npz")


def steps_in_files(directory: Path) -> int:
    return sum(ChunkName.parse(p.name).length for p in chunk_files(directory))


@pytest.fixture
def replay(tmp_path):
    r = Replay(tmp_path / "replay", capacity=10_000, chunk_size=10, batch_size=8, batch_length=12, seed=1)
    yield r
    r.close()


def test_sample_shapes_dtypes_and_fresh_copies(replay):
    fill(replay, 0, 35)
    batch = replay.sample()
    assert set(batch) == {"count", "obs", "action", "reward", "is_first", "is_last", "is_terminal"}
    assert batch["obs"].shape == (8, 12, 3) and batch["obs"].dtype == np.float32
    assert batch["action"].shape == (8, 12, 2) and batch["action"].dtype == np.float32
    assert batch["reward"].shape == (8, 12) and batch["reward"].dtype == np.float32
    assert batch["is_first"].shape == (8, 12) and batch["is_first"].dtype == bool
    assert batch["count"].dtype == np.int64
    assert all(v.flags.writeable and v.flags.owndata for v in batch.values())
    np.testing.assert_array_equal(batch["obs"][..., 0], batch["count"].astype(np.float32))
    assert len(replay) == 35


def test_sequences_cross_chunk_boundaries_and_include_in_progress_steps(tmp_path):
    # chunk_size 3 and batch_length 10: every sequence spans at least 4 chunks.
    r = Replay(tmp_path, capacity=1000, chunk_size=3, batch_size=16, batch_length=10)
    fill(r, 0, 41)  # 13 chunks on disk + 2 steps in progress
    assert r.stats["in_progress_steps"] == 2
    seen = set()
    for _ in range(50):
        batch = r.sample()
        assert_consecutive(batch)
        seen.update(batch["count"][:, 0].tolist())
    # every valid start, including those reaching the unflushed steps, is sampled
    assert seen == set(range(0, 41 - 10 + 1))
    r.close()


def test_starts_are_uniform_over_streams_and_positions(tmp_path):
    r = Replay(tmp_path, capacity=1000, chunk_size=8, batch_size=500, batch_length=5, seed=3)
    fill(r, 0, 20, stream="short")     # 16 valid starts
    fill(r, 100, 150, stream="long")   # 46 valid starts
    starts = np.concatenate([r.sample()["count"][:, 0] for _ in range(8)])
    share = np.mean(starts < 100)
    assert abs(share - 16 / 62) < 0.03
    counts = np.bincount(starts[starts >= 100] - 100, minlength=46)
    assert counts.min() > 0.5 * counts.mean() and counts.max() < 1.5 * counts.mean()
    r.close()


def test_episode_boundaries_show_as_is_first_inside_sequences(replay):
    fill(replay, 0, 60, episode_length=15)
    found = 0
    for _ in range(20):
        batch = replay.sample()
        assert_consecutive(batch)
        np.testing.assert_array_equal(batch["is_first"], batch["count"] % 15 == 0)
        found += int(batch["is_first"][:, 1:].sum())
    assert found > 0, "resets inside sequences are kept, not cut out"


def test_flush_then_reopen_restores_len_and_data_and_continues_the_stream(tmp_path):
    r = Replay(tmp_path, capacity=1000, chunk_size=10, batch_size=8, batch_length=12)
    fill(r, 0, 25)
    r.flush()
    assert steps_in_files(tmp_path) == 25
    fill(r, 25, 28)
    r.flush()
    assert steps_in_files(tmp_path) == 28, "a flush writes only the steps not yet on disk"
    r.close()

    r = Replay(tmp_path, capacity=1000, chunk_size=10, batch_size=8, batch_length=12)
    assert len(r) == 28
    batch = r.sample()
    assert_consecutive(batch)
    np.testing.assert_array_equal(batch["obs"][..., 0], batch["count"])
    fill(r, 28, 45)  # continues after the old steps: sequences cross the restart
    starts = set()
    for _ in range(30):
        batch = r.sample()
        assert_consecutive(batch)
        starts.update(batch["count"][:, 0].tolist())
    assert any(s < 28 < s + 12 for s in starts), "sequences cross from the reloaded steps into the new ones"
    r.close()
    names = [ChunkName.parse(p.name) for p in chunk_files(tmp_path)]
    assert sorted(n.index for n in names) == list(range(len(names)))


def test_second_replay_on_the_same_directory_is_refused(replay):
    with pytest.raises(RuntimeError, match="already open"):
        Replay(replay.directory, capacity=100, chunk_size=10, batch_size=2, batch_length=5)


CRASH_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from test_replay import Replay, fill, make_chunk
    r = Replay(sys.argv[1], capacity=1000, chunk_size=10, batch_size=4, batch_length=5)
    fill(r, 0, 37, stream="env")                       # 3 chunks on disk, 7 steps in progress
    r.add_chunk(make_chunk(500, 15), stream="robot")   # durable once it returns
    print("ready", flush=True)
    time.sleep(60)
""")


def test_sigkill_loses_at_most_the_in_progress_chunk(tmp_path):
    directory = tmp_path / "replay"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", CRASH_SCRIPT, str(directory), str(Path(__file__).parent)],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    r = Replay(directory, capacity=1000, chunk_size=10, batch_size=4, batch_length=5)
    assert len(r) == 30 + 15
    assert r.stats["streams"] == 2
    for _ in range(10):
        assert_consecutive(r.sample())
    fill(r, 37, 50, stream="env")
    assert len(r) == 45 + 13
    r.close()


def test_leftover_temp_files_are_deleted_and_corrupt_chunks_skipped(tmp_path, caplog):
    r = Replay(tmp_path, capacity=1000, chunk_size=10, batch_size=4, batch_length=8)
    fill(r, 0, 50)  # chunks 0..4
    r.close()
    files = chunk_files(tmp_path)
    files[2].write_bytes(files[2].read_bytes()[:300])  # chunk 2 truncated: steps 20..29 gone
    temp = tmp_path / f".{ChunkName(99, '0', 5, 10).filename}.tmp"
    temp.write_bytes(b"PK\x03\x04 half written")
    (tmp_path / "000000000098-0-00000009-10.npz").write_bytes(b"not a zip at all")

    with caplog.at_level(logging.WARNING, logger="daydream.replay"):
        r = Replay(tmp_path, capacity=1000, chunk_size=10, batch_size=16, batch_length=8)
    assert not temp.exists()
    assert len(r) == 40
    assert r.stats["skipped_files"] == 2
    assert sum("skipping replay chunk" in m for m in caplog.messages) == 2
    for _ in range(30):  # sequences never bridge the missing chunk 2 (the count would jump by 11)
        assert_consecutive(r.sample())
    # New steps follow a skipped chunk's slot, so they also start a new run.
    fill(r, 1000, 1010)
    for _ in range(30):
        assert_consecutive(r.sample())
    r.close()


def test_eviction_keeps_capacity_deletes_oldest_files_and_sampling_works(tmp_path):
    r = Replay(tmp_path, capacity=50, chunk_size=10, batch_size=8, batch_length=15)
    for i in range(200):
        r.add(make_step(i))
        assert len(r) <= 50 + 10
    assert len(r) == steps_in_files(tmp_path) + r.stats["in_progress_steps"]
    assert len(chunk_files(tmp_path)) <= 5
    assert r.stats["evicted_steps"] == 200 - len(r)
    assert r.stats["bytes_on_disk"] == sum(p.stat().st_size for p in chunk_files(tmp_path))
    for _ in range(20):
        batch = r.sample()
        assert_consecutive(batch)
        assert batch["count"].min() >= 200 - len(r)
    r.close()


def test_eviction_is_oldest_first_across_streams(tmp_path):
    r = Replay(tmp_path, capacity=40, chunk_size=10, batch_size=4, batch_length=5)
    fill(r, 0, 20, stream="a")
    fill(r, 100, 120, stream="b")
    fill(r, 20, 30, stream="a")  # 50 steps: a's first chunk is the oldest
    streams = sorted(ChunkName.parse(p.name).stream for p in chunk_files(tmp_path))
    assert streams == ["a", "a", "b", "b"]
    assert min(np.concatenate([r.sample()["count"].ravel() for _ in range(20)])) >= 10
    r.close()


def test_add_chunk_is_durable_and_sampleable_immediately(tmp_path):
    r = Replay(tmp_path, capacity=1000, chunk_size=10, batch_size=4, batch_length=6)
    path = r.add_chunk(make_chunk(0, 8), stream="robot-1")
    assert path.exists() and path.parent == tmp_path
    with np.load(path) as data:  # a plain, complete npz on disk
        np.testing.assert_array_equal(data["count"], np.arange(8))
    assert len(r) == 8
    assert_consecutive(r.sample())
    r.add_chunk(make_chunk(8, 3), stream="robot-1")   # shorter than batch_length: spans chunks
    r.add_chunk(make_chunk(11, 3), stream="robot-1")
    for _ in range(20):
        assert_consecutive(r.sample())
    assert r.sample()["count"].max() <= 13
    r.close()


def test_add_chunk_follows_in_progress_steps_and_drops_resent_chunks(tmp_path):
    r = Replay(tmp_path, capacity=1000, chunk_size=10, batch_size=8, batch_length=6)
    fill(r, 0, 4, stream="s")
    first = r.add_chunk(make_chunk(4, 5), stream="s", name="robot3-000001")
    assert steps_in_files(tmp_path) == 9, "in-progress steps are written first, in order"
    again = r.add_chunk(make_chunk(4, 5), stream="s", name="robot3-000001")
    assert again == first and len(r) == 9
    for _ in range(10):
        assert_consecutive(r.sample())
    r.close()


def _positioned(r: Replay, order: list[int], length: int, stream: str = "robot-1") -> None:
    """Deliver chunk `i` (steps i*length ... (i+1)*length - 1) at position i, in the given order."""
    for i in order:
        r.add_chunk(make_chunk(i * length, length), stream=stream, name=f"{stream}-{i}", position=i)


def test_chunks_are_placed_by_position_not_arrival(tmp_path):
    # Resends after a lost ack, a learner restart or an actor restart deliver chunks out of
    # order and twice; no sampled sequence may join steps that never followed each other.
    length, n = 4, 40
    rng = np.random.default_rng(0)
    order = [int(i) for i in rng.permutation(n)]
    resent = [int(i) for i in rng.choice(n, 15)]
    deliveries = order[:25] + resent[:8] + order[25:] + resent[8:]
    r = Replay(tmp_path, capacity=10_000, chunk_size=64, batch_size=32, batch_length=6)
    for k, i in enumerate(deliveries):
        r.add_chunk(make_chunk(i * length, length), stream="robot-1", name=f"robot-1-{i}", position=i)
        if k >= 5 and k % 5 == 0:
            try:
                batch = r.sample()
            except RuntimeError:  # no two neighbours have arrived yet: nothing long enough to sample
                continue
            assert_consecutive(batch)
    assert len(r) == n * length, "every resend was dropped"
    counts = set()
    for _ in range(30):
        batch = r.sample()
        assert_consecutive(batch)
        counts.update(batch["count"][:, 0].tolist())
    assert max(counts) > n * length // 2, "once every chunk is in, the stream is one track again"
    r.close()
    # the order survives a restart: chunk files carry their positions
    r = Replay(tmp_path, capacity=10_000, chunk_size=64, batch_size=32, batch_length=n * length)
    batch = r.sample()
    np.testing.assert_array_equal(batch["count"][0], np.arange(n * length))
    r.close()


def test_sequences_never_cross_a_missing_chunk(tmp_path):
    r = Replay(tmp_path, capacity=1000, chunk_size=64, batch_size=64, batch_length=5)
    _positioned(r, [0, 1, 3, 4], length=4)  # chunk 2 (steps 8-11) has not arrived
    for _ in range(10):
        batch = r.sample()
        assert_consecutive(batch)
        assert not ((batch["count"] >= 8) & (batch["count"] <= 11)).any()
    r.close()
    r = Replay(tmp_path, capacity=1000, chunk_size=64, batch_size=64, batch_length=5)
    for _ in range(10):
        assert_consecutive(r.sample())
    _positioned(r, [2], length=4)  # the late chunk joins both sides into one track
    seen = set()
    for _ in range(20):
        batch = r.sample()
        assert_consecutive(batch)
        seen.update(batch["count"][:, 0].tolist())
    assert seen & {5, 6, 7, 8, 9, 10, 11}, "sequences now run through the filled gap"
    assert len(r) == 20
    r.close()


def test_eviction_keeps_positioned_tracks_consecutive(tmp_path):
    r = Replay(tmp_path, capacity=24, chunk_size=4, batch_size=16, batch_length=5)
    _positioned(r, [1, 0, 3, 2, 5, 4, 7, 6], length=4)
    assert len(r) == 24 and len(chunk_files(tmp_path)) == 6
    for _ in range(10):
        batch = r.sample()
        assert_consecutive(batch)
        assert batch["count"].min() >= 8, "the first two chunks to arrive went first"
    r.close()


def test_chunk_position_must_be_a_non_negative_integer(replay):
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="position"):
            replay.add_chunk(make_chunk(0, 4), stream="s", position=bad)


def test_streams_are_sampled_separately(tmp_path):
    r = Replay(tmp_path, capacity=1000, chunk_size=7, batch_size=16, batch_length=9)
    for i in range(60):  # interleaved, as several actors would add
        r.add(make_step(i), stream="arm.left")
        r.add(make_step(10_000 + i), stream="arm_right")
    assert r.stats["streams"] == 2
    starts = np.concatenate([r.sample()["count"][:, 0] for _ in range(20)])
    assert (starts < 10_000).any() and (starts >= 10_000).any()
    for _ in range(20):
        assert_consecutive(r.sample())
    r.close()


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("reward"), r"missing \['reward'\]"),
    (lambda s: s.update(extra=np.zeros(1)), r"unexpected \['extra'\]"),
    (lambda s: s.update(obs=np.zeros(4, np.float32)), r"'obs' is float32\(4,\) per step, expected float32\(3,\)"),
    (lambda s: s.update(obs=np.zeros(3, np.float64)), r"'obs' is float64\(3,\) per step, expected float32\(3,\)"),
])
def test_add_rejects_a_step_that_does_not_match(replay, change, message):
    replay.add(make_step(0))
    step = make_step(1)
    change(step)
    with pytest.raises(ValueError, match=message):
        replay.add(step)
    assert len(replay) == 1


def test_add_chunk_validation(replay):
    bad = make_chunk(0, 5)
    bad["obs"] = bad["obs"][:4]
    with pytest.raises(ValueError, match="same length"):
        replay.add_chunk(bad, stream="r")
    replay.add_chunk(make_chunk(0, 5), stream="r")
    bad = make_chunk(5, 5)
    bad["action"] = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match=r"'action' is float32\(3,\) per step, expected float32\(2,\)"):
        replay.add_chunk(bad, stream="r")
    with pytest.raises(ValueError, match="empty"):
        replay.add_chunk({k: v[:0] for k, v in make_chunk(0, 1).items()}, stream="r")
    with pytest.raises(ValueError, match="capacity"):
        replay.add_chunk(make_chunk(0, 10_001), stream="r")
    with pytest.raises(ValueError, match="stream id"):
        replay.add_chunk(make_chunk(0, 5), stream="robot/1")
    with pytest.raises(ValueError, match="chunk name"):
        replay.add_chunk(make_chunk(0, 5), stream="r", name="a b")
    assert len(replay) == 5


@pytest.mark.parametrize("stream", ["", "a/b", "a b", "x" * 101, "ü"])
def test_bad_stream_ids_are_rejected(replay, stream):
    with pytest.raises(ValueError, match="stream id"):
        replay.add(make_step(0), stream=stream)


@pytest.mark.parametrize("kwargs, message", [
    (dict(capacity=0), "capacity must be a positive integer"),
    (dict(chunk_size=-1), "chunk_size must be a positive integer"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(batch_length=0), "batch_length must be a positive integer"),
    (dict(batch_length=2.5), "batch_length must be a positive integer"),
    (dict(capacity=10, batch_length=20), "smaller than batch_length"),
    (dict(capacity=10, chunk_size=20), "smaller than chunk_size"),
])
def test_bad_sizes_are_rejected(tmp_path, kwargs, message):
    args = dict(capacity=100, chunk_size=10, batch_size=4, batch_length=8) | kwargs
    with pytest.raises(ValueError, match=message):
        Replay(tmp_path, **args)


def test_sample_without_enough_steps_says_how_many(replay):
    with pytest.raises(RuntimeError, match="empty"):
        replay.sample()
    fill(replay, 0, 7, stream="a")
    fill(replay, 0, 9, stream="b")
    with pytest.raises(RuntimeError, match="holds 16 steps.*longest stream has 9.*at least 12"):
        replay.sample()


def test_dataset_prefetches_and_stops_on_close(tmp_path):
    r = Replay(tmp_path, capacity=1000, chunk_size=10, batch_size=4, batch_length=8)
    with pytest.raises(RuntimeError, match="holds 0 steps|empty"):
        next(r.dataset(prefetch=2))  # errors in the prefetch thread reach the consumer
    fill(r, 0, 30)
    inline, ahead = r.dataset(prefetch=0), r.dataset(prefetch=2)
    for _ in range(5):
        assert next(inline)["count"].shape == (4, 8)
        batch = next(ahead)
        assert batch["count"].shape == (4, 8)
        assert_consecutive(batch)
    threads = [t for t in threading.enumerate() if t.name == "replay-prefetch"]
    assert threads and all(t.daemon for t in threads)
    r.close()
    assert not any(t.is_alive() for t in threads)
    with pytest.raises(StopIteration):
        next(ahead)
    with pytest.raises(StopIteration):
        next(inline)


def test_add_and_sample_from_different_threads(tmp_path):
    r = Replay(tmp_path, capacity=300, chunk_size=16, batch_size=8, batch_length=20)
    fill(r, 0, 20)
    errors: list[BaseException] = []

    def produce():
        try:
            fill(r, 20, 1500)
        except BaseException as e:  # reported below
            errors.append(e)

    producer = threading.Thread(target=produce)
    producer.start()
    batches = r.dataset(prefetch=2)
    while producer.is_alive():
        assert_consecutive(next(batches))
    producer.join()
    assert not errors
    assert len(r) <= 300 + 16
    r.close()


def test_image_chunks_are_memory_mapped_not_loaded(tmp_path):
    # 1500 image steps are 18 MB; neither adding nor reading them may hold them on the Python heap.
    directory = tmp_path / "replay"
    data_bytes = 1500 * 64 * 64 * 3
    tracemalloc.start()
    try:
        r = Replay(directory, capacity=10_000, chunk_size=100, batch_size=4, batch_length=16)
        fill(r, 0, 1500, image=True)
        r.close()
        _, add_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        r = Replay(directory, capacity=10_000, chunk_size=100, batch_size=4, batch_length=16)
        for _ in range(100):
            batch = r.sample()
            assert_consecutive(batch)
            np.testing.assert_array_equal(batch["image"][:, :, 5, 5, 0], batch["count"] % 256)
        _, read_peak = tracemalloc.get_traced_memory()
        r.close()
    finally:
        tracemalloc.stop()
    assert add_peak < data_bytes / 4, f"adding held {add_peak / 1e6:.1f} MB on the heap"
    assert read_peak < data_bytes / 4, f"sampling held {read_peak / 1e6:.1f} MB on the heap"
