"""`daydream run`: one learner and N actors on this machine, each its own process.

The learner's terminal output (its progress bar) is the one display; each actor logs
to `<logdir>/actors/<actor_id>.log`. Children run in their own sessions so that a
Ctrl-C reaches only this launcher, which then stops them in the order that loses
nothing: actors first (they spool their last steps and wait for acks), then the
learner (it checkpoints). An actor that crashes is restarted (its spool is resent).
When the learner finishes its `train.steps` it tells the actors, which drain and exit;
any still running are then stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from daydream.config import Config
from daydream.transport.endpoints import local_connect_address

log = logging.getLogger(__name__)

MAX_RESTARTS = 5


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path | None = None  # None: share this terminal
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        out = open(self.log_path, "ab") if self.log_path else None
        try:
            self.process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT if out else None,
                                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            if out:
                out.close()
        self.started_at = time.monotonic()

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def restart_if_exited(self, allowed: bool = True) -> bool:
        """If the process has failed (exited non-zero): restart it (up to MAX_RESTARTS times, and only if
        `allowed`), logging the tail of its log either way. Returns whether it was restarted.

        A process that exits 0 finished on purpose (an actor or learner whose run reached train.steps,
        a node that was asked to stop) and is never restarted."""
        code = self.process.poll() if self.process is not None else None
        if code is None or self.restarts > MAX_RESTARTS:
            return False
        if code == 0:
            log.info("%s finished (exit 0); not restarting it", self.name)
            self.restarts = MAX_RESTARTS + 1  # said once
            return False
        tail = log_tail(self.log_path)
        if not allowed or self.restarts == MAX_RESTARTS:
            log.error("%s exited with %s; not restarting it%s. Last lines of %s:\n%s", self.name, code,
                      f" again after {MAX_RESTARTS} restarts" if allowed else "", self.log_path, tail)
            self.restarts = MAX_RESTARTS + 1  # said once; never restarted again
            return False
        self.restarts += 1
        log.warning("%s exited with %s; restarting it (%d/%d). Last lines of %s:\n%s", self.name, code, self.restarts,
                    MAX_RESTARTS, self.log_path, tail)
        self.start()
        return True

    def wait(self, timeout: float) -> int | None:
        """Wait for exit; SIGKILL after `timeout`. Returns the exit code."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", self.name, timeout)
            self.process.kill()
            return self.process.wait()


def cli_argv(command: str, config_arg: str, overrides: list[str], *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "daydream.cli", command, "--config", config_arg]
    for item in overrides:
        argv += ["--set", item]
    return argv + list(extra)


class LocalRun:
    def __init__(self, config: Config, config_arg: str, overrides: list[str], actors: int, resume: bool = False,
                 policy: str | None = None) -> None:
        if actors < 1:
            raise ValueError(f"--actors must be at least 1, got {actors}")
        self.config = config
        self.logdir = Path(config.logdir)
        learner_address = local_connect_address(config.transport.bind)
        sets = [*overrides, f"logdir={config.logdir}"]
        self.learner = Child("learner", cli_argv("learner", config_arg, sets, *(["--resume"] if resume else [])))
        (self.logdir / "actors").mkdir(parents=True, exist_ok=True)
        self.actors = []
        for i in range(actors):
            actor_id = f"actor-{i}"
            argv = cli_argv("actor", config_arg, [*sets, f"transport.actor_id={actor_id}", "train.progress=false"],
                            "--learner", learner_address, *(["--policy-runtime", policy] if policy else []))
            self.actors.append(Child(actor_id, argv, self.logdir / "actors" / f"{actor_id}.log"))
        self.interrupted = False

    def run(self) -> int:
        """Start everything, supervise until the learner ends or Ctrl-C; returns the learner's exit code."""
        self.learner.start()
        for actor in self.actors:
            actor.start()
        log.info("started a learner and %d actors; actor logs in %s", len(self.actors), self.logdir / "actors")
        code: int | None = None
        try:
            while code is None:
                time.sleep(0.5)
                code = self.learner.process.poll()
                for actor in self.actors:
                    actor.restart_if_exited()
        except KeyboardInterrupt:
            self.interrupted = True
            log.warning("stopping: actors first (they spool and drain), then the learner (it checkpoints)")
        self.stop()
        return self.learner.process.returncode if code is None else code

    def stop(self) -> None:
        """Actors first, then the learner; a second Ctrl-C kills whatever is still running."""
        drain = self.config.transport.drain_timeout_s
        try:
            for actor in self.actors:
                actor.signal(signal.SIGINT)
            for actor in self.actors:
                actor.wait(drain + 30)
            self.learner.signal(signal.SIGINT)
            self.learner.wait(120)
        except KeyboardInterrupt:
            log.warning("second interrupt: killing the learner and actors (unacked chunks stay in the actors' spools)")
            for child in (*self.actors, self.learner):
                child.signal(signal.SIGKILL)
                if child.process is not None:
                    child.process.wait()


def log_tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
