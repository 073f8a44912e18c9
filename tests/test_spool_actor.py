"""The bounded spool at the actor, in-process on Pendulum: a robot (pace_actors false) keeps
acting with its learner away, dropping its oldest unacked chunks, counting them in
status.json and dropped.jsonl and logging once per episode; a sim (pace_actors true) stops
stepping while its spool is full and goes on, dropping nothing, once the learner acks."""

from __future__ import annotations

import errno
import json
import logging
import threading
import time

import numpy as np
import pytest

from daydream.config import load_config
from daydream.runtime.actor import Actor
from daydream.runtime.status import read_status
from daydream.transport import ExperienceReceiver
from processes import free_port_pair

pytestmark = pytest.mark.timeout(120)


def actor_config(logdir, port, *extra):
    return load_config("pendulum_tiny", [f"logdir={logdir}", f"transport.learner=tcp://127.0.0.1:{port}",
                                         "transport.actor_id=a0", "transport.chunk_length=16",
                                         "transport.status_every_s=0.1", "transport.drain_timeout_s=0.5",
                                         "transport.heartbeat_interval_s=0.1", *extra])


def test_robot_with_full_spool_keeps_acting_and_drops_oldest_chunks(tmp_path, caplog):
    port = free_port_pair()  # nothing listens there: the learner is away all along
    config = actor_config(tmp_path, port, "transport.pace_actors=false", "transport.spool_max_mb=0.012")
    actor = Actor(config, max_steps=650)  # a bit more than 3 Pendulum episodes (200 steps)
    try:
        with caplog.at_level(logging.ERROR, logger="daydream.runtime.actor"):
            counters = actor.run()
        spool_bytes, left = actor.sender.spool.bytes, sum(actor.sender.spool.steps_of(s)
                                                          for s in actor.sender.spool.seqs())
    finally:
        actor.close()
    status = read_status(tmp_path / "actors" / "a0")
    bound = int(0.012 * 2**20)
    records = 650 + status["episodes"]  # each episode also records its reset observation
    assert status["episodes"] == 3
    assert counters["steps_spooled"] == records and status["steps_spooled"] == records  # it never stopped acting
    assert spool_bytes <= bound and status["spool_bytes"] == spool_bytes
    assert status["spool_dropped_chunks"] > 10
    # every step is either still in the spool or counted as dropped, by the spool bound
    assert left + status["spool_dropped_steps"] == records
    assert status["spool_dropped_bound_steps"] == status["spool_dropped_steps"]
    lines = [json.loads(x) for x in (tmp_path / "actors" / "a0" / "dropped.jsonl").read_text().splitlines()]
    assert len(lines) == status["spool_dropped_chunks"]
    assert sum(x["steps"] for x in lines) == status["spool_dropped_steps"]
    assert [x["seq"] for x in lines] == sorted(x["seq"] for x in lines)  # oldest first
    loud = [r for r in caplog.records if "SPOOL FULL" in r.getMessage()]
    assert 1 <= len(loud) <= status["episodes"] + 1  # once per episode, not once per chunk


def test_sim_with_full_spool_waits_and_drops_nothing(tmp_path):
    port = free_port_pair()
    accept = threading.Event()
    delivered: set[int] = set()

    def on_chunk(actor_id, seq, episode_id, chunk):
        if not accept.is_set():
            raise RuntimeError("refusing chunks for now")  # not acked: they stay in the actor's spool
        delivered.add(seq)

    receiver = ExperienceReceiver(f"tcp://127.0.0.1:{port}", on_chunk, tmp_path / "state", credit=lambda: 10**9)
    config = actor_config(tmp_path, port, "transport.pace_actors=true", "transport.spool_max_mb=0.012",
                          "transport.resend_timeout_s=0.3")
    actor = Actor(config)
    stop = threading.Event()
    thread = threading.Thread(target=actor.run, args=(stop,), daemon=True)
    thread.start()

    def serve_until(predicate, timeout=60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline and thread.is_alive(), "timed out"
            receiver.poll(10)

    try:
        serve_until(lambda: actor.waiting == "spool_full")
        held = actor.sender.steps_sent + len(actor.chunks.rows)
        end = time.monotonic() + 1.0
        serve_until(lambda: time.monotonic() > end)
        # while the spool is full, the sim takes no step and drops nothing
        assert actor.waiting == "spool_full"
        assert actor.sender.steps_sent + len(actor.chunks.rows) == held
        assert actor.sender.spool.bytes <= int(0.012 * 2**20)
        assert actor.counters["spool_dropped_chunks"] == 0
        accept.set()
        serve_until(lambda: actor.sender.steps_sent > held + 64)
        stop.set()
        serve_until(lambda: not thread.is_alive())
    finally:
        stop.set()
        thread.join(30)
        actor.close()
        receiver.close()
    status = read_status(tmp_path / "actors" / "a0")
    assert status["spool_dropped_chunks"] == 0 and status["spool_dropped_steps"] == 0
    # every chunk reached the learner or is still spooled: none was dropped
    assert delivered | set(actor.sender.spool.seqs()) == set(range(status["last_seq"] + 1))


class FullDisk:
    """np.savez that fails with ENOSPC while `full` is set (after writing a few bytes, as a real disk does)."""

    def __init__(self) -> None:
        self.full = threading.Event()
        self.failures = 0
        self._savez = np.savez

    def __call__(self, f, **arrays) -> None:
        if self.full.is_set():
            f.write(b"PK\x03\x04")
            self.failures += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        self._savez(f, **arrays)


def test_full_disk_robot_drops_and_sim_waits(tmp_path, monkeypatch):
    disk = FullDisk()
    monkeypatch.setattr(np, "savez", disk)
    port = free_port_pair()
    # the robot, learner away: a full disk costs it its oldest chunks, then the new ones, never a step
    robot = Actor(actor_config(tmp_path / "robot", port, "transport.pace_actors=false"), max_steps=300)
    disk.full.set()
    try:
        robot.run()
    finally:
        robot.close()
    status = read_status(tmp_path / "robot" / "actors" / "a0")
    assert disk.failures > 0 and status["spool_dropped_disk_full_steps"] == 300 + status["episodes"]
    assert status["steps_spooled"] == 0 and not list((tmp_path / "robot" / "actors" / "a0" / "spool").glob("*.npz"))
    assert not list((tmp_path / "robot" / "actors" / "a0" / "spool").glob(".*.tmp"))
    # the sim: it stops stepping until the disk has room again, and drops nothing
    disk.full.clear()
    receiver = ExperienceReceiver(f"tcp://127.0.0.1:{port}", lambda *a: None, tmp_path / "state", credit=lambda: 10**9)
    sim = Actor(actor_config(tmp_path / "sim", port, "transport.pace_actors=true"))
    stop = threading.Event()
    thread = threading.Thread(target=sim.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while sim.counters["steps_spooled"] < 64:
            assert time.monotonic() < deadline and thread.is_alive()
            receiver.poll(10)
        disk.full.set()
        while sim.waiting != "disk_full":
            assert time.monotonic() < deadline and thread.is_alive()
            receiver.poll(10)
        held = sim.sender.steps_sent + len(sim.chunks.rows)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            receiver.poll(10)
        assert sim.waiting == "disk_full" and sim.sender.steps_sent + len(sim.chunks.rows) == held
        disk.full.clear()
        while sim.sender.steps_sent <= held + 64:
            assert time.monotonic() < deadline and thread.is_alive()
            receiver.poll(10)
        stop.set()
        while thread.is_alive():
            assert time.monotonic() < deadline + 30
            receiver.poll(10)
    finally:
        stop.set()
        thread.join(30)
        sim.close()
        receiver.close()
    assert sim.counters["spool_dropped_chunks"] == 0


def test_ctrl_c_right_after_a_chunk_is_spooled_still_counts_it(tmp_path):
    # SIGINT raises KeyboardInterrupt wherever the actor is; landing just after a chunk reached the
    # spool (during its fsync, say) must not leave that chunk out of steps_spooled: it is sent on
    # the next start, so the count would fall short of what reaches replay
    port = free_port_pair()  # nothing listens there: every chunk stays in the spool
    actor = Actor(actor_config(tmp_path, port, "transport.pace_actors=false"), max_steps=0)
    real_send, sent = actor.sender.send, []

    def send_then_interrupted(chunk, episode_id):
        sent.append(real_send(chunk, episode_id))
        if len(sent) == 3:
            raise KeyboardInterrupt
        return sent[-1]

    actor.sender.send = send_then_interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            actor.run()
        in_spool = sum(actor.sender.spool.steps_of(s) for s in actor.sender.spool.seqs())
    finally:
        actor.close()
    status = read_status(tmp_path / "actors" / "a0")
    assert len(sent) >= 3 and in_spool >= 3 * 16
    assert status["steps_spooled"] == in_spool and status["last_seq"] == max(s for s in sent if s is not None)


def test_ctrl_c_while_a_torch_policy_loads_stops_the_actor(tmp_path):
    # torch turns a KeyboardInterrupt raised inside its C++ into a RuntimeError around it: that must
    # stop the actor like any Ctrl-C, not be logged as an unusable policy (the actor then acted on)
    actor = Actor(actor_config(tmp_path, free_port_pair(), "transport.policy_runtime=torch"), max_steps=0)

    def interrupted_inside_torch(update):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from None

    actor._prepare = interrupted_inside_torch
    actor.client.poll = lambda: object()  # a new policy is on offer
    try:
        with pytest.raises(KeyboardInterrupt):
            actor._poll_policy()
    finally:
        actor.close()
    assert actor.rejected_policies == 0
