"""The pieces of the asynchronous runtime, without processes: chunk building and checking,
the policy store, the acting policies (ONNX and torch agree), addresses, keys and the CLI's
errors for bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from daydream.agent import Agent
from daydream.export.onnx_export import export_onnx
from daydream.export.weights import acting_weights, load_acting_weights
from daydream.replay.spec import Spec
from daydream.runtime.acting import OnnxActing, TorchActing
from daydream.runtime.episode import ChunkBuilder
from daydream.runtime.policy_store import PolicyStore
from daydream.transport.codec import check_actor_id
from daydream.transport.endpoints import local_connect_address, policy_endpoint
from daydream.transport.policy import PolicyUpdate
from helpers import step_obs, synthetic_batch, tiny_config, vector_spaces
from processes import REPO


def test_chunk_builder_cuts_fixed_length_chunks():
    builder = ChunkBuilder(3)
    rows = [{"x": np.full(2, i, np.float32), "reward": np.float32(i)} for i in range(7)]
    chunks = [c for c in map(builder.add, rows) if c is not None]
    assert [c["reward"].tolist() for c in chunks] == [[0, 1, 2], [3, 4, 5]]
    assert chunks[0]["x"].shape == (3, 2)
    assert builder.take()["reward"].tolist() == [6] and builder.take() is None
    with pytest.raises(ValueError, match="chunk_length"):
        ChunkBuilder(0)


def test_check_chunk_names_what_differs():
    obs, act = vector_spaces()
    spec = Spec.of_spaces(obs, act)
    chunk = {k: np.zeros((5, *shape), spec.dtypes[k]) for k, shape in spec.shapes.items()}
    assert spec.check_chunk(chunk)[1] == 5
    with pytest.raises(ValueError, match="has keys"):
        spec.check_chunk({**chunk, "extra": np.zeros(5)})
    with pytest.raises(ValueError, match=r"'position' is float32\(4,\) per step, expected float32\(3,\)"):
        spec.check_chunk({**chunk, "position": np.zeros((5, 4), np.float32)})
    with pytest.raises(ValueError, match="'action' is float64"):
        spec.check_chunk({**chunk, "action": np.zeros((5, 2))})
    assert Spec.of_spaces(*vector_spaces(3, discrete=True)).shapes["action"] == (3,)  # one-hot


def test_policy_store_round_trip_and_rejects_tampering(tmp_path):
    store = PolicyStore(tmp_path)
    assert store.version() == 0 and store.load() is None
    weights = {"a": np.arange(4, dtype=np.float32)}
    store.save(PolicyUpdate(3, b"graph", weights), {"updates": 9})
    loaded = store.load()
    assert loaded.version == 3 and loaded.onnx == b"graph" and np.array_equal(loaded.weights["a"], weights["a"])
    store.save(PolicyUpdate(4, b"graph4"))
    assert store.load().weights is None and store.version() == 4
    store.onnx_path.write_bytes(b"tampered")
    assert store.load() is None  # sha256 in policy.json no longer matches


def test_torch_actor_weights_reproduce_the_learners_policy_and_state_carries_over(tmp_path):
    obs_space, act_space = vector_spaces()
    source = Agent(tiny_config(), obs_space, act_space)
    target = Agent(tiny_config("seed=1"), obs_space, act_space)  # different init, then loaded
    torch_policy = TorchActing(target, acting_weights(source), version=5)
    onnx = OnnxActing(export_onnx(source, version=5), seed=0)
    batch = synthetic_batch(obs_space, 2, b=1, t=6)
    rng = np.random.default_rng(0)
    state_a = state_b = None
    for t in range(6):
        obs = step_obs(batch, t)
        noise = {"latent": rng.gumbel(size=(1, 8, 8)).astype(np.float32),
                 "action": rng.normal(size=(1, 2)).astype(np.float32)}
        a, state_a = source.policy(obs, state_a, noise=noise)
        b, state_b = target.policy(obs, state_b, noise=noise)
        np.testing.assert_allclose(a, b, atol=1e-6)
    for t in range(3):  # the acting wrappers keep their own state between calls
        obs = {k: v[0] for k, v in step_obs(batch, t).items()}
        assert onnx.act(obs).shape == (2,) and torch_policy.act(obs).shape == (2,)
    # and from the same state with the same noise, the ONNX graph and the torch policy with the learner's
    # weights agree
    onnx.state = torch_policy.state = None
    for t in range(6):
        obs, noise = step_obs(batch, t), onnx.runtime.sample_noise(1)
        a, onnx.state = onnx.runtime.policy(obs, onnx.state, noise=noise)
        b, torch_policy.state = torch_policy.agent.policy(obs, torch_policy.state, noise=noise)
        np.testing.assert_allclose(a, b, atol=1e-4)
    swapped = OnnxActing(export_onnx(source, version=6))
    swapped.take_state(onnx)
    assert swapped.state is onnx.state and swapped.version == 6
    bigger = Agent(tiny_config("model.deter=96"), obs_space, act_space)
    with pytest.raises(ValueError, match="shape"):
        load_acting_weights(bigger, acting_weights(source))


def test_addresses_and_actor_ids():
    assert policy_endpoint("tcp://10.0.0.2:5555") == "tcp://10.0.0.2:5556"
    assert local_connect_address("tcp://*:7000") == "tcp://127.0.0.1:7000"
    for bad in ("10.0.0.2:5555", "tcp://host", "udp://h:1", "tcp://h:65535"):
        with pytest.raises(ValueError, match="tcp://HOST:PORT"):
            policy_endpoint(bad)
    assert check_actor_id("robot-1.lab_A") == "robot-1.lab_A"
    for bad in ("learner", "has space", "x" * 65, ""):
        with pytest.raises(ValueError, match="actor_id"):
            check_actor_id(bad)


def daydream(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daydream.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_keys_command_makes_an_admitting_key_folder(tmp_path):
    out = daydream("keys", "--dir", str(tmp_path / "keys"), "--actors", "robot-1", "robot-2")
    assert out.returncode == 0, out.stderr
    names = sorted(p.relative_to(tmp_path / "keys").as_posix() for p in (tmp_path / "keys").rglob("*") if p.is_file())
    assert names == ["allowed/robot-1.key", "allowed/robot-2.key", "learner.key", "learner.key_secret",
                     "robot-1.key", "robot-1.key_secret", "robot-2.key", "robot-2.key_secret"]
    secret = (tmp_path / "keys" / "learner.key_secret").read_bytes()
    assert daydream("keys", "--dir", str(tmp_path / "keys"), "--actors", "robot-3").returncode == 0
    assert (tmp_path / "keys" / "learner.key_secret").read_bytes() == secret  # existing keys are kept
    bad = daydream("keys", "--dir", str(tmp_path / "keys"), "--actors", "learner")
    assert bad.returncode == 2 and "actor_id" in bad.stderr


def test_status_command_lists_actors(tmp_path):
    from daydream.runtime.status import StatusFile

    StatusFile(tmp_path / "status.json", 1).write({
        "role": "learner", "received_steps": 640, "updates": 30, "policy_version": 4,
        "experience": {"malformed": 2, "chunks": 40},
        "actors": {"robot-1": {"steps_per_s": 19.5, "steps": 640, "policy_version": 3, "policy_lag": 1, "pending": 0,
                               "age_s": 0.4}}})
    out = daydream("status", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "640 steps received, 30 updates, policy version 4" in out.stdout and "malformed 2" in out.stdout
    assert "robot-1" in out.stdout and "19.5 steps/s" in out.stdout and "(lag 1)" in out.stdout
    assert "no learner status yet" in daydream("status", str(tmp_path / "..")).stdout


def test_cli_errors_for_bad_async_input(tmp_path):
    out = daydream("actor", "--config", "pendulum_tiny", "--logdir", str(tmp_path), "--learner", "localhost:5555")
    assert out.returncode == 2 and "must look like tcp://HOST:PORT" in out.stderr
    out = daydream("learner", "--config", "pendulum_tiny", "--logdir", str(tmp_path), "--set",
                   "transport.publish_evry=3")
    assert out.returncode == 2 and "did you mean 'transport.publish_every'" in out.stderr
    out = daydream("actor", "--config", "pendulum_tiny", "--logdir", str(tmp_path), "--set",
                   "transport.curve.enabled=true", "--set", f"transport.curve.keys_dir={tmp_path / 'nokeys'}")
    assert out.returncode == 2 and "daydream keys" in out.stderr
    out = daydream("run", "--config", "pendulum_tiny", "--logdir", str(tmp_path), "--actors", "0")
    assert out.returncode == 2 and "--actors must be at least 1" in out.stderr


@pytest.mark.parametrize("setup", [
    "from daydream.runtime.interrupts import dump_stacks_on_sigusr1; dump_stacks_on_sigusr1()",  # the CLI's
    "from daydream.ros.node_main import node_parser, start_node; "  # every ROS node executable's
    "start_node('robot_driver', node_parser('robot_driver'), ['--config', 'a1_walk'])",
], ids=["cli", "ros_node"])
def test_sigusr1_dumps_every_threads_stack(setup):
    # a process that will not stop can be asked where it is (the multi-process tests do it on a stop timeout)
    code = (f"import os, signal, threading, time; {setup}; "
            "threading.Thread(target=time.sleep, args=(5,), daemon=True).start(); "
            "os.kill(os.getpid(), signal.SIGUSR1); time.sleep(0.2)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.lower().count("thread 0x") >= 2 and 'File "<string>"' in out.stderr, out.stderr


def test_a_child_that_fails_is_restarted_and_one_that_finishes_is_not(tmp_path):
    from daydream.runtime.launcher import MAX_RESTARTS, Child

    failing = Child("failing", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "failing.log")
    finished = Child("finished", [sys.executable, "-c", "pass"], tmp_path / "finished.log")
    for child in (failing, finished):
        child.start()
        child.process.wait(60)
    assert failing.restart_if_exited() and failing.restarts == 1
    assert not finished.restart_if_exited() and finished.restarts > MAX_RESTARTS
    failing.process.wait(60)
    assert not failing.restart_if_exited(allowed=False)
