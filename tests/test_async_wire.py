"""Bad input on the wire, at process level: a running learner and a running actor each get
malformed frames, unknown message types, oversized messages, a chunk that does not fit,
a policy whose sha256 does not match, and peers with the wrong CURVE keys. Each is
dropped with a log line and a counter in the process's status.json; nothing crashes,
and good traffic still flows afterwards."""

from __future__ import annotations

import hashlib
import time

import msgpack
import numpy as np
import pytest
import zmq

from daydream.transport import ExperienceReceiver, ExperienceSender, PolicyServer, PolicyUpdate, encode
from daydream.transport.keys import make_key_folder, server_keys_from_dir
from processes import actor, actor_status, fast_overrides, free_port_pair, learner, learner_status, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def pendulum_chunk(n: int = 8, state_dim: int = 3) -> dict[str, np.ndarray]:
    flags = np.zeros(n, bool)
    first = flags.copy()
    first[0] = True
    return {"state": np.zeros((n, state_dim), np.float32), "is_first": first, "is_last": flags.copy(),
            "is_terminal": flags.copy(), "action": np.zeros((n, 1), np.float32), "reward": np.zeros(n, np.float32)}


def test_learner_drops_bad_messages_and_keeps_serving(tmp_path):
    logdir, port = tmp_path / "run", free_port_pair()
    lrn = learner(tmp_path, fast_overrides(logdir, port, "transport.max_message_bytes=1000000"))
    ctx = zmq.Context()
    try:
        wait_until(lambda: learner_status(logdir).get("role") == "learner", 60, "the learner to start", lrn)
        raw = ctx.socket(zmq.DEALER)
        raw.linger = 0
        raw.connect(f"tcp://127.0.0.1:{port}")
        raw.send_multipart([b"just one frame"])  # malformed
        raw.send_multipart([b"launch_missiles", msgpack.packb({})])  # unknown type
        raw.send_multipart(encode("chunk", {"actor_id": "big", "seq": 0, "episode_id": 0,
                                            "data": {"x": np.zeros((300_000,), np.float32)}}))  # 1.2 MB > 1 MB
        raw.send_multipart(encode("chunk", {"actor_id": "wrongkeys", "seq": 0, "episode_id": 0,
                                            "data": {"x": np.zeros((4, 2), np.float32)}}))  # does not fit the env
        raw.send_multipart(encode("chunk", {"actor_id": "wrongshape", "seq": 0, "episode_id": 0,
                                            "data": pendulum_chunk(state_dim=5)}))
        pol = ctx.socket(zmq.DEALER)
        pol.linger = 0
        pol.connect(f"tcp://127.0.0.1:{port + 1}")
        pol.send_multipart([b"policy_request", b"\xc1 not msgpack"])  # malformed on the policy socket
        pol.send_multipart(encode("chunk", {"actor_id": "a", "seq": 0, "episode_id": 0, "data": pendulum_chunk()}))

        def counted() -> bool:
            s = learner_status(logdir)
            e, p = s.get("experience", {}), s.get("policy", {})
            return (e.get("malformed", 0) >= 1 and e.get("unknown_type", 0) >= 1 and e.get("oversized", 0) >= 1
                    and e.get("rejected", 0) >= 2 and p.get("malformed", 0) >= 1 and p.get("unexpected", 0) >= 1)

        wait_until(counted, 30, "every bad message to be counted", lrn)
        # still alive, and a good chunk is written and acked
        with ExperienceSender(f"tcp://127.0.0.1:{port}", "good", tmp_path / "spool") as sender:
            sender.send(pendulum_chunk(), episode_id=1)
            deadline = time.monotonic() + 20
            while sender.pending and time.monotonic() < deadline:
                sender.poll()
                time.sleep(0.05)
            assert sender.pending == 0
        assert lrn.alive()
        wait_until(lambda: learner_status(logdir).get("received_steps") == 8, 10, "the good chunk", lrn)
        assert lrn.stop() in (0, 130)
    finally:
        ctx.destroy(linger=0)
        if lrn.alive():
            lrn.kill()
    log = lrn.log_path.read_text()
    assert "dropped bad message" in log
    assert "chunk from actor wrongkeys has keys ['x']" in log
    assert "chunk from actor wrongshape: 'state' is float32(5,) per step, expected float32(3,)" in log


def test_actor_rejects_a_tampered_policy_and_garbage_and_keeps_acting(tmp_path):
    logdir, port = tmp_path / "run", free_port_pair()
    chunks = []
    receiver = ExperienceReceiver(f"tcp://127.0.0.1:{port}", lambda *a: chunks.append(a), tmp_path / "state",
                                  credit=lambda: 10**9)
    ctx = zmq.Context()
    fake = ctx.socket(zmq.ROUTER)
    fake.linger = 0
    fake.bind(f"tcp://127.0.0.1:{port + 1}")
    act = actor(tmp_path, fast_overrides(logdir, port), "a0")
    try:
        onnx = b"not really onnx"
        requests = 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (requests < 3 or len(chunks) < 3):
            receiver.poll(20)
            while fake.poll(0):
                identity, *frames = fake.recv_multipart()
                requests += 1
                fake.send_multipart([identity, *encode("policy", {"version": 7, "onnx": onnx,
                                                                  "sha256": hashlib.sha256(b"other").hexdigest()})])
                fake.send_multipart([identity, b"garbage"])
                fake.send_multipart([identity, b"self_destruct", msgpack.packb({})])
        assert requests >= 3 and len(chunks) >= 3, (requests, len(chunks), act.log())

        def counted() -> bool:
            s = actor_status(logdir, "a0").get("policy_link", {})
            return s.get("sha256_mismatch", 0) >= 1 and s.get("malformed", 0) >= 1 and s.get("unknown_type", 0) >= 1

        deadline = time.monotonic() + 30
        while not counted():
            receiver.poll(20)
            assert time.monotonic() < deadline, (actor_status(logdir, "a0"), act.log())
        status = actor_status(logdir, "a0")
        assert status["policy_version"] == 0  # still random actions: nothing unverified was loaded
        assert act.alive()
        assert act.stop() in (0, 130)
    finally:
        receiver.close()
        ctx.destroy(linger=0)
        if act.alive():
            act.kill()
    assert "rejected policy version 7: sha256" in act.log()


def test_curve_admits_known_actors_only_and_actors_trust_only_their_learner(tmp_path):
    keys, other = tmp_path / "keys", tmp_path / "other_keys"
    make_key_folder(keys, ["a0", "a1"])
    make_key_folder(other, ["x9"])
    logdir, port = tmp_path / "run", free_port_pair()
    curve = ["transport.curve.enabled=true"]
    lrn = learner(tmp_path, fast_overrides(logdir, port, *curve, f"transport.curve.keys_dir={keys}"))
    good = actor(tmp_path, fast_overrides(logdir, port, *curve, f"transport.curve.keys_dir={keys}"), "a0")
    # an actor whose key the learner never admitted
    intruder = actor(tmp_path, fast_overrides(logdir, port, *curve, f"transport.curve.keys_dir={other}",
                                              "transport.pace_actors=false", "transport.drain_timeout_s=1"), "x9")
    # an admitted actor pointed at an impostor learner that holds other keys
    fake_port = free_port_pair()
    impostor = PolicyServer(f"tcp://127.0.0.1:{fake_port + 1}", curve=server_keys_from_dir(other))
    impostor.publish(PolicyUpdate(99, b"evil policy"))
    fooled = actor(tmp_path, fast_overrides(logdir, fake_port, *curve, f"transport.curve.keys_dir={keys}",
                                            "transport.pace_actors=false", "transport.drain_timeout_s=1"), "a1")
    procs = (lrn, good, intruder, fooled)
    try:
        def settled() -> bool:
            impostor.poll(10)
            return (actor_status(logdir, "a0").get("policy_version", 0) >= 1
                    and learner_status(logdir).get("experience", {}).get("auth_failures", 0) >= 1
                    and actor_status(logdir, "a1").get("policy_link", {}).get("auth_failures", 0) >= 1
                    and actor_status(logdir, "x9").get("steps_spooled", 0) > 0)

        wait_until(settled, 150, "the admitted actor's policy and both rejections", *procs)
        assert set(learner_status(logdir)["actors"]) == {"a0"}
        assert actor_status(logdir, "a1")["policy_version"] == 0 and impostor.stats.get("policies_sent", 0) == 0
        assert actor_status(logdir, "x9")["policy_version"] == 0
        assert all(p.alive() for p in procs)
        for p in (good, intruder, fooled, lrn):
            assert p.stop() in (0, 130), p.log()
    finally:
        impostor.close()
        for p in procs:
            if p.alive():
                p.kill()
    assert "CURVE handshake failed" in fooled.log_path.read_text()
