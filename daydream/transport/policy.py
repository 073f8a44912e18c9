"""Policy distribution, learner -> actors: ONNX bytes with a monotonic version and sha256.

Pull, not push: each `PolicyClient` keeps exactly one ``policy_request{have_version}``
outstanding, sent every `request_interval_s` (default 0.25 s); the `PolicyServer`
answers every request, with the newest ``policy`` if the actor's version is older or a
small ``heartbeat{policy_version}`` otherwise. We chose this over pushing on publish
because a ROUTER can only address peers that already spoke to it (and a reconnecting
peer gets a new identity), so pushes still need a request path for late joiners and
learner restarts; with pull that one path covers all cases, and one outstanding request
per actor bounds policy traffic to one copy in flight per actor. The cost is a few
dozen bytes per actor per interval and up to one interval of extra latency, small next
to how often a learner publishes.

Each request names a `format`: ``onnx`` (the exported acting graph, what robots run) or
``torch`` (the acting modules' tensors as raw arrays, for actors that run the torch
agent); the sha256 covers whichever artifact is sent (`weights_digest` for tensors).

Policies use their own ROUTER socket (default port 5556, experience is 5555) so a
multi-megabyte policy never queues in front of acks and heartbeats on the same pipe.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import logging
import time

import numpy as np

from daydream.transport.codec import DEFAULT_MAX_MESSAGE_BYTES
from daydream.transport.keys import CurveClientKeys, CurveServerKeys
from daydream.transport.sockets import DealerEnd, RouterEnd

log = logging.getLogger(__name__)


FORMATS = ("onnx", "torch")


@dataclasses.dataclass(frozen=True)
class PolicyUpdate:
    """One published policy: the ONNX graph and/or the torch weights, under one version.

    It travels whole from the learner's export to the store, the server and the actor;
    each artifact's sha256 is computed from the artifact itself (and cached).
    """

    version: int
    onnx: bytes | None = None
    weights: dict[str, np.ndarray] | None = None

    @functools.cached_property
    def onnx_sha256(self) -> str | None:
        return hashlib.sha256(self.onnx).hexdigest() if self.onnx is not None else None

    @functools.cached_property
    def weights_sha256(self) -> str | None:
        return weights_digest(self.weights) if self.weights is not None else None

    @property
    def sha256(self) -> str:
        """The digest a client verifies: of the ONNX graph, or of the weights where there is no graph."""
        digest = self.onnx_sha256 or self.weights_sha256
        if digest is None:
            raise ValueError(f"policy version {self.version} carries neither an ONNX graph nor weights")
        return digest


def weights_digest(weights: dict[str, np.ndarray]) -> str:
    """sha256 over names, dtypes, shapes and bytes of a tensor dict, independent of dict order."""
    h = hashlib.sha256()
    for name in sorted(weights):
        arr = np.ascontiguousarray(weights[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(memoryview(arr.reshape(-1).view(np.uint8)))
    return h.hexdigest()


class PolicyServer:
    """Bind `endpoint` and serve the newest published policy to actors that ask."""

    def __init__(self, endpoint: str, *, curve: CurveServerKeys | None = None,
                 max_batch: int = 256, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_batch = max_batch
        self.max_message_bytes = max_message_bytes
        self._current: PolicyUpdate | None = None
        self._warned_formats: set[str] = set()
        self._link = RouterEnd(endpoint, curve, max_message_bytes)
        self.client_versions: dict[str, int] = {}  # actor_id -> version it last said it has

    @property
    def endpoint(self) -> str:
        return self._link.endpoint

    @property
    def version(self) -> int:
        """Newest published version (0 before the first publish)."""
        return self._current.version if self._current else 0

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._link.stats)

    def publish(self, update: PolicyUpdate) -> str:
        """Serve `update` (its ONNX graph, and its torch weights if any) from now on; returns the graph's sha256.

        Without weights, actors asking for the torch format get no policy (and a log line here).
        """
        if update.version <= self.version:
            raise ValueError(f"policy version {update.version} is not newer than the published {self.version}; "
                             "versions must increase so actors can tell new from old")
        if update.onnx is None:
            raise ValueError(f"policy version {update.version} has no ONNX graph; the server always serves one")
        if len(update.onnx) + 1024 > self.max_message_bytes:
            raise ValueError(f"policy of {len(update.onnx)} bytes does not fit max_message_bytes="
                             f"{self.max_message_bytes}; raise transport.max_message_bytes on learner and actors")
        if update.weights is not None:
            weights = {k: np.ascontiguousarray(v) for k, v in update.weights.items()}
            update = dataclasses.replace(update, weights=weights)
            if sum(v.nbytes for v in update.weights.values()) + 4096 > self.max_message_bytes:
                raise ValueError(f"policy weights do not fit max_message_bytes={self.max_message_bytes}; raise "
                                 "transport.max_message_bytes on learner and actors")
            _ = update.weights_sha256  # the digest now, not while answering an actor
        digest = update.sha256
        # one attribute assignment: a server polled from another thread sees the old or the new policy whole
        self._current = update
        log.info("published policy version %d (%d bytes, sha256 %s)", update.version, len(update.onnx), digest[:12])
        return digest

    def poll(self, timeout_ms: int = 0) -> int:
        """Answer queued policy requests (waiting up to `timeout_ms` for the first); returns policies sent."""
        sent = 0
        for identity, msg_type, payload in self._link.recv(timeout_ms, self.max_batch):
            if msg_type != "policy_request":
                self._link.stats["unexpected"] += 1
                continue
            self.client_versions[payload["actor_id"]] = payload["have_version"]
            fmt = payload.get("format", "onnx")
            current = self._current
            if current is not None and payload["have_version"] < current.version:
                message = self._policy_message(current, fmt)
                if message is None:
                    self._link.stats["format_unavailable"] += 1
                    if fmt not in self._warned_formats:
                        self._warned_formats.add(fmt)
                        log.warning("actor %s asks for policies in format %r, which this learner does not publish "
                                    "(formats: %s)", payload["actor_id"], fmt, self._formats(current))
                    self._link.send(identity, "heartbeat", {"policy_version": self.version})
                elif self._link.send(identity, "policy", message):
                    sent += 1
                    self._link.stats["policies_sent"] += 1
            else:
                self._link.send(identity, "heartbeat", {"policy_version": self.version})
        return sent

    @staticmethod
    def _policy_message(cur: PolicyUpdate, fmt: str) -> dict | None:
        if fmt == "onnx":
            return {"version": cur.version, "sha256": cur.onnx_sha256, "onnx": cur.onnx}
        if fmt == "torch" and cur.weights is not None:
            return {"version": cur.version, "sha256": cur.weights_sha256, "weights": cur.weights}
        return None

    @staticmethod
    def _formats(cur: PolicyUpdate) -> str:
        return "onnx" + (", torch" if cur.weights is not None else "")

    def close(self) -> None:
        self._link.close()

    def __enter__(self) -> PolicyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PolicyClient:
    """Connect to a `PolicyServer`; `poll()` returns verified, strictly newer policies."""

    def __init__(self, endpoint: str, actor_id: str, *, have_version: int = 0, format: str = "onnx",
                 curve: CurveClientKeys | None = None,
                 request_interval_s: float = 0.25, request_timeout_s: float = 10.0,
                 learner_timeout_s: float = 5.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if format not in FORMATS:
            raise ValueError(f"policy format {format!r} is not one of {FORMATS}")
        self.actor_id = actor_id
        self.version = have_version
        self.format = format
        self.request_interval_s = request_interval_s
        # a large policy over a slow link can take a while; only then is a request presumed lost
        self.request_timeout_s = request_timeout_s
        self.learner_timeout_s = learner_timeout_s
        self._outstanding_since: float | None = None
        self._last_answer = -float("inf")
        self._counters: collections.Counter[str] = collections.Counter()
        self._link = DealerEnd(endpoint, curve, max_message_bytes, hwm=4)

    @property
    def learner_alive(self) -> bool:
        return self._link.heard_within(self.learner_timeout_s)

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._link.stats + self._counters)

    def poll(self) -> PolicyUpdate | None:
        """Non-blocking: take answers, re-request when due; the newest verified newer policy or None."""
        newest: PolicyUpdate | None = None
        for msg_type, payload in self._link.recv():
            if msg_type == "policy":
                self._answered()
                update = self._verify(payload)
                if update is not None:
                    newest = update
            elif msg_type == "heartbeat":
                self._answered()
            else:
                self._counters["unexpected"] += 1
        now = time.monotonic()
        due = (self._outstanding_since is None and now - self._last_answer >= self.request_interval_s) or (
            self._outstanding_since is not None and now - self._outstanding_since >= self.request_timeout_s)
        if due and self._link.send("policy_request", {"actor_id": self.actor_id, "have_version": self.version,
                                                      "format": self.format}):
            self._outstanding_since = now
        return newest

    def _answered(self) -> None:
        self._outstanding_since = None
        self._last_answer = time.monotonic()

    def _verify(self, payload: dict) -> PolicyUpdate | None:
        version, claimed = payload["version"], payload["sha256"]
        artifact = payload.get("onnx" if self.format == "onnx" else "weights")
        if artifact is None:
            self._counters["wrong_format"] += 1
            log.error("rejected policy version %d: it carries no %s artifact", version, self.format)
            return None
        if self.format == "torch" and not all(isinstance(v, np.ndarray) for v in artifact.values()):
            self._counters["wrong_format"] += 1
            log.error("rejected policy version %d: its weights are not all arrays", version)
            return None
        actual = hashlib.sha256(artifact).hexdigest() if self.format == "onnx" else weights_digest(artifact)
        if actual != claimed.lower():
            self._counters["sha256_mismatch"] += 1
            log.error("rejected policy version %d: sha256 of the received %s is %s, the learner claimed %s "
                      "(corrupted or tampered); keeping version %d", version, self.format, actual[:12], claimed[:12],
                      self.version)
            return None
        if version <= self.version:
            self._counters["stale"] += 1
            return None
        self.version = version
        self._counters["policies"] += 1
        if self.format == "onnx":
            return PolicyUpdate(version, onnx=artifact)
        # views of the receive buffers: copy so they outlive the message
        return PolicyUpdate(version, weights={k: np.array(v) for k, v in artifact.items()})

    def close(self) -> None:
        self._link.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
