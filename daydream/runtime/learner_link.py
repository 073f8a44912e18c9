"""The learner's network thread: owns both ZMQ sockets so training never delays an ack.

It receives experience chunks, hands each to `on_chunk` (which writes it durably to
replay) and acks it, answers actors' heartbeats and policy requests, and keeps a
snapshot of link counters and connected actors that the training thread reads. The
training thread only calls `publish` (one attribute swap inside PolicyServer) and
reads `snapshot`; ZMQ sockets are created, used and closed in this thread alone.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from daydream.config import TransportConfig
from daydream.transport import ExperienceReceiver, PolicyServer, PolicyUpdate
from daydream.transport.endpoints import policy_endpoint
from daydream.transport.keys import server_keys_from_dir

log = logging.getLogger(__name__)

OnChunk = Callable[[str, int, int, dict[str, np.ndarray]], None]


class LearnerLink(threading.Thread):
    def __init__(self, config: TransportConfig, on_chunk: OnChunk, state_dir: str | Path,
                 initial_policy: PolicyUpdate | None = None,
                 credit: Callable[[], int | None] = lambda: None) -> None:
        super().__init__(name="learner-link", daemon=True)
        self.config = config
        self.experience_endpoint = config.bind
        self.policy_endpoint = policy_endpoint(config.bind, "transport.bind")
        self._curve = server_keys_from_dir(config.curve.keys_dir) if config.curve.enabled else None
        self._on_chunk = on_chunk
        self._state_dir = Path(state_dir)
        self._initial_policy = initial_policy
        self._credit = credit
        self._done = False  # set by `finish`: replies tell actors that the run is over
        self._stop_event = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: PolicyServer | None = None
        self.snapshot: dict[str, Any] = {"experience": {}, "policy": {}, "actors": {}}

    def start(self) -> None:
        """Start the thread and wait until both sockets are bound (raises what binding raised)."""
        super().start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def publish(self, update: PolicyUpdate) -> str:
        assert self._server is not None, "start() the link before publishing"
        return self._server.publish(update)

    def finish(self) -> None:
        """From now on every ack and heartbeat tells actors that the run is over (train.steps reached)."""
        self._done = True

    @property
    def error(self) -> BaseException | None:
        return self._error

    def run(self) -> None:
        tc = self.config
        try:
            server = PolicyServer(self.policy_endpoint, curve=self._curve, max_message_bytes=tc.max_message_bytes)
        except BaseException as exc:
            self._error = _bind_error(exc, self.policy_endpoint)
            self._ready.set()
            return
        try:
            receiver = ExperienceReceiver(self.experience_endpoint, self._on_chunk, self._state_dir, curve=self._curve,
                                          policy_version=lambda: server.version, credit=self._credit,
                                          done=lambda: self._done, max_message_bytes=tc.max_message_bytes)
        except BaseException as exc:
            server.close()
            self._error = _bind_error(exc, self.experience_endpoint)
            self._ready.set()
            return
        if self._initial_policy is not None:
            server.publish(self._initial_policy)
        self._server = server
        self._ready.set()
        last_snapshot = 0.0
        try:
            while not self._stop_event.is_set():
                receiver.poll(timeout_ms=20)
                server.poll(0)
                now = time.monotonic()
                if now - last_snapshot > (0.05 if self._done else 0.2):  # finishing: the learner waits on it
                    last_snapshot = now
                    self.snapshot = {"experience": receiver.stats, "policy": server.stats,
                                     "actors": {a: dataclasses.asdict(i) | {"age_s": round(i.age_s, 2)}
                                                for a, i in receiver.actors().items()},
                                     "client_versions": dict(server.client_versions)}
        except BaseException as exc:  # surfaced to the training thread, which stops the learner
            log.exception("learner link thread failed")
            self._error = exc
        finally:
            receiver.close()
            server.close()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)


def _bind_error(exc: BaseException, endpoint: str) -> BaseException:
    if "Address already in use" in str(exc):
        return OSError(f"cannot bind {endpoint}: the address is in use (another learner running?); stop it or set "
                       "transport.bind to another port")
    return exc
