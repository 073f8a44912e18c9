"""Helpers for tests that run learners and actors as real processes on loopback."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from daydream.replay import Replay
from daydream.runtime.local_run import (  # noqa: F401 (the process helpers live in the package, shared with benchmarks)
    REPO, Proc, actor_status, free_port_pair, learner_status, start, wait_until, wait_until_true)
from daydream.runtime.status import read_status


def fast_overrides(logdir: Path, port: int, *extra: str) -> list[str]:
    """pendulum_tiny made small and chatty: updates every few steps, frequent policies and status."""
    return [
        f"logdir={logdir}", f"transport.bind=tcp://127.0.0.1:{port}", f"transport.learner=tcp://127.0.0.1:{port}",
        "threads=1", "replay.batch_size=4", "replay.batch_length=16", "train.prefill=100", "train.train_ratio=16",
        "train.steps=0", "train.progress=false", "train.log_every=200", "train.checkpoint_every=400",
        "transport.chunk_length=16", "transport.publish_every=3", "transport.status_every_s=0.2",
        "transport.heartbeat_interval_s=0.2", "transport.learner_timeout_s=1.5", "transport.resend_timeout_s=1.0",
        "transport.drain_timeout_s=20", "transport.pace_slack_steps=64", *extra,
    ]


def learner(tmp: Path, overrides: list[str], *extra: str, name: str = "learner") -> Proc:
    return start(tmp / f"{name}.log", "learner", "pendulum_tiny", overrides, *extra)


def actor(tmp: Path, overrides: list[str], actor_id: str, *extra: str) -> Proc:
    return start(tmp / f"{actor_id}.log", "actor", "pendulum_tiny", overrides, "--id", actor_id, *extra)


def replay_steps(logdir: Path) -> int:
    """Steps held in the learner's replay, read from disk by a fresh Replay (the learner must be stopped)."""
    with Replay(logdir / "replay", capacity=10**9, chunk_size=16, batch_size=1, batch_length=1) as replay:
        return len(replay)


def spooled_steps(logdir: Path, *actor_ids: str) -> int:
    return sum(int(actor_status(logdir, a)["steps_spooled"]) for a in actor_ids)


def wait_for_learning_graph(logdir: Path, actor_id: str, steps: int, timeout: float, logs: Callable[[], str]) -> None:
    """A ROS graph at work: `steps` of experience at the learner, a learned policy at the robot actor `actor_id`,
    and the robot_driver active and commanded. Fails with `logs()` (read when it fails)."""
    try:
        wait_until_true(lambda: read_status(logdir / "actors" / actor_id).get("policy_version", 0) >= 1
                        and learner_status(logdir).get("received_steps", 0) >= steps, timeout,
                        "experience at the learner and a policy at the actor")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs()}") from None
    driver = read_status(logdir / "ros" / "robot_driver")
    assert driver["mode"] == "active" and driver["commands"] > 0, logs()


def stop_in_order(procs: list[tuple[str, subprocess.Popen]], timeout: float = 120) -> dict[str, int]:
    """SIGINT each process and wait for it to exit, in the order given (the learner last); their exit codes."""
    codes = {}
    for name, proc in procs:
        proc.send_signal(signal.SIGINT)
        codes[name] = proc.wait(timeout)
    return codes
