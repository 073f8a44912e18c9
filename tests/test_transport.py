"""Tests for daydream.transport: codec validation, at-least-once experience delivery with
dedup across learner/actor restarts, policy distribution, heartbeats and CURVE auth.

Everything runs over loopback TCP with OS-assigned ports; each test is time-bounded.
"""

from __future__ import annotations

import collections
import hashlib
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from daydream.transport import (CurveClientKeys, CurveServerKeys, ExperienceReceiver, ExperienceSender, PolicyClient,
                                PolicyServer, PolicyUpdate, ProtocolError, decode, encode, generate_keypair)
from daydream.transport.seqset import SeqRanges
from helpers import pump

pytestmark = pytest.mark.timeout(30)

ANY_PORT = "tcp://127.0.0.1:*"




def make_chunk(steps: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"obs": rng.standard_normal((steps, 24)).astype(np.float32),
            "image": rng.integers(0, 255, (steps, 8, 8, 3), dtype=np.uint8),
            "action": rng.standard_normal((steps, 6)),
            "is_first": np.zeros(steps, bool)}


class Recorder:
    """An on_chunk callback that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, dict[str, np.ndarray]]] = []

    def __call__(self, actor_id: str, seq: int, episode_id: int, chunk: dict[str, np.ndarray]) -> None:
        self.calls.append((actor_id, seq, episode_id, {k: np.array(v) for k, v in chunk.items()}))

    def keys(self) -> list[tuple[str, int]]:
        return [(a, s) for a, s, _, _ in self.calls]


def spool_files(d: Path) -> list[Path]:
    return sorted(d.glob("*.npz"))


# ---------------------------------------------------------------- codec

@pytest.mark.parametrize("dtype", ["float32", "float64", ">f4", "uint8", "int8", "int64", "uint16", "bool",
                                   "complex64", "float16"])
def test_codec_roundtrip_dtypes(dtype):
    arr = (np.arange(24).reshape(4, 3, 2) % 7).astype(dtype)
    data = {"x": arr, "t": arr.T.copy().T}  # "t" is Fortran-ordered
    frames = encode("chunk", {"actor_id": "robot-1", "seq": 3, "episode_id": 9, "data": data})
    msg_type, payload = decode(frames)
    assert msg_type == "chunk"
    assert payload["seq"] == 3 and payload["episode_id"] == 9 and payload["actor_id"] == "robot-1"
    for key in ("x", "t"):
        out = payload["data"][key]
        assert out.dtype == np.dtype(dtype) and out.shape == arr.shape
        np.testing.assert_array_equal(out, arr)


def test_codec_roundtrip_non_contiguous_and_other_types():
    arr = np.arange(60, dtype=np.float32).reshape(5, 12)[:, ::3]
    _, payload = decode(encode("chunk", {"actor_id": "a", "seq": 0, "episode_id": -1, "data": {"x": arr}}))
    np.testing.assert_array_equal(payload["data"]["x"], arr)
    for msg_type, body in [("ack", {"seq": 5}), ("hello", {"actor_id": "a", "steps_per_s": 1.5}),
                           ("heartbeat", {"policy_version": 2, "pending": 3, "steps_per_s": 10}),
                           ("policy", {"version": 1, "sha256": "ab", "onnx": b"\x00\x01"}),
                           ("policy_request", {"actor_id": "a", "have_version": 0})]:
        assert decode(encode(msg_type, body)) == (msg_type, body)


def _raw_chunk(spec, blob: bytes, **overrides) -> list[bytes]:
    payload = {"actor_id": "a", "seq": 0, "episode_id": 0,
               "data": {"x": msgpack.ExtType(1, msgpack.packb(spec))}}
    payload.update(overrides)
    return [b"chunk", msgpack.packb(payload, use_bin_type=True), blob]


BAD_MESSAGES = {
    "garbage_single_frame": ([b"\xff\xfe\x00"], "malformed"),
    "garbage_body": ([b"chunk", b"\xc1\xc1 not msgpack"], "malformed"),
    "body_not_a_map": ([b"ack", msgpack.packb([1, 2])], "malformed"),
    "wrong_field_type": ([b"ack", msgpack.packb({"seq": "seven"})], "malformed"),
    "missing_field": ([b"policy_request", msgpack.packb({"actor_id": "a"})], "malformed"),
    "bad_actor_id": ([b"hello", msgpack.packb({"actor_id": "../../etc"})], "malformed"),
    "byte_length_mismatch": (_raw_chunk(["<f4", [2, 3], 0], b"\x00" * 23), "malformed"),
    "object_dtype": (_raw_chunk(["|O", [1], 0], b"\x00" * 8), "malformed"),
    "blob_index_out_of_range": (_raw_chunk(["<f4", [1], 1], b"\x00" * 4), "malformed"),
    "unknown_type": ([b"launch_missiles", msgpack.packb({})], "unknown_type"),
    "oversized": ([b"ack", msgpack.packb({"seq": 1}), b"\x00" * 5000], "oversized"),
}


@pytest.mark.parametrize("name", sorted(BAD_MESSAGES))
def test_decode_rejects_bad_messages(name):
    frames, kind = BAD_MESSAGES[name]
    with pytest.raises(ProtocolError) as info:
        decode(frames, max_message_bytes=4096)
    assert info.value.kind == kind


def test_encode_refuses_object_dtype_and_unknown_type():
    with pytest.raises(ProtocolError):
        encode("chunk", {"actor_id": "a", "seq": 0, "episode_id": 0, "data": {"x": np.array([object()] * 2)}})
    with pytest.raises(ProtocolError):
        encode("nope", {})
    # a well-formed message of the same shape decodes, so the rejections above are about the content
    decode(_raw_chunk(["<f4", [2, 3], 0], b"\x00" * 24))


def test_bad_messages_over_socket_are_counted_and_receiver_survives(tmp_path):
    rec = Recorder()
    with ExperienceReceiver(ANY_PORT, rec, tmp_path / "state", max_message_bytes=4096) as receiver:
        ctx = zmq.Context()
        raw = ctx.socket(zmq.DEALER)
        raw.linger = 0
        raw.connect(receiver.endpoint)
        for frames, _ in BAD_MESSAGES.values():
            raw.send_multipart(frames)
        raw.send_multipart(encode("chunk", {"actor_id": "a", "seq": 0, "episode_id": 0, "data": make_chunk(2)}))
        # messages on one pipe arrive in order, so once the good chunk is in, every bad one was handled
        assert pump(lambda: receiver.stats["chunks"] == 1, lambda: receiver.poll(20))
        raw.close()
        ctx.term()
        expected = collections.Counter(kind for _, kind in BAD_MESSAGES.values())
        for kind, n in expected.items():
            assert receiver.stats[kind] == n, (kind, receiver.stats)
        assert rec.keys() == [("a", 0)]


# ---------------------------------------------------------------- experience stream

def test_chunks_arrive_once_and_acks_clear_the_spool(tmp_path):
    rec = Recorder()
    spool = tmp_path / "spool"
    with ExperienceReceiver(ANY_PORT, rec, tmp_path / "state") as receiver, \
            ExperienceSender(receiver.endpoint, "robot-1", spool, max_in_flight=8) as sender:
        chunks = [make_chunk(5, seed=i) for i in range(20)]
        seqs = [sender.send(c, episode_id=i // 5) for i, c in enumerate(chunks)]
        assert seqs == list(range(20))
        assert sender.pending == len(spool_files(spool)) == 20  # durable before any ack
        assert pump(lambda: sender.pending == 0, lambda: receiver.poll(5), sender.poll)
        assert spool_files(spool) == []
        # every chunk exactly once; arrival order is not promised (a timed-out chunk is resent later)
        assert sorted(rec.keys()) == [("robot-1", s) for s in range(20)]
        for _, seq, episode, data in rec.calls:
            assert episode == seq // 5
            for k in chunks[seq]:
                np.testing.assert_array_equal(data[k], chunks[seq][k])
        assert receiver.stats["chunks"] == 20 and receiver.stats["steps"] == 100


def test_send_spools_before_sending_even_without_learner(tmp_path):
    spool = tmp_path / "spool"
    with ExperienceSender("tcp://127.0.0.1:1", "robot-1", spool) as sender:
        for i in range(3):
            sender.send(make_chunk(2, seed=i), episode_id=0)
        sender.poll()
        assert sender.pending == 3 and len(spool_files(spool)) == 3
        assert not sender.learner_alive
        with np.load(spool_files(spool)[0], allow_pickle=False) as npz:
            np.testing.assert_array_equal(npz["obs"], make_chunk(2, seed=0)["obs"])


def test_learner_restart_mid_stream_resends_unacked_without_duplicates(tmp_path):
    rec = Recorder()
    state = tmp_path / "state"
    receiver = ExperienceReceiver(ANY_PORT, rec, state, max_batch=2)
    endpoint = receiver.endpoint
    sender = ExperienceSender(endpoint, "robot-1", tmp_path / "spool", resend_timeout_s=0.3)
    try:
        sent = [sender.send(make_chunk(3, seed=i), episode_id=0) for i in range(10)]
        # take a few chunks, leaving the rest queued in the learner socket that is about to die
        assert pump(lambda: len(rec.calls) >= 4, lambda: receiver.poll(20))
        receiver.close()
        sent += [sender.send(make_chunk(3, seed=i), episode_id=1) for i in range(10, 20)]
        sender.poll()
        assert sender.pending > 0
        receiver = ExperienceReceiver(endpoint, rec, state)
        assert pump(lambda: sender.pending == 0, lambda: receiver.poll(10), sender.poll, timeout=10)
        counts = collections.Counter(rec.keys())
        assert set(counts) == {("robot-1", s) for s in sent}
        assert max(counts.values()) == 1, counts
        assert sender.stats.get("resent", 0) > 0  # the chunks lost with the first learner socket came back
    finally:
        sender.close()
        receiver.close()


def test_actor_restart_resends_spool_and_continues_seq(tmp_path):
    rec = Recorder()
    state, spool = tmp_path / "state", tmp_path / "spool"
    receiver = ExperienceReceiver(ANY_PORT, rec, state)
    endpoint = receiver.endpoint
    sender = ExperienceSender(endpoint, "robot-1", spool)
    try:
        # sent before the connection is up, the chunks would wait for a sender.poll() this test must not make
        assert pump(lambda: sender.connected, lambda: receiver.poll(10))
        first = [sender.send(make_chunk(2, seed=i), episode_id=0) for i in range(5)]
        assert pump(lambda: len(rec.calls) == 5, lambda: receiver.poll(20))
        # the actor dies before reading its acks, and the learner restarts too: the
        # resent chunks must be recognised from the persisted seen-set
        sender.close()
        receiver.close()
        assert len(spool_files(spool)) == 5
        receiver = ExperienceReceiver(endpoint, rec, state)
        sender = ExperienceSender(endpoint, "robot-1", spool)
        assert sender.pending == 5
        second = [sender.send(make_chunk(2, seed=i), episode_id=1) for i in range(5)]
        assert min(second) > max(first)
        assert pump(lambda: sender.pending == 0, lambda: receiver.poll(10), sender.poll)
        # exactly once each; the resent spool and the new chunks may interleave in any order
        assert sorted(rec.keys()) == [("robot-1", s) for s in first + second]
        assert receiver.stats["duplicates"] == 5
        assert spool_files(spool) == []
        sender.close()
        sender = ExperienceSender(endpoint, "robot-1", spool)
        assert sender.send(make_chunk(2), episode_id=2) > max(second)
    finally:
        sender.close()
        receiver.close()


def test_spool_belongs_to_one_actor(tmp_path):
    ExperienceSender("tcp://127.0.0.1:1", "robot-1", tmp_path).close()
    with pytest.raises(ValueError, match="belongs to actor"):
        ExperienceSender("tcp://127.0.0.1:1", "robot-2", tmp_path)


def test_failing_on_chunk_is_not_acked_and_is_retried(tmp_path):
    calls = []

    def flaky(actor_id, seq, episode_id, chunk):
        calls.append(seq)
        if len(calls) == 1:
            raise OSError("disk full")

    with ExperienceReceiver(ANY_PORT, flaky, tmp_path / "state") as receiver, \
            ExperienceSender(receiver.endpoint, "r", tmp_path / "spool", resend_timeout_s=0.2) as sender:
        sender.send(make_chunk(2), episode_id=0)
        assert pump(lambda: sender.pending == 0, lambda: receiver.poll(10), sender.poll)
        assert calls == [0, 0] and receiver.stats["rejected"] == 1


def test_seq_ranges():
    r = SeqRanges()
    for s in [5, 3, 4, 0, 1, 9, 2]:
        r.add(s)
    assert r.ranges() == [[0, 5], [9, 9]]
    assert 4 in r and 6 not in r and r.max() == 9
    assert SeqRanges(r.ranges()).ranges() == r.ranges()


# ---------------------------------------------------------------- policy

def test_policy_versions_late_joiner_and_lag(tmp_path):
    with PolicyServer(ANY_PORT) as server, \
            PolicyClient(server.endpoint, "robot-1", request_interval_s=0.02) as client:
        got = []

        def poll_client():
            update = client.poll()
            if update is not None:
                got.append(update)

        pump(lambda: False, lambda: server.poll(5), poll_client, timeout=0.2)
        assert got == [] and client.learner_alive  # answered with heartbeats, nothing to load yet
        v1 = b"onnx-model-v1" * 100
        server.publish(PolicyUpdate(1, v1))
        assert pump(lambda: len(got) == 1, lambda: server.poll(5), poll_client)
        assert got[0].version == 1 and got[0].onnx == v1 and got[0].sha256 == hashlib.sha256(v1).hexdigest()
        server.publish(PolicyUpdate(2, b"onnx-model-v2"))
        assert pump(lambda: len(got) == 2, lambda: server.poll(5), poll_client)
        assert got[1].version == 2 and got[1].onnx == b"onnx-model-v2"
        with pytest.raises(ValueError):
            server.publish(PolicyUpdate(2, b"old"))

        with PolicyClient(server.endpoint, "robot-2") as late:
            late_got = []
            assert pump(lambda: bool(late_got), lambda: server.poll(5),
                        lambda: late_got.extend(filter(None, [late.poll()])))
            assert [u.version for u in late_got] == [2]  # a late joiner gets the newest version only
        # the server learns each client's version from its next request
        assert pump(lambda: server.client_versions["robot-1"] == 2, lambda: server.poll(5), poll_client)


def test_policy_with_wrong_sha256_is_rejected(tmp_path):
    ctx = zmq.Context()
    fake = ctx.socket(zmq.ROUTER)
    fake.linger = 0
    port = fake.bind_to_random_port("tcp://127.0.0.1")
    try:
        with PolicyClient(f"tcp://127.0.0.1:{port}", "robot-1", request_interval_s=0.01) as client:
            def answer(onnx: bytes, sha: str, version: int):
                # the client (re)sends its request while its connection comes up
                assert pump(lambda: fake.poll(0), client.poll, timeout=2)
                identity, *frames = fake.recv_multipart()
                assert decode(frames)[0] == "policy_request"
                fake.send_multipart([identity, *encode("policy", {"version": version, "sha256": sha, "onnx": onnx})])

            answer(b"evil model", hashlib.sha256(b"good model").hexdigest(), 1)
            assert pump(lambda: client.stats.get("sha256_mismatch", 0) == 1, client.poll, timeout=2)
            assert client.version == 0
            # the same server sending a matching digest is accepted: the rejection was about the digest
            answer(b"good model", hashlib.sha256(b"good model").hexdigest(), 1)
            updates = []
            assert pump(lambda: bool(updates), lambda: updates.extend(filter(None, [client.poll()])), timeout=2)
            assert updates[0].version == 1 and client.version == 1
    finally:
        fake.close()
        ctx.term()


def test_torch_format_policies_carry_verified_weights(tmp_path):
    from daydream.transport.policy import weights_digest

    weights = {"wm.encoder.w": np.arange(6, dtype=np.float32).reshape(2, 3), "behavior.actor.b": np.ones(3, np.float32)}
    with PolicyServer(ANY_PORT) as server, \
            PolicyClient(server.endpoint, "torchy", format="torch", request_interval_s=0.02) as torchy, \
            PolicyClient(server.endpoint, "onnxy", request_interval_s=0.02) as onnxy:
        got: dict[str, list] = {"torchy": [], "onnxy": []}

        def poll_both():
            for name, client in (("torchy", torchy), ("onnxy", onnxy)):
                update = client.poll()
                if update is not None:
                    got[name].append(update)

        server.publish(PolicyUpdate(1, b"graph-v1"))  # no weights: torch actors get none, and the server counts it
        assert pump(lambda: got["onnxy"] and server.stats.get("format_unavailable", 0) >= 1,
                    lambda: server.poll(5), poll_both)
        assert got["torchy"] == []
        server.publish(PolicyUpdate(2, b"graph-v2", weights))
        assert pump(lambda: got["torchy"] and len(got["onnxy"]) == 2, lambda: server.poll(5), poll_both)
        update = got["torchy"][0]
        assert update.version == 2 and update.onnx is None and update.sha256 == weights_digest(weights)
        assert all(np.array_equal(update.weights[k], v) for k, v in weights.items())
        assert got["onnxy"][1].onnx == b"graph-v2" and got["onnxy"][1].weights is None
    with pytest.raises(ValueError, match="format"):
        PolicyClient("tcp://127.0.0.1:1", "x", format="pickle")


def test_credit_rides_on_acks_and_heartbeats(tmp_path):
    credit = {"value": 40}
    with ExperienceReceiver(ANY_PORT, lambda *a: None, tmp_path / "state",
                            credit=lambda: credit["value"]) as receiver, \
            ExperienceSender(receiver.endpoint, "a0", tmp_path / "spool", heartbeat_interval_s=0.05) as sender:
        assert pump(lambda: sender.credit == 40, lambda: receiver.poll(5), sender.poll)  # from the hello's answer
        assert not sender.should_wait
        credit["value"] = 8
        sender.send(make_chunk(steps=4), episode_id=1)
        assert sender.credit == 36  # counted down locally at once
        assert pump(lambda: sender.pending == 0, lambda: receiver.poll(5), sender.poll)
        assert pump(lambda: sender.credit == 8, lambda: receiver.poll(5), sender.poll)
        credit["value"] = 0
        assert pump(lambda: sender.should_wait, lambda: receiver.poll(5), sender.poll)
    # no pacing learner: credit stays None and the actor never waits
    with ExperienceReceiver(ANY_PORT, lambda *a: None, tmp_path / "state2") as receiver, \
            ExperienceSender(receiver.endpoint, "a1", tmp_path / "spool2") as sender:
        assert pump(lambda: sender.learner_alive, lambda: receiver.poll(5), sender.poll)
        assert sender.credit is None and not sender.should_wait


# ---------------------------------------------------------------- heartbeats

def test_heartbeats_populate_actors_with_rate_and_lag(tmp_path):
    with ExperienceReceiver(ANY_PORT, Recorder(), tmp_path / "state", policy_version=lambda: 3) as receiver, \
            ExperienceSender(receiver.endpoint, "robot-1", tmp_path / "spool", heartbeat_interval_s=0.05,
                             learner_timeout_s=0.3) as sender:
        sender.policy_version = 1
        end, sent = time.monotonic() + 0.6, 0
        while time.monotonic() < end or sent < 20:  # at most 10 steps every 20 ms = 500 steps/s
            sender.send(make_chunk(10), episode_id=0)
            sent += 1
            pump(lambda: False, lambda: receiver.poll(2), sender.poll, timeout=0.02)
        # rates are only bounded above: a loaded machine may run the loop slower, never faster
        assert 0 < sender.steps_per_s < 1000
        assert pump(lambda: receiver.actors().get("robot-1") is not None
                    and receiver.actors()["robot-1"].steps_per_s > 0, lambda: receiver.poll(5), sender.poll)
        info = receiver.actors()["robot-1"]
        assert info.policy_version == 1 and info.policy_lag == 2
        assert 0 < info.steps_per_s < 1000
        assert 0 < info.chunks <= sent and 0 <= info.pending <= sent and info.age_s >= 0
        assert sender.learner_alive and sender.learner_policy_version == 3
        receiver.close()
        assert pump(lambda: not sender.learner_alive, sender.poll, timeout=2)


# ---------------------------------------------------------------- CURVE

def test_curve_admits_only_known_actors(tmp_path):
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    allowed.mkdir()
    learner_pub, learner_sec = generate_keypair(keys, "learner")
    good_pub, good_sec = generate_keypair(keys, "good")
    _, bad_sec = generate_keypair(keys, "bad")
    (allowed / good_pub.name).write_bytes(good_pub.read_bytes())
    server_keys = CurveServerKeys(learner_sec, allowed)
    rec = Recorder()
    with ExperienceReceiver(ANY_PORT, rec, tmp_path / "state", curve=server_keys) as receiver, \
            PolicyServer(ANY_PORT, curve=server_keys) as policies, \
            ExperienceSender(receiver.endpoint, "good", tmp_path / "s1",
                             curve=CurveClientKeys(good_sec, learner_pub)) as good, \
            ExperienceSender(receiver.endpoint, "bad", tmp_path / "s2",
                             curve=CurveClientKeys(bad_sec, learner_pub)) as bad, \
            PolicyClient(policies.endpoint, "good", curve=CurveClientKeys(good_sec, learner_pub),
                         request_interval_s=0.02) as good_policy, \
            PolicyClient(policies.endpoint, "bad", curve=CurveClientKeys(bad_sec, learner_pub),
                         request_interval_s=0.02) as bad_policy:
        policies.publish(PolicyUpdate(1, b"model"))
        for i in range(3):
            good.send(make_chunk(2, seed=i), episode_id=0)
            bad.send(make_chunk(2, seed=i), episode_id=0)
        updates = collections.defaultdict(list)

        def poll_policies():
            policies.poll(2)
            for name, client in (("good", good_policy), ("bad", bad_policy)):
                u = client.poll()
                if u is not None:
                    updates[name].append(u)

        assert pump(lambda: good.pending == 0 and updates["good"], lambda: receiver.poll(5), good.poll, bad.poll,
                    poll_policies)
        pump(lambda: False, lambda: receiver.poll(5), good.poll, bad.poll, poll_policies, timeout=0.5)
        assert {a for a, _ in rec.keys()} == {"good"}
        assert bad.pending == 3 and not bad.learner_alive
        assert "bad" not in receiver.actors() and not updates["bad"] and not bad_policy.learner_alive
        assert receiver.stats["auth_failures"] >= 1
