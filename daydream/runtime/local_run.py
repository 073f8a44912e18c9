"""`daydream` commands as local processes on loopback, for tests and benchmarks: free port pairs,
a process handle that logs to a file, and waits on status files."""

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

from daydream.config import REPO_ROOT
from daydream.runtime.status import read_status

REPO = REPO_ROOT


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


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, *procs: Proc) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for p in procs:
            if p.process is not None and p.process.poll() is not None and p.process.returncode not in (0, 130):
                raise AssertionError(f"{p.args[0]} exited with {p.process.returncode} while waiting for {what}:\n"
                                     f"{p.log()}")
        time.sleep(0.2)
    for p in procs:  # where each one is: the CLI dumps every thread's stack into its log
        p.signal(signal.SIGUSR1)
    time.sleep(1.0)
    logs = "\n".join(f"--- {p.args[0]} {p.log_path.name}:\n{p.log()}" for p in procs)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}")


def learner_status(logdir: Path) -> dict:
    return read_status(logdir)


def actor_status(logdir: Path, actor_id: str) -> dict:
    return read_status(logdir / "actors" / actor_id)



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
