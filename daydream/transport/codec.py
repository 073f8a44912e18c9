"""Wire format of every transport message: msgpack body + raw numpy frames, and its validation.

A message is a list of ZMQ frames::

    [msg_type (ascii), body (msgpack map), blob_0, blob_1, ...]

Numpy arrays anywhere in the payload are packed as msgpack ext type 1 holding
``[dtype str, shape list, blob index]``; the array's raw C-order bytes travel in
their own frame so neither side copies them through msgpack (the receiver views
them with ``np.frombuffer``). Nothing is ever pickled: object dtypes are refused on
both sides, and only plain numeric / bool dtypes are accepted.

`decode` trusts nothing: every failure raises `ProtocolError` whose ``kind`` is one
of ``"malformed"``, ``"unknown_type"`` or ``"oversized"`` so receivers can count them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

from daydream.transport.keys import LEARNER_KEY_NAME

DEFAULT_MAX_MESSAGE_BYTES = 64 * 2**20
_ARRAY_EXT = 1
# numeric and bool only: strings/void/object could smuggle in objects or surprise consumers
_ALLOWED_KINDS = frozenset("biufc")
# actor ids become replay stream ids and file names, so they follow the replay's id rule
ACTOR_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def check_actor_id(actor_id: str) -> str:
    """The one actor-id rule (actor, spool, wire): returns `actor_id`, or raises ValueError saying what is allowed."""
    if not isinstance(actor_id, str) or not ACTOR_ID_RE.fullmatch(actor_id) or actor_id == LEARNER_KEY_NAME:
        raise ValueError(f"transport.actor_id {actor_id!r} must be 1-64 chars of [A-Za-z0-9_.-] and not "
                         f"'{LEARNER_KEY_NAME}'; it names the actor's spool, keys and replay stream")
    return actor_id


# Bumped when a field's meaning changes. New fields are optional and ignored by older peers (see
# `_validate`), so both sides keep working with older ones: version 2 added `done`, `oldest_seq` and `proto`.
PROTOCOL_VERSION = 2

# message type -> (required fields, optional fields), field -> python type
SCHEMAS: dict[str, tuple[dict[str, type], dict[str, type]]] = {
    "chunk": ({"actor_id": str, "seq": int, "episode_id": int, "data": dict}, {}),
    # credit: env steps the learner wants before actors should wait (pacing to the train ratio);
    # done: the learner has reached train.steps and is about to exit (actors stop or stop spooling)
    "ack": ({"seq": int}, {"credit": int, "done": bool}),
    # oldest_seq: the oldest chunk still in the actor's spool (older unacked ones were dropped: full spool)
    "hello": ({"actor_id": str}, {"policy_version": int, "steps_per_s": float, "pending": int, "oldest_seq": int,
                                  "proto": int}),
    "heartbeat": ({"policy_version": int},
                  {"actor_id": str, "steps_per_s": float, "pending": int, "next_seq": int, "credit": int,
                   "done": bool, "oldest_seq": int, "proto": int}),
    # a policy carries `onnx` (the exported acting graph) or `weights` (the torch acting modules'
    # tensors, for `policy: torch` actors), whichever the request's `format` asked for
    "policy": ({"version": int, "sha256": str}, {"onnx": bytes, "weights": dict}),
    "policy_request": ({"actor_id": str, "have_version": int}, {"format": str}),
}
MESSAGE_TYPES = frozenset(SCHEMAS)


class ProtocolError(ValueError):
    """A message that does not follow the wire format; ``kind`` says which counter it belongs to."""

    def __init__(self, message: str, kind: str = "malformed") -> None:
        super().__init__(message)
        self.kind = kind


def check_dtype(dtype: np.dtype) -> None:
    if dtype.hasobject or dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None:
        raise ProtocolError(f"dtype {dtype!r} is not allowed on the wire; send bool/int/uint/float/complex arrays")


def encode(msg_type: str, payload: dict[str, Any]) -> list[bytes]:
    """Serialise one message into multipart frames (validated with the same rules as `decode`)."""
    if msg_type not in SCHEMAS:
        raise ProtocolError(f"unknown message type {msg_type!r}; expected one of {sorted(SCHEMAS)}", "unknown_type")
    _validate(msg_type, payload)
    blobs: list[Any] = []

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            check_dtype(obj.dtype)
            arr = np.ascontiguousarray(obj)
            blobs.append(memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else b"")
            return msgpack.ExtType(_ARRAY_EXT, msgpack.packb([arr.dtype.str, list(arr.shape), len(blobs) - 1]))
        if isinstance(obj, np.generic):
            return obj.item()
        raise ProtocolError(f"cannot encode {type(obj).__name__} in a {msg_type} message; use numbers, str, bytes, "
                            "lists, dicts or numpy arrays")

    body = msgpack.packb(payload, default=default, use_bin_type=True)
    return [msg_type.encode("ascii"), body, *blobs]


def _buffer(frame: Any) -> memoryview:
    # accepts bytes, memoryview or zmq.Frame (recv_multipart(copy=False)) without copying
    buf = getattr(frame, "buffer", frame)
    return memoryview(buf).cast("B") if not isinstance(buf, (bytes, bytearray)) else memoryview(buf)


def decode(frames: Sequence[Any], max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> tuple[str, dict[str, Any]]:
    """Parse and validate multipart frames; raises `ProtocolError` on anything unexpected.

    Arrays in the result are read-only views of the frames' memory.
    """
    if len(frames) < 2:
        raise ProtocolError(f"expected at least 2 frames (type, body), got {len(frames)}")
    views = [_buffer(f) for f in frames]
    total = sum(v.nbytes for v in views)
    if total > max_message_bytes:
        raise ProtocolError(f"message of {total} bytes exceeds max_message_bytes={max_message_bytes}", "oversized")
    try:
        msg_type = bytes(views[0]).decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("message type frame is not ascii") from None
    if msg_type not in SCHEMAS:
        raise ProtocolError(f"unknown message type {msg_type[:40]!r}", "unknown_type")
    blobs = views[2:]
    used: set[int] = set()

    def ext_hook(code: int, data: bytes) -> Any:
        if code != _ARRAY_EXT:
            raise ProtocolError(f"unknown msgpack ext type {code}")
        spec = msgpack.unpackb(data, raw=False)
        if not (isinstance(spec, list) and len(spec) == 3 and isinstance(spec[0], str)
                and isinstance(spec[1], list) and all(type(d) is int and d >= 0 for d in spec[1])
                and type(spec[2]) is int):
            raise ProtocolError(f"bad array header {spec!r}; expected [dtype str, shape list, blob index]")
        dtype_str, shape, index = spec
        try:
            dtype = np.dtype(dtype_str)
        except TypeError:
            raise ProtocolError(f"unknown dtype {dtype_str!r}") from None
        check_dtype(dtype)
        if not 0 <= index < len(blobs) or index in used:
            raise ProtocolError(f"array refers to blob {index}, but there are {len(blobs)} blobs (or it is reused)")
        used.add(index)
        expected = dtype.itemsize * math.prod(shape)
        if blobs[index].nbytes != expected:
            raise ProtocolError(f"array {dtype_str}{tuple(shape)} needs {expected} bytes, its frame has "
                                f"{blobs[index].nbytes}")
        return np.frombuffer(blobs[index], dtype=dtype).reshape(shape)

    try:
        payload = msgpack.unpackb(views[1], raw=False, ext_hook=ext_hook, strict_map_key=True)
    except ProtocolError:
        raise
    except Exception as e:  # msgpack raises many types (ValueError, ExtraData, UnicodeDecodeError...)
        raise ProtocolError(f"body of {msg_type} message is not valid msgpack: {e}") from None
    if len(used) != len(blobs):
        raise ProtocolError(f"{len(blobs) - len(used)} unreferenced array frames in {msg_type} message")
    if not isinstance(payload, dict):
        raise ProtocolError(f"body of {msg_type} message is {type(payload).__name__}, expected a map")
    _validate(msg_type, payload)
    return msg_type, payload


def _type_ok(value: Any, expected: type) -> bool:
    if expected is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return isinstance(value, expected)


def _validate(msg_type: str, payload: dict[str, Any]) -> None:
    required, optional = SCHEMAS[msg_type]
    for name in required:
        if name not in payload:
            raise ProtocolError(f"{msg_type} message lacks field {name!r}")
    for name, value in payload.items():
        expected = required.get(name) or optional.get(name)
        # unknown fields are ignored so newer peers can add optional fields
        if expected is not None and not _type_ok(value, expected):
            raise ProtocolError(f"{msg_type}.{name} is {type(value).__name__}, expected {expected.__name__}")
    if "actor_id" in payload and not ACTOR_ID_RE.fullmatch(payload["actor_id"]):
        raise ProtocolError(f"actor_id {payload['actor_id'][:80]!r} must be 1-64 chars of [A-Za-z0-9_.-]")
    if msg_type == "chunk":
        _validate_chunk(payload)


def _validate_chunk(payload: dict[str, Any]) -> None:
    if payload["seq"] < 0:
        raise ProtocolError(f"chunk seq must be >= 0, got {payload['seq']}")
    data = payload["data"]
    if not data:
        raise ProtocolError("chunk.data is empty; a chunk needs at least one array")
    lengths = set()
    for key, arr in data.items():
        if not isinstance(key, str) or not isinstance(arr, np.ndarray) or arr.ndim < 1:
            raise ProtocolError(f"chunk.data[{key!r}] must be a numpy array [N, ...] under a str key")
        lengths.add(arr.shape[0])
    if len(lengths) != 1 or 0 in lengths:
        raise ProtocolError(f"chunk arrays must share one non-zero leading length, got {sorted(lengths)}")


def chunk_steps(payload: dict[str, Any]) -> int:
    """Number of steps in a validated chunk payload."""
    return int(next(iter(payload["data"].values())).shape[0])
