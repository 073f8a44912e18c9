"""The two socket ends every link is made of: a learner ROUTER (binds) and an actor DEALER (connects).

They own the ZMQ context, CURVE setup, non-blocking sends and decoding with
per-kind error counters, so the experience and policy classes only handle messages.
Every socket has LINGER 0: anything unsent at close is either in the actor's spool
or re-requested, so waiting on close would only stall shutdown.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterator
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from daydream.transport.codec import DEFAULT_MAX_MESSAGE_BYTES, ProtocolError, decode, encode
from daydream.transport.keys import CurveClientKeys, CurveServerKeys, secure_client, secure_server

log = logging.getLogger(__name__)

_AUTH_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


def _close(socket: zmq.Socket, monitor: zmq.Socket | None) -> None:
    """Close a socket and its CURVE monitor (if any) without lingering."""
    if monitor is not None:
        socket.disable_monitor()
        monitor.close(linger=0)
    socket.close(linger=0)


def _queued(socket: zmq.Socket, timeout_ms: int, max_messages: int) -> Iterator[list[zmq.Frame]]:
    """Wait up to `timeout_ms` for a first message, then yield the queued ones (at most `max_messages`)."""
    if timeout_ms and not socket.poll(timeout_ms, zmq.POLLIN):
        return
    for _ in range(max_messages):
        try:
            yield socket.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return


def _log_bad(stats: collections.Counter, kind: str, where: str, error: Exception) -> None:
    stats[kind] += 1
    n = stats[kind]
    # a broken or hostile peer can send thousands per second: log the first few, then every 1000th
    if n <= 10 or n % 1000 == 0:
        log.warning("%s: dropped bad message #%d (%s): %s", where, n, kind, error)


def _count_auth_failures(monitor: zmq.Socket | None, stats: collections.Counter, message: str, endpoint: str) -> None:
    """Count and log (rate-limited) the CURVE handshake failures a socket monitor reported."""
    if monitor is None:
        return
    while monitor.poll(0):
        event = parse_monitor_message(monitor.recv_multipart())
        stats["auth_failures"] += 1
        n = stats["auth_failures"]
        if n <= 3 or n % 100 == 0:  # a rejected peer retries every few hundred ms
            log.warning(message, endpoint, event["event"], n)


class RouterEnd:
    """Learner side: a bound ROUTER that receives (peer identity, type, payload) and replies by identity."""

    def __init__(self, endpoint: str, curve: CurveServerKeys | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, hwm: int = 1000) -> None:
        self.max_message_bytes = max_message_bytes
        self.stats: collections.Counter[str] = collections.Counter()
        self._context = zmq.Context()
        self._auth = None
        self._monitor = None
        self.socket = self._context.socket(zmq.ROUTER)
        self.socket.linger = 0
        self.socket.sndhwm = hwm
        self.socket.rcvhwm = hwm
        # an unknown/gone identity raises instead of vanishing, and a full pipe raises Again under NOBLOCK
        self.socket.router_mandatory = 1
        # hard memory guard per frame; moderately oversized messages still arrive and are counted by decode
        self.socket.maxmsgsize = 2 * max_message_bytes
        try:
            if curve is not None:
                self._auth = secure_server(self._context, self.socket, curve)
                self._monitor = self.socket.get_monitor_socket(_AUTH_EVENTS)
            self.socket.bind(endpoint)
        except Exception:
            self.close()
            raise
        self.endpoint: str = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def recv(self, timeout_ms: int, max_messages: int) -> list[tuple[bytes, str, dict[str, Any]]]:
        """Wait up to `timeout_ms` for the first message, then take what is queued (at most `max_messages`)."""
        out: list[tuple[bytes, str, dict[str, Any]]] = []
        self._drain_monitor()
        for frames in _queued(self.socket, timeout_ms, max_messages):
            identity = frames[0].bytes
            try:
                msg_type, payload = decode(frames[1:], self.max_message_bytes)
            except ProtocolError as e:
                _log_bad(self.stats, e.kind, f"learner socket {self.endpoint}", e)
                continue
            out.append((identity, msg_type, payload))
        return out

    def send(self, identity: bytes, msg_type: str, payload: dict[str, Any]) -> bool:
        """Queue a reply without blocking; False if the peer is gone or its pipe is full (it will ask again)."""
        try:
            self.socket.send_multipart([identity, *encode(msg_type, payload)], zmq.NOBLOCK, copy=False)
            return True
        except (zmq.Again, zmq.error.ZMQError) as e:
            log.debug("reply %s to %r dropped: %s", msg_type, identity, e)
            self.stats["replies_dropped"] += 1
            return False

    def _drain_monitor(self) -> None:
        _count_auth_failures(self._monitor, self.stats, "learner socket %s: rejected a connection during the CURVE "
                             "handshake (event %s, #%d); is the actor's public key in allowed_clients_dir?",
                             self.endpoint)

    def close(self) -> None:
        _close(self.socket, self._monitor)
        self._monitor = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        self._context.term()


class DealerEnd:
    """Actor side: a connecting DEALER with non-blocking sends and `last_heard` bookkeeping."""

    def __init__(self, endpoint: str, curve: CurveClientKeys | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, hwm: int = 1000) -> None:
        self.endpoint = endpoint
        self.max_message_bytes = max_message_bytes
        self.stats: collections.Counter[str] = collections.Counter()
        self.last_heard: float | None = None
        self._context = zmq.Context()
        self.socket = self._context.socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.sndhwm = hwm
        self.socket.rcvhwm = hwm
        # no queueing into a pipe that is not connected: while the learner is away sends fail
        # at once (the data is in the spool) instead of piling up in memory for a dead peer
        self.socket.immediate = 1
        self.socket.reconnect_ivl = 100
        self.socket.reconnect_ivl_max = 2000
        self.socket.maxmsgsize = 2 * max_message_bytes
        self._monitor = None
        try:
            if curve is not None:
                secure_client(self.socket, curve)
                self._monitor = self.socket.get_monitor_socket(_AUTH_EVENTS)
            self.socket.connect(endpoint)
        except Exception:
            self.close()
            raise

    def can_send(self) -> bool:
        return bool(self.socket.getsockopt(zmq.EVENTS) & zmq.POLLOUT)

    def send_frames(self, frames: list[Any]) -> bool:
        try:
            self.socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            return False

    def send(self, msg_type: str, payload: dict[str, Any]) -> bool:
        return self.send_frames(encode(msg_type, payload))

    def recv(self, timeout_ms: int = 0, max_messages: int = 1000) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        self._drain_monitor()
        for frames in _queued(self.socket, timeout_ms, max_messages):
            try:
                out.append(decode(frames, self.max_message_bytes))
            except ProtocolError as e:
                _log_bad(self.stats, e.kind, f"actor socket to {self.endpoint}", e)
                continue
            self.last_heard = time.monotonic()
        return out

    def heard_within(self, seconds: float) -> bool:
        return self.last_heard is not None and time.monotonic() - self.last_heard <= seconds

    def _drain_monitor(self) -> None:
        _count_auth_failures(self._monitor, self.stats, "actor socket to %s: CURVE handshake failed (event %s, #%d); "
                             "nothing is accepted from this peer. Is the configured learner.key the learner's public "
                             "key, and this actor's key in the learner's allowed/ folder?", self.endpoint)

    def close(self) -> None:
        _close(self.socket, self._monitor)
        self._monitor = None
        self._context.term()
