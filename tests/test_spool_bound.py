"""The bounded spool and a full disk, at the sender: a robot's sender drops its oldest unacked
chunks (reporting each), a sim's sender keeps everything and says when it has no room, and
ENOSPC while writing a chunk or the spool's meta file never crashes the sender nor leaves a
half-written or unreadable chunk behind. Everything runs in-process over loopback."""

from __future__ import annotations

import errno
import io
from pathlib import Path

import numpy as np
import pytest

from daydream.transport import ExperienceReceiver, ExperienceSender
from daydream.transport.spool import Spool, chunk_bytes
from daydream.transport.sender import SpoolFull
from helpers import pump

pytestmark = pytest.mark.timeout(60)

REAL_SAVEZ = np.savez
NOWHERE = "tcp://127.0.0.1:9"  # nothing listens: chunks stay unacked in the spool


def chunk(steps: int = 16, first: int = 0) -> dict[str, np.ndarray]:
    """A chunk whose `step` array numbers its steps, so each chunk's content is recognisable."""
    return {"step": np.arange(first, first + steps, dtype=np.int64), "obs": np.ones((steps, 32), np.float32)}




def check_spool_consistent(directory: Path, actor_id: str) -> Spool:
    """A fresh Spool over the directory: no temp files, every chunk loads, byte count matches the files."""
    assert not list(directory.glob(".*.tmp")), "a failed write left a temp file"
    spool = Spool(directory, actor_id)
    for seq in spool.seqs():
        _, data = spool.load(seq)
        assert len(data["step"]) > 0
    assert spool.bytes == sum(p.stat().st_size for p in directory.glob("*.npz"))
    return spool


def npz_size(arrays: dict[str, np.ndarray]) -> int:
    buf = io.BytesIO()
    REAL_SAVEZ(buf, **arrays)
    return len(buf.getvalue())


class SmallDisk:
    """Replaces np.savez: writes like it, but fails with ENOSPC once the spool's chunk files would pass `capacity`."""

    def __init__(self, directory: Path, capacity: int) -> None:
        self.directory, self.capacity, self.failures = directory, capacity, 0

    def __call__(self, f, **arrays) -> None:
        used = sum(p.stat().st_size for p in self.directory.glob("*.npz"))
        if used + npz_size(arrays) > self.capacity:
            f.write(b"PK\x03\x04 half a chunk")  # what a real full disk leaves: a truncated file
            self.failures += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        REAL_SAVEZ(f, **arrays)


def test_robot_policy_drops_oldest_chunks_to_stay_within_the_bound(tmp_path):
    size = chunk_bytes(chunk())
    bound = int(3.5 * size)
    with ExperienceSender(NOWHERE, "robot", tmp_path / "spool", spool_max_bytes=bound, when_full="drop_oldest") as s:
        seqs = [s.send(chunk(first=16 * i), episode_id=0) for i in range(10)]
        assert seqs == list(range(10))  # every chunk was spooled
        assert s.spool.bytes <= bound
        drops = s.take_drops()
        # the oldest unacked chunks went, in order, each counted with its steps and cause
        assert [d.seq for d in drops] == list(range(10 - len(s.spool)))
        assert len(drops) >= 6 and all(d.steps == 16 and d.cause == "spool_bound" and d.written for d in drops)
        assert s.spool.seqs() == list(range(len(drops), 10))
        assert s.take_drops() == []
    spool = check_spool_consistent(tmp_path / "spool", "robot")
    assert spool.seqs() == list(range(len(drops), 10)) and spool.next_seq >= 10
    _, newest = spool.load(9)
    assert newest["step"][0] == 16 * 9  # the newest experience is what was kept


def test_sim_policy_keeps_every_chunk_and_waits_for_acks_to_make_room(tmp_path):
    size = chunk_bytes(chunk())
    bound = int(3.5 * size)
    delivered: list[int] = []
    accept = {"on": False}

    def on_chunk(actor_id, seq, episode_id, data):
        if not accept["on"]:
            raise RuntimeError("not now")  # not acked: the actor keeps it spooled
        delivered.append(seq)

    with ExperienceReceiver("tcp://127.0.0.1:*", on_chunk, tmp_path / "state") as receiver, \
            ExperienceSender(receiver.endpoint, "sim", tmp_path / "spool", spool_max_bytes=bound, when_full="wait",
                             resend_timeout_s=0.2) as s:
        sent = 0
        while s.has_room:  # what a paced actor checks before each step
            s.send(chunk(first=16 * sent), episode_id=0)
            sent += 1
        assert sent >= 3 and s.spool.bytes <= bound and not s.take_drops()
        pump(lambda: False, lambda: receiver.poll(5), s.poll, timeout=0.5)
        assert not s.has_room and len(s.spool) == sent  # nothing acked, nothing dropped
        accept["on"] = True
        assert pump(lambda: s.has_room and not s.pending, lambda: receiver.poll(5), s.poll)
        assert sorted(delivered) == list(range(sent)) and not s.take_drops()


def test_full_disk_robot_drops_oldest_then_gives_up_the_chunk_without_corrupting(tmp_path, monkeypatch):
    spool_dir = tmp_path / "spool"
    disk = SmallDisk(spool_dir, capacity=int(2.5 * npz_size(chunk())))
    monkeypatch.setattr(np, "savez", disk)
    with ExperienceSender(NOWHERE, "robot", spool_dir, when_full="drop_oldest") as s:  # no bound: only the disk
        seqs = [s.send(chunk(first=16 * i), episode_id=0) for i in range(6)]
        assert seqs == list(range(6)) and disk.failures >= 4
        drops = s.take_drops()
        assert [d.seq for d in drops] == list(range(4)) and all(d.cause == "disk_full" and d.written for d in drops)
        assert s.spool.seqs() == [4, 5]
        # the disk fills up with someone else's data: nothing of ours left to free, the new chunk is given up
        disk.capacity = 0
        assert s.send(chunk(first=96), episode_id=0) is None
        lost = s.take_drops()
        assert lost[-1].written is False and lost[-1].steps == 16 and lost[-1].cause == "disk_full"
        assert len(s.spool) == 0
        disk.capacity = 10**9  # space again: spooling goes on with fresh seqs
        seq = s.send(chunk(first=112), episode_id=0)
        assert seq is not None and seq > 6
    spool = check_spool_consistent(spool_dir, "robot")
    assert spool.seqs() == [seq]


def test_full_disk_sim_raises_spool_full_and_the_retry_keeps_the_seq(tmp_path, monkeypatch):
    spool_dir = tmp_path / "spool"
    disk = SmallDisk(spool_dir, capacity=int(1.5 * npz_size(chunk())))
    monkeypatch.setattr(np, "savez", disk)
    with ExperienceSender(NOWHERE, "sim", spool_dir, when_full="wait") as s:
        assert s.send(chunk(), episode_id=0) == 0
        with pytest.raises(SpoolFull, match="full"):
            s.send(chunk(first=16), episode_id=0)
        with pytest.raises(SpoolFull):
            s.send(chunk(first=16), episode_id=0)
        assert s.spool.seqs() == [0] and not s.take_drops()
        s.spool.remove(0)  # an ack frees space
        assert s.send(chunk(first=16), episode_id=0) == 1  # the retried chunk keeps its seq: no gap
    spool = check_spool_consistent(spool_dir, "sim")
    assert spool.seqs() == [1]


def test_full_disk_while_reserving_seqs_never_reuses_a_seq(tmp_path, monkeypatch):
    import daydream.transport.spool as spool_module

    real = spool_module.atomic_write_bytes
    full = {"on": False}

    def write_meta(path, data, durable=True):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data, durable)

    monkeypatch.setattr(spool_module, "atomic_write_bytes", write_meta)
    spool = Spool(tmp_path / "spool", "a", reserve_block=2)
    assert [spool.allocate(), spool.allocate()] == [0, 1]
    full["on"] = True
    with pytest.raises(OSError):
        spool.allocate()  # the next block cannot be reserved
    full["on"] = False
    assert spool.allocate() == 2
    # a restart continues past everything handed out
    assert Spool(tmp_path / "spool", "a", reserve_block=2).next_seq >= 3


def test_sender_counts_reserved_seq_failures_as_disk_full(tmp_path, monkeypatch):
    import daydream.transport.spool as spool_module

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with ExperienceSender(NOWHERE, "robot", tmp_path / "spool", when_full="drop_oldest") as s:
        monkeypatch.setattr(spool_module, "atomic_write_bytes", no_space)
        assert s.send(chunk(), episode_id=0) is None  # not even a seq could be reserved: given up, no crash
        (drop,) = s.take_drops()
        assert drop.seq is None and drop.written is False and drop.cause == "disk_full"


def test_spool_reopened_counts_its_bytes_and_reads_step_counts(tmp_path):
    s = Spool(tmp_path / "spool", "a", max_bytes=10**6)
    for i in range(3):
        s.write(s.allocate(), 0, chunk(steps=5 + i))
    reopened = Spool(tmp_path / "spool", "a", max_bytes=10**6)
    assert reopened.bytes == s.bytes > 0
    assert reopened.drop_oldest() == (0, 5) and reopened.drop_oldest() == (1, 6)
    assert reopened.seqs() == [2] and reopened.bytes == (tmp_path / "spool" / "000000000002_0.npz").stat().st_size
    assert Spool(tmp_path / "x", "b", max_bytes=1).has_room(10**9)  # an empty spool always takes one chunk
