"""Learner side of the experience stream: receive chunks, hand them to `on_chunk`, then ack.

The ack goes out only after `on_chunk` returned (it writes the chunk durably), so an
acked chunk is never lost. Duplicates (resends after a lost ack, a learner restart or
an actor restart) are dropped by (actor_id, seq) using a seen-set persisted in
``state_dir``, and still acked so the actor can clear its spool. This seen-set is the
one authority on duplicates (it also remembers chunks that replay has since evicted).
It is saved once per `poll()` batch, before the batch's acks are sent: a crash in
between only means unacked chunks come back and reach `on_chunk` again; the learner's
replay places a chunk at its position (the seq), which then already holds it, so it
is not stored twice.

The same socket carries actors' hello/heartbeat messages; every one is answered with a
learner heartbeat so actors know the learner is alive. Bad messages are counted in
`stats` and logged; nothing a peer sends can raise out of `poll()`. Once `done` returns
True (the learner reached its step budget), every ack and heartbeat says so, and
`ActorInfo.told_done` records which actors have heard it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from daydream.transport.codec import DEFAULT_MAX_MESSAGE_BYTES, PROTOCOL_VERSION, chunk_steps
from daydream.transport.keys import CurveServerKeys
from daydream.transport.seqset import SeenStore
from daydream.transport.sockets import RouterEnd

log = logging.getLogger(__name__)

OnChunk = Callable[[str, int, int, dict[str, np.ndarray]], None]
STAT_KEYS = ("malformed", "unknown_type", "oversized", "duplicates", "chunks", "steps", "rejected", "unexpected",
             "auth_failures", "replies_dropped")


@dataclasses.dataclass
class ActorInfo:
    """What the learner knows about one actor, as of its last message."""

    actor_id: str
    last_seen: float  # time.monotonic() of the last message
    steps_per_s: float = 0.0  # as reported by the actor
    policy_version: int = 0  # the version the actor runs
    policy_lag: int = 0  # newest published version - policy_version
    pending: int = 0  # chunks in the actor's spool not yet acked (as of its last heartbeat; >= 1 after a chunk)
    chunks: int = 0  # new chunks received from it
    steps: int = 0
    oldest_seq: int = 0  # oldest chunk in its spool: unseen seqs below it were dropped by its full-spool policy
    told_done: bool = False  # it was answered with `done` (the run is over) after its last message

    @property
    def settled(self) -> bool:
        """Told that the run is over, with nothing left in its spool as of its last message."""
        return self.told_done and self.pending == 0

    @property
    def age_s(self) -> float:
        return time.monotonic() - self.last_seen


class ExperienceReceiver:
    """Bind `endpoint` (e.g. ``tcp://*:5555``) and deliver each actor chunk once to `on_chunk`.

    `on_chunk(actor_id, seq, episode_id, chunk)` must write durably before returning; if it
    raises, the chunk is not acked (the actor resends it later) and ``stats["rejected"]`` counts it.
    `policy_version` returns the newest published policy version, for `ActorInfo.policy_lag`.
    `credit` returns how many more env steps the learner wants now (None: no pacing); it rides
    on acks and heartbeats, and actors that follow it wait while it is used up.
    """

    def __init__(self, endpoint: str, on_chunk: OnChunk, state_dir: str | Path, *,
                 curve: CurveServerKeys | None = None,
                 policy_version: Callable[[], int] = lambda: 0,
                 credit: Callable[[], int | None] = lambda: None,
                 done: Callable[[], bool] = lambda: False,
                 max_batch: int = 256,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._on_chunk = on_chunk
        self._policy_version = policy_version
        self._credit = credit
        self._done = done
        self.max_batch = max_batch
        self._seen = SeenStore(state_dir)
        self._actors: dict[str, ActorInfo] = {}
        self._link = RouterEnd(endpoint, curve, max_message_bytes)
        for key in STAT_KEYS:
            self._link.stats[key] += 0

    @property
    def endpoint(self) -> str:
        """The bound address (with the real port when bound to port ``*``)."""
        return self._link.endpoint

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._link.stats)

    def actors(self) -> dict[str, ActorInfo]:
        newest = self._policy_version()
        return {a: dataclasses.replace(info, policy_lag=newest - info.policy_version)
                for a, info in self._actors.items()}

    def poll(self, timeout_ms: int = 0) -> int:
        """Wait up to `timeout_ms` for messages, handle up to `max_batch`; returns new chunks delivered."""
        delivered = 0
        acks: list[tuple[bytes, int, str]] = []
        replies: list[tuple[bytes, str]] = []
        for identity, msg_type, payload in self._link.recv(timeout_ms, self.max_batch):
            if msg_type == "chunk":
                if self._handle_chunk(payload):
                    delivered += 1
                    acks.append((identity, payload["seq"], payload["actor_id"]))
                elif self._seen.seen(payload["actor_id"], payload["seq"]):
                    acks.append((identity, payload["seq"], payload["actor_id"]))
            elif msg_type in ("hello", "heartbeat") and "actor_id" in payload:
                self._touch(payload["actor_id"], payload)
                if msg_type == "hello":
                    log.info("actor %s connected (policy %s, %s chunks pending)", payload["actor_id"],
                             payload.get("policy_version"), payload.get("pending"))
                replies.append((identity, payload["actor_id"]))
            else:
                self._link.stats["unexpected"] += 1
                log.debug("ignoring %s message on the experience socket", msg_type)
        self._seen.save()  # before acking: see the module docstring
        credit = self._credit() if acks or replies else None
        extra: dict[str, Any] = {} if credit is None else {"credit": int(credit)}
        done = self._done()
        if done:
            extra["done"] = True
        for identity, seq, actor_id in acks:
            self._link.send(identity, "ack", {"seq": seq, **extra})
            self._actors[actor_id].told_done = done
        for identity, actor_id in replies:
            sent = self._link.send(identity, "heartbeat", {"policy_version": self._policy_version(),
                                                           "next_seq": self._seen.next_seq(actor_id),
                                                           "proto": PROTOCOL_VERSION, **extra})
            self._actors[actor_id].told_done = done and sent
        return delivered

    def _touch(self, actor_id: str, payload: dict[str, Any]) -> ActorInfo:
        info = self._actors.get(actor_id)
        if info is None:
            info = self._actors[actor_id] = ActorInfo(actor_id, time.monotonic())
        info.last_seen = time.monotonic()
        for name in ("steps_per_s", "policy_version", "pending", "oldest_seq"):
            if name in payload:
                setattr(info, name, payload[name])
        return info

    def _handle_chunk(self, payload: dict[str, Any]) -> bool:
        """Deliver a chunk to on_chunk; True if it was new and written."""
        actor_id, seq = payload["actor_id"], payload["seq"]
        info = self._touch(actor_id, {})
        # it had this chunk pending when it sent it; only its next heartbeat can say the spool is empty now
        info.pending = max(info.pending, 1)
        if self._seen.seen(actor_id, seq):
            self._link.stats["duplicates"] += 1
            return False
        try:
            self._on_chunk(actor_id, seq, payload["episode_id"], payload["data"])
        except Exception:
            self._link.stats["rejected"] += 1
            log.exception("on_chunk failed for chunk %d of actor %s; not acking it, the actor will resend", seq,
                          actor_id)
            return False
        steps = chunk_steps(payload)
        self._seen.add(actor_id, seq)
        self._link.stats["chunks"] += 1
        self._link.stats["steps"] += steps
        info.chunks += 1
        info.steps += steps
        return True

    def close(self) -> None:
        self._seen.save()
        self._link.close()

    def __enter__(self) -> ExperienceReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
