"""Helpers for tests that run learners and actors as real processes on loopback."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from daydream.replay import Replay
from daydream.runtime.status import read_status

REPO = Path(__file__).resolve().parents[1]


def ephemeral_port_range() -> tuple[int, int]:
    """The ports the OS hands out for outgoing connections (Linux: /proc; elsewhere IANA's range)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def free_port_pair() -> int:
    """A port P with P and P+1 free on loopback (experience and policy sockets).

    Chosen below the ephemeral range: an actor reconnecting to a learner that is down
    can be given the learner's own port as its local port (TCP self-connect), and the
    restarted learner then cannot bind it.
    """
    low = min(ephemeral_port_range()[0], 32768)
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(10_000, low - 2)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair found")


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


class Proc:
    """A `daydream` subcommand in its own process, logging to a file."""

    def __init__(self, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self.args = args
        self.process: subprocess.Popen | None = None

    def start(self) -> Proc:
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "daydream.cli", *self.args], stdout=out,
                                            stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.process.send_signal(sig)

    def stop(self, timeout: float = 150) -> int:
        """SIGINT and wait; returns the exit code (fails the test with the log if it hangs)."""
        self.signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGUSR1)  # the CLI dumps every thread's stack into the log: where it hangs
            time.sleep(2.0)
            self.process.kill()
            raise AssertionError(f"{self.args[0]} did not stop on SIGINT within {timeout} s:\n{self.log()}") from None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:] if self.log_path.exists() else ""


def start(log_path: Path, command: str, config: str, overrides: list[str], *extra: str) -> Proc:
    """`daydream COMMAND --config CONFIG --set ... EXTRA` in its own process, logging to `log_path`."""
    args = [command, "--config", config]
    for item in overrides:
        args += ["--set", item]
    return Proc(log_path, *args, *extra).start()


def learner(tmp: Path, overrides: list[str], *extra: str, name: str = "learner") -> Proc:
    return start(tmp / f"{name}.log", "learner", "pendulum_tiny", overrides, *extra)


def actor(tmp: Path, overrides: list[str], actor_id: str, *extra: str) -> Proc:
    return start(tmp / f"{actor_id}.log", "actor", "pendulum_tiny", overrides, "--id", actor_id, *extra)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, *procs: Proc) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for p in procs:
            if p.process is not None and p.process.poll() is not None and p.process.returncode not in (0, 130):
                raise AssertionError(f"{p.args[0]} exited with {p.process.returncode} while waiting for {what}:\n{p.log()}")
        time.sleep(0.2)
    logs = "\n".join(f"--- {p.args[0]} {p.log_path.name}:\n{p.log()}" for p in procs)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}")


def learner_status(logdir: Path) -> dict:
    return read_status(logdir)


def actor_status(logdir: Path, actor_id: str) -> dict:
    return read_status(logdir / "actors" / actor_id)


def replay_steps(logdir: Path) -> int:
    """Steps held in the learner's replay, read from disk by a fresh Replay (the learner must be stopped)."""
    with Replay(logdir / "replay", capacity=10**9, chunk_size=16, batch_size=1, batch_length=1) as replay:
        return len(replay)


def spooled_steps(logdir: Path, *actor_ids: str) -> int:
    return sum(int(actor_status(logdir, a)["steps_spooled"]) for a in actor_ids)


def wait_until_true(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` (errors count as False: files may be mid-write) until true or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (KeyError, OSError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
