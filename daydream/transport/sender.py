"""Actor side of the experience stream: spool every chunk durably, send it, resend until acked.

Delivery is at-least-once: a chunk leaves the spool only when the learner acks it,
and the learner acks only after its `on_chunk` wrote it durably. Resends (after
`resend_timeout_s`, after a learner restart, after an actor restart) may duplicate;
the learner drops duplicates by (actor_id, seq). Nothing here blocks: sends are
NOBLOCK with at most `max_in_flight` unacked chunks on the wire, and whatever does
not fit waits in the spool for a later `poll()`.

A bounded spool (`spool_max_bytes`) is full when the next chunk would not fit. With
``when_full="wait"`` (a sim) the caller checks `has_room` and holds its steps until
acks make room; a full disk raises `SpoolFull` and the caller retries the same chunk.
With ``when_full="drop_oldest"`` (a robot) `send` deletes the oldest unacked chunks
to make room, also when the disk is full, and the chunk itself is given up only when
nothing is left to delete; every drop is reported by `take_drops`. Either way the
spool stays consistent: a failed write leaves no file.

The learner's replies carry ``done`` once it has reached its step budget
(`learner_done`); replies without it (a run that was extended) clear it again.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from daydream.transport.codec import DEFAULT_MAX_MESSAGE_BYTES, PROTOCOL_VERSION, chunk_steps, encode
from daydream.transport.keys import CurveClientKeys
from daydream.transport.sockets import DealerEnd
from daydream.transport.spool import Spool, chunk_bytes, is_disk_full

log = logging.getLogger(__name__)

WHEN_FULL = ("wait", "drop_oldest")


class SpoolFull(RuntimeError):
    """The disk holding the spool is full and the spool waits (``when_full="wait"``): retry the chunk later."""


@dataclasses.dataclass(frozen=True)
class Drop:
    """A chunk given up by the full-spool policy: deleted unacked (or never written, `written` False)."""

    seq: int | None  # None: the disk was too full even to reserve a sequence number
    steps: int
    cause: str  # "spool_bound" (spool_max_bytes) | "disk_full" (ENOSPC/EDQUOT while writing)
    written: bool = True


class ExperienceSender:
    def __init__(self, endpoint: str, actor_id: str, spool_dir: str | Path, *,
                 curve: CurveClientKeys | None = None,
                 max_in_flight: int = 32,
                 resend_timeout_s: float = 2.0,
                 max_resends_per_poll: int = 8,
                 heartbeat_interval_s: float = 1.0,
                 learner_timeout_s: float = 5.0,
                 rate_window_s: float = 10.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 spool_max_bytes: int = 0,
                 when_full: str = "wait") -> None:
        if when_full not in WHEN_FULL:
            raise ValueError(f"when_full must be one of {WHEN_FULL}, got {when_full!r}")
        self.actor_id = actor_id
        self.spool = Spool(spool_dir, actor_id, max_bytes=spool_max_bytes)
        self.when_full = when_full
        self._drops: list[Drop] = []  # since the last take_drops()
        self._retry_seq: int | None = None  # seq of a chunk whose write failed and will be retried (wait policy)
        self._largest_chunk = 0  # bytes of the largest chunk written: what `has_room` keeps free
        # the learner said it reached its step budget (in its last reply)
        self.learner_done = False
        self.max_in_flight = max_in_flight
        self.resend_timeout_s = resend_timeout_s
        self.max_resends_per_poll = max_resends_per_poll
        self.heartbeat_interval_s = heartbeat_interval_s
        self.learner_timeout_s = learner_timeout_s
        self.rate_window_s = rate_window_s
        self.max_message_bytes = max_message_bytes
        # set by the caller when it loads a new policy; reported in heartbeats
        self.policy_version = 0
        self.learner_policy_version = 0
        # env steps the learner still wants (from its last ack/heartbeat, minus steps sent since); None = no pacing
        self.credit: int | None = None
        self.steps_sent = 0  # steps handed to `send` by this process (spooled or given up)
        # the last credit as granted (minus steps then in flight) and `steps_sent` at that moment:
        # an actor that follows `should_wait` never gets more than credit_granted steps past that point
        self.credit_granted: int | None = None
        self.steps_at_credit = 0
        # steps the caller has recorded but not yet sent (its partial chunk), set by the caller
        self.unsent_steps: Callable[[], int] = lambda: 0
        self._unacked_steps: dict[int, int] = {}  # seq -> steps, for chunks sent by this process
        self._steps_in_flight = 0
        self._sent_at: dict[int, float] = {}  # seq -> last send time, for unacked chunks on the wire
        self._rate: collections.deque[tuple[float, int]] = collections.deque()
        self._last_heartbeat = -float("inf")
        self._link = DealerEnd(endpoint, curve, max_message_bytes)
        self._send_heartbeat(time.monotonic())  # hello first, then the spool's leftovers on poll()

    @property
    def pending(self) -> int:
        """Chunks written to the spool and not yet acked."""
        return len(self.spool)

    @property
    def connected(self) -> bool:
        """Whether the connection to the learner is up: a chunk sent now leaves at once."""
        return self._link.can_send()

    @property
    def learner_alive(self) -> bool:
        return self._link.heard_within(self.learner_timeout_s)

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._link.stats)

    @property
    def steps_per_s(self) -> float:
        if len(self._rate) < 2:
            return 0.0
        span = self._rate[-1][0] - self._rate[0][0]
        return sum(n for _, n in list(self._rate)[1:]) / span if span > 0 else 0.0

    @property
    def has_room(self) -> bool:
        """Whether the spool has room for another chunk as large as the largest so far (always, unbounded)."""
        return self.spool.has_room(self._largest_chunk)

    def take_drops(self) -> list[Drop]:
        """Chunks given up by the full-spool policy since the last call."""
        drops, self._drops = self._drops, []
        return drops

    def send(self, chunk: dict[str, np.ndarray], episode_id: int) -> int | None:
        """Spool `chunk` ([N, ...] arrays) durably, try to send it, and return its seq.

        Returns None if the chunk was given up (drop_oldest policy, disk full with nothing left to
        delete; see `take_drops`). Raises `SpoolFull` under the wait policy when the disk is full.
        """
        steps = chunk_steps({"data": chunk})
        size = sum(a.nbytes for a in chunk.values())
        if size + 4096 > self.max_message_bytes:
            raise ValueError(f"chunk of {size} bytes exceeds max_message_bytes={self.max_message_bytes}; "
                             "send fewer steps per chunk or raise transport.max_message_bytes on both sides")
        estimate = chunk_bytes(chunk)
        self._largest_chunk = max(self._largest_chunk, estimate)
        if self.when_full == "drop_oldest":
            while not self.spool.has_room(estimate) and self._drop_oldest("spool_bound"):
                pass
        seq = self._write(chunk, episode_id, steps)
        self.steps_sent += steps
        if seq is None:
            return None
        frames = encode("chunk", {"actor_id": self.actor_id, "seq": seq, "episode_id": int(episode_id),
                                  "data": dict(chunk)})
        now = time.monotonic()
        self._unacked_steps[seq] = steps
        self._steps_in_flight += steps
        if self.credit is not None:
            self.credit -= steps
        self._rate.append((now, steps))
        while self._rate and now - self._rate[0][0] > self.rate_window_s:
            self._rate.popleft()
        if self._in_flight(now) < self.max_in_flight and self._link.send_frames(frames):
            self._sent_at[seq] = now
        return seq

    def _write(self, chunk: dict[str, np.ndarray], episode_id: int, steps: int) -> int | None:
        """Allocate a seq and write the chunk, applying the full-disk policy; the seq, or None if given up."""
        while True:
            try:
                if self._retry_seq is None:
                    self._retry_seq = self.spool.allocate()
                self.spool.write(self._retry_seq, episode_id, chunk)
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                if self.when_full == "wait":
                    raise SpoolFull(f"the disk holding {self.spool.directory} is full ({exc.strerror}); waiting for "
                                    "acks to free space") from exc
                if self._drop_oldest("disk_full"):
                    continue
                # nothing of ours left to delete: give this chunk up (its seq stays unused, a gap the learner skips)
                self._drops.append(Drop(self._retry_seq, steps, "disk_full", written=False))
                self._retry_seq = None
                return None
            seq, self._retry_seq = self._retry_seq, None
            return seq

    def _drop_oldest(self, cause: str) -> bool:
        dropped = self.spool.drop_oldest()
        if dropped is None:
            return False
        seq, steps = dropped
        self._sent_at.pop(seq, None)
        self._steps_in_flight -= self._unacked_steps.pop(seq, 0)
        self._drops.append(Drop(seq, steps, cause))
        return True

    def give_up(self, chunk: dict[str, np.ndarray]) -> Drop:
        """Record a chunk the caller could not spool (the wait policy, stopped while the disk was full)."""
        drop = Drop(self._retry_seq, chunk_steps({"data": chunk}), "disk_full", written=False)
        self._retry_seq = None
        self.steps_sent += drop.steps
        self._drops.append(drop)
        return drop

    def poll(self) -> int:
        """Handle acks and learner heartbeats, send a heartbeat when due, resend what timed out.

        Returns the number of chunks acked by this call. Call it every control step or so; it does
        no waiting and at most `max_resends_per_poll` spool reads.
        """
        acked = 0
        for msg_type, payload in self._link.recv():
            if msg_type == "ack":
                self._sent_at.pop(payload["seq"], None)
                acked += self.spool.remove(payload["seq"])
                self._steps_in_flight -= self._unacked_steps.pop(payload["seq"], 0)
                self._take_credit(payload)
                self.learner_done = bool(payload.get("done", False))
            elif msg_type == "heartbeat":
                self.learner_policy_version = payload["policy_version"]
                self._take_credit(payload)
                self.learner_done = bool(payload.get("done", False))
                if "next_seq" in payload:
                    self.spool.skip_to(payload["next_seq"])
            else:
                self._link.stats["unexpected"] += 1
        now = time.monotonic()
        if now - self._last_heartbeat >= self.heartbeat_interval_s:
            self._send_heartbeat(now)
        self._resend(now)
        return acked

    @property
    def should_wait(self) -> bool:
        """True while a learner that paces actors has no credit left: the actor should not step.

        Also while the learner is unreachable: the last credit it gave stays the limit, so an actor
        never runs further ahead of the train ratio than that credit (its slack), however long the
        learner is away. (A robot, which must keep acting, does not ask.)
        """
        return self.credit is not None and self.credit <= 0

    def _take_credit(self, payload: dict) -> None:
        if "credit" in payload:
            # the learner's figure does not count chunks still on the wire to it
            self.credit = payload["credit"] - self._steps_in_flight
            unsent = self.unsent_steps()
            self.credit_granted, self.steps_at_credit = self.credit - unsent, self.steps_sent + unsent

    def _in_flight(self, now: float) -> int:
        return sum(1 for t in self._sent_at.values() if now - t < self.resend_timeout_s)

    def _resend(self, now: float) -> None:
        budget = min(self.max_in_flight - self._in_flight(now), self.max_resends_per_poll)
        if budget <= 0 or not self.spool:
            return
        for seq in self.spool.seqs():
            if budget <= 0 or not self._link.can_send():
                return
            sent = self._sent_at.get(seq)
            if sent is not None and now - sent < self.resend_timeout_s:
                continue
            try:
                episode_id, chunk = self.spool.load(seq)
                frames = encode("chunk", {"actor_id": self.actor_id, "seq": seq, "episode_id": episode_id,
                                          "data": chunk})
            except Exception as e:  # a file under its final name should be complete; keep it aside if not
                log.error("spool chunk %d of %s is unreadable (%s); moved to %s/corrupt", seq, self.actor_id, e,
                          self.spool.directory)
                self.spool.quarantine(seq)
                self._sent_at.pop(seq, None)
                continue
            if not self._link.send_frames(frames):
                return
            if sent is not None:
                self._link.stats["resent"] += 1
            self._sent_at[seq] = now
            budget -= 1

    def heartbeat_now(self) -> None:
        """Send a heartbeat at once (e.g. to report an empty spool before exiting)."""
        self._send_heartbeat(time.monotonic())

    def _send_heartbeat(self, now: float) -> None:
        # 'hello' until the learner answers, so a restarted learner learns who we are straight away
        msg_type = "heartbeat" if self.learner_alive else "hello"
        # oldest_seq: chunks of ours below it that the learner lacks were dropped and will never come
        oldest = next(iter(self.spool.seqs()), self.spool.next_seq)
        self._link.send(msg_type, {"actor_id": self.actor_id, "policy_version": self.policy_version,
                                   "steps_per_s": self.steps_per_s, "pending": self.pending,
                                   "oldest_seq": oldest, "proto": PROTOCOL_VERSION})
        self._last_heartbeat = now

    def close(self) -> None:
        """Close the socket; unacked chunks stay in the spool for the next sender on this spool_dir."""
        self._link.close()

    def __enter__(self) -> ExperienceSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
