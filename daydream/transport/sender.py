"""Actor side of the experience stream: spool every chunk durably, send it, resend until acked.

Delivery is at-least-once: a chunk leaves the spool only when the learner acks it,
and the learner acks only after its `on_chunk` wrote it durably. Resends (after
`resend_timeout_s`, after a learner restart, after an actor restart) may duplicate;
the learner drops duplicates by (actor_id, seq). Nothing here blocks: sends are
NOBLOCK with at most `max_in_flight` unacked chunks on the wire, and whatever does
not fit waits in the spool for a later `poll()`.
"""

from __future__ import annotations

import collections
import logging
import time
from pathlib import Path

import numpy as np

from daydream.transport.codec import DEFAULT_MAX_MESSAGE_BYTES, chunk_steps, encode
from daydream.transport.keys import CurveClientKeys
from daydream.transport.sockets import DealerEnd
from daydream.transport.spool import Spool

log = logging.getLogger(__name__)


class ExperienceSender:
    def __init__(self, endpoint: str, actor_id: str, spool_dir: str | Path, *,
                 curve: CurveClientKeys | None = None,
                 max_in_flight: int = 32,
                 resend_timeout_s: float = 2.0,
                 max_resends_per_poll: int = 8,
                 heartbeat_interval_s: float = 1.0,
                 learner_timeout_s: float = 5.0,
                 rate_window_s: float = 10.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.actor_id = actor_id
        self.spool = Spool(spool_dir, actor_id)
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

    def send(self, chunk: dict[str, np.ndarray], episode_id: int) -> int:
        """Spool `chunk` ([N, ...] arrays) durably, try to send it, and return its seq."""
        seq = self.spool.allocate()
        frames = encode("chunk", {"actor_id": self.actor_id, "seq": seq, "episode_id": int(episode_id),
                                  "data": dict(chunk)})
        size = sum(len(memoryview(f)) for f in frames)
        if size > self.max_message_bytes:
            raise ValueError(f"chunk of {size} bytes exceeds max_message_bytes={self.max_message_bytes}; "
                             "send fewer steps per chunk or raise transport.max_message_bytes on both sides")
        self.spool.write(seq, episode_id, chunk)
        now = time.monotonic()
        steps = chunk_steps({"data": chunk})
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
            elif msg_type == "heartbeat":
                self.learner_policy_version = payload["policy_version"]
                self._take_credit(payload)
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
        """True while a reachable learner that paces actors has no credit left: the actor should not step."""
        return self.credit is not None and self.credit <= 0 and self.learner_alive

    def _take_credit(self, payload: dict) -> None:
        if "credit" in payload:
            # the learner's figure does not count chunks still on the wire to it
            self.credit = payload["credit"] - self._steps_in_flight

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

    def _send_heartbeat(self, now: float) -> None:
        # 'hello' until the learner answers, so a restarted learner learns who we are straight away
        msg_type = "heartbeat" if self.learner_alive else "hello"
        self._link.send(msg_type, {"actor_id": self.actor_id, "policy_version": self.policy_version,
                                   "steps_per_s": self.steps_per_s, "pending": self.pending})
        self._last_heartbeat = now

    def close(self) -> None:
        """Close the socket; unacked chunks stay in the spool for the next sender on this spool_dir."""
        self._link.close()

    def __enter__(self) -> ExperienceSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
