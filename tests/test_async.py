"""The asynchronous learner and actors as real processes on loopback: training with policy
updates, `daydream run` and its Ctrl-C, and the faults that must lose and double nothing
(learner killed, learner paused, actor killed). Each fault test ends by checking that
the steps the actors spooled equal the steps the learner's replay holds."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from processes import (REPO, actor, actor_status, fast_overrides, free_port_pair, learner, learner_status,
                       replay_steps, spooled_steps, wait_until)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def as_robot(overrides: list[str]) -> list[str]:
    """A robot's settings: it acts on whatever the learner does (a paced sim waits while the learner is away).

    It runs unpaced, so longer chunks keep the learner's per-chunk writes ahead of it.
    """
    return [*overrides, "transport.pace_actors=false", "transport.chunk_length=128"]


def versions_loaded(logdir, actor_id) -> set[int]:
    return {int(v) for v in actor_status(logdir, actor_id).get("policy_loaded_at", {})}


def stop_all_and_count(logdir, learner_proc, actors, ids):
    """Stop actors (they drain to the learner), then the learner; return (spooled, replayed)."""
    for a in actors:
        assert a.stop() in (0, 130), a.log()
    for actor_id in ids:
        assert actor_status(logdir, actor_id)["pending_chunks"] == 0, f"{actor_id} did not drain"
    assert learner_proc.stop() in (0, 130), learner_proc.log()
    return spooled_steps(logdir, *ids), replay_steps(logdir)


def test_daydream_run_trains_and_two_policy_versions_reach_both_actors(tmp_path):
    logdir, port = tmp_path / "run", free_port_pair()
    args = [sys.executable, "-m", "daydream.cli", "run", "--config", "pendulum_tiny", "--actors", "2"]
    for item in fast_overrides(logdir, port):
        args += ["--set", item]
    with open(tmp_path / "run.log", "wb") as out:
        launcher = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    try:
        def two_versions_everywhere() -> bool:
            return all(len(versions_loaded(logdir, a)) >= 2 for a in ("actor-0", "actor-1"))

        deadline = time.monotonic() + 200
        while not two_versions_everywhere():
            assert launcher.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.5)
        status = learner_status(logdir)
        assert status["updates"] > 0 and status["policy_version"] >= 2
        assert set(status["actors"]) == {"actor-0", "actor-1"}
        launcher.send_signal(signal.SIGINT)  # what Ctrl-C does to the launcher
        assert launcher.wait(120) in (0, 130)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    # every child is gone and stopped cleanly: actors drained, the learner checkpointed
    assert (logdir / "checkpoint.pt").exists()
    out = subprocess.run(["pgrep", "-f", str(logdir)], capture_output=True, text=True)
    assert not out.stdout.strip(), f"leftover processes: {out.stdout}"
    assert spooled_steps(logdir, "actor-0", "actor-1") == replay_steps(logdir)


def test_learner_sigkilled_and_restarted_while_actors_run(tmp_path):
    logdir, port = tmp_path / "run", free_port_pair()
    overrides = fast_overrides(logdir, port)
    lrn = learner(tmp_path, overrides)
    robots = as_robot(overrides)  # they act on without the learner
    actors = [actor(tmp_path, robots, "a0"), actor(tmp_path, robots, "a1", "--policy", "torch")]
    try:
        wait_until(lambda: learner_status(logdir).get("policy_version", 0) >= 1
                   and all(versions_loaded(logdir, a) for a in ("a0", "a1")), 150, "a first policy on both actors",
                   lrn, *actors)
        lrn.kill()
        before = spooled_steps(logdir, "a0", "a1")
        # actors go on (on their last policy) once the learner is declared gone, spooling what they produce
        wait_until(lambda: spooled_steps(logdir, "a0", "a1") > before + 64
                   and all(actor_status(logdir, a)["pending_chunks"] > 0 for a in ("a0", "a1")), 60,
                   "actors to act and spool without the learner", *actors)
        lrn = learner(tmp_path, overrides, "--resume", name="learner2")
        received_then = spooled_steps(logdir, "a0", "a1")
        wait_until(lambda: learner_status(logdir).get("received_steps", 0) >= received_then, 90,
                   "the restarted learner to receive the spooled steps", lrn, *actors)
        spooled, replayed = stop_all_and_count(logdir, lrn, actors, ("a0", "a1"))
    finally:
        for p in (lrn, *actors):
            if p.alive():
                p.kill()
    assert spooled == replayed
    assert max(versions_loaded(logdir, "a1")) >= 1  # the torch actor ran learner policies too


def test_learner_paused_robot_keeps_acting_and_spools_sim_waits(tmp_path):
    logdir, port = tmp_path / "run", free_port_pair()
    overrides = fast_overrides(logdir, port)
    lrn = learner(tmp_path, overrides)
    actors = [actor(tmp_path, as_robot(overrides), "a0"), actor(tmp_path, overrides, "a1")]  # a robot and a sim
    try:
        wait_until(lambda: all(versions_loaded(logdir, a) for a in ("a0", "a1")), 150, "a first policy on both actors",
                   lrn, *actors)
        lrn.signal(signal.SIGSTOP)
        wait_until(lambda: all(not actor_status(logdir, a)["learner_alive"] for a in ("a0", "a1")), 30,
                   "actors to notice the learner is gone", *actors)
        paused_at = spooled_steps(logdir, "a0")
        version = {a: actor_status(logdir, a)["policy_version"] for a in ("a0", "a1")}
        wait_until(lambda: spooled_steps(logdir, "a0") > paused_at + 256, 60,
                   "the robot to keep acting (on its last policy) while the learner is paused", *actors)
        assert {a: actor_status(logdir, a)["policy_version"] for a in ("a0", "a1")} == version
        assert actor_status(logdir, "a0")["pending_chunks"] > 0
        # the sim holds at the learner's last credit (see test_run_edges.py)
        wait_until(lambda: actor_status(logdir, "a1")["waiting"] == "credit", 60, "the sim to wait", *actors)
        sim = actor_status(logdir, "a1")
        assert sim["steps_since_credit"] <= max(sim["credit_granted"], 0) + 1  # + an episode's reset record
        lrn.signal(signal.SIGCONT)
        wait_until(lambda: all(actor_status(logdir, a)["learner_alive"] for a in ("a0", "a1")), 60,
                   "actors to hear from the learner again", lrn, *actors)
        spooled, replayed = stop_all_and_count(logdir, lrn, actors, ("a0", "a1"))
    finally:
        lrn.signal(signal.SIGCONT)
        for p in (lrn, *actors):
            if p.alive():
                p.kill()
    assert spooled == replayed


def test_actor_sigkilled_and_restarted_resends_its_spool(tmp_path):
    logdir, port = tmp_path / "run", free_port_pair()
    overrides = fast_overrides(logdir, port)
    robot = as_robot(overrides)  # it spools on while the learner is paused
    lrn = learner(tmp_path, overrides)
    a0 = actor(tmp_path, robot, "a0")
    try:
        wait_until(lambda: versions_loaded(logdir, "a0"), 150, "a first policy", lrn, a0)
        # pause the learner so the actor's spool holds unacked chunks when it dies: chunks spooled once
        # acks sent before the pause have landed (a status written a second later) can no longer be acked
        lrn.signal(signal.SIGSTOP)
        paused = time.time()
        wait_until(lambda: (s := actor_status(logdir, "a0"))["time"] > paused + 1.0 and s["pending_chunks"] >= 3, 60,
                   "unacked chunks in the spool", a0)
        a0.kill()
        assert len(list((logdir / "actors" / "a0" / "spool").glob("*.npz"))) >= 3
        spooled_before_the_kill = spooled_steps(logdir, "a0")
        lrn.signal(signal.SIGCONT)
        restarted = time.time()
        a0 = actor(tmp_path, robot, "a0")
        # the robot acts on unpaced, so wait for what it had spooled before it died (not for a quiet moment),
        # in a status the restarted process wrote (the learner may have taken chunks it had not acked yet)
        wait_until(lambda: actor_status(logdir, "a0")["time"] > restarted
                   and learner_status(logdir).get("received_steps", 0) >= spooled_before_the_kill, 90,
                   "the restarted actor's spool to reach the learner", lrn, a0)
        spooled, replayed = stop_all_and_count(logdir, lrn, [a0], ("a0",))
    finally:
        lrn.signal(signal.SIGCONT)
        for p in (lrn, a0):
            if p.alive():
                p.kill()
    assert spooled == replayed
    assert versions_loaded(logdir, "a0")  # it came back with its cached policy or a fresh one
