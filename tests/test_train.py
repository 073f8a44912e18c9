"""End-to-end training: the CLI, the learning check, and crash-and-resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from daydream.config import load_config
from daydream.runtime.checkpoint import load_checkpoint
from daydream.runtime.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]


def daydream(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daydream.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def random_returns(episodes: int, seed: int) -> list[float]:
    from daydream.envs import make_env
    from daydream.envs.contract import random_action

    env = make_env(load_config("pendulum_tiny").env, seed=seed)
    rng = np.random.default_rng(seed)
    returns = []
    for i in range(episodes):
        env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(random_action(env.action_space, rng))
            total += reward
            done = terminated or truncated
        returns.append(total)
    return returns


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_tiny_agent_learns_pendulum(tmp_path):
    """The tiny model on Pendulum must beat a random policy clearly within a few CPU minutes."""
    from daydream.runtime.train import train

    config = load_config("pendulum_tiny", [f"logdir={tmp_path}", "train.progress=false", "train.eval_episodes=5"])
    summary = train(config)
    baseline = float(np.mean(random_returns(10, seed=123)))
    episodes = [row["return"] for row in read_metrics(tmp_path / "metrics.jsonl", "episode")]
    late = float(np.mean(episodes[-5:]))
    print(f"random {baseline:.0f}, last 5 training episodes {late:.0f}, eval {summary['return']:.0f}")
    assert baseline < -1000, "the random baseline moved; the threshold below assumes about -1250"
    assert summary["return"] > baseline + 300, (summary, baseline)
    assert late > baseline + 200, (episodes[-5:], baseline)


def test_train_eval_cli_and_resume_after_sigkill(tmp_path):
    logdir = tmp_path / "run"
    common = ["--config", "pendulum_tiny", "--logdir", str(logdir), "--set", "train.progress=false",
              "--set", "threads=1",
              "--set", "train.prefill=300", "--set", "train.train_ratio=16", "--set", "train.checkpoint_every=300",
              "--set", "replay.chunk_size=100", "--set", "train.eval_episodes=0", "--set", "train.log_every=200"]
    proc = subprocess.Popen([sys.executable, "-m", "daydream.cli", "train", *common, "--set", "train.steps=100000"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ckpt = logdir / "checkpoint.pt"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            if ckpt.exists() and load_checkpoint(ckpt)["env_steps"] >= 900:
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.5)
        else:
            pytest.fail("training never reached a checkpoint at 900 env steps")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    saved = load_checkpoint(ckpt)
    chunks_before = sorted(p.name for p in (logdir / "replay").rglob("*") if p.is_file())
    assert chunks_before, "no replay chunks on disk"

    target = saved["env_steps"] + 400
    result = daydream("train", *common, "--set", f"train.steps={target}")  # no --resume: refused
    assert result.returncode == 2 and "--resume" in result.stderr

    result = daydream("train", *common, "--set", f"train.steps={target}", "--resume")
    assert result.returncode == 0, result.stderr
    assert f"resumed {logdir} at env step {saved['env_steps']}" in result.stderr
    final = load_checkpoint(ckpt)
    assert final["env_steps"] == target
    assert final["agent"]["updates"] > saved["agent"]["updates"]
    # the replay written before the kill is still there, and the run added to it
    chunks_after = sorted(p.name for p in (logdir / "replay").rglob("*") if p.is_file())
    assert set(chunks_before) <= set(chunks_after) and len(chunks_after) > len(chunks_before)
    # updates follow the train ratio from the restored counters: no catch-up flood
    expected_updates = int((target - 300 + 1) * 16 / (16 * 32))
    assert abs(final["agent"]["updates"] - expected_updates) <= 1

    # metrics went to JSONL and TensorBoard event files
    train_rows = read_metrics(logdir / "metrics.jsonl", "train")
    assert train_rows and "model_loss" in train_rows[-1] and "env_steps_per_s" in train_rows[-1]
    assert list((logdir / "tb").glob("events.out.tfevents.*"))

    result = daydream("eval", "--checkpoint", str(logdir), "--episodes", "1", "--video", str(tmp_path / "ep.gif"))
    assert result.returncode == 0, result.stderr
    assert "mean return" in result.stdout
    assert (tmp_path / "ep.gif").stat().st_size > 1000


@pytest.mark.parametrize("args, message", [
    (["train", "--config", "no_such_task"], "not found; known task configs"),
    (["train", "--config", "pendulum_tiny", "--set", "model.detr=3"], "did you mean 'model.deter'"),
    (["train", "--config", "pendulum_tiny", "--set", "train.steps=many"], "must be an integer"),
    (["train", "--config", "pendulum_tiny", "--set", "env.task=NoSuchEnv-v9"], "NoSuchEnv-v9"),
    (["train", "--config", "pendulum_tiny", "--set", "model.mlp_keys=^zzz$"], "no observation key matches"),
    (["eval", "--checkpoint", "/nonexistent/run"], "no checkpoint"),
])
def test_cli_reports_bad_input(tmp_path, args, message):
    result = daydream(*args, "--set", f"logdir={tmp_path}" if args[0] == "train" else "seed=0")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_rejects_checkpoint_of_other_model(tmp_path):
    from daydream.runtime.checkpoint import save_checkpoint
    from daydream.runtime.train import Trainer

    config = load_config("pendulum_tiny", [f"logdir={tmp_path}", "train.progress=false"])
    trainer = Trainer(config)
    trainer.save()
    trainer.close()
    payload = load_checkpoint(tmp_path / "checkpoint.pt")
    payload["config"]["model"]["deter"] = 128
    save_checkpoint(tmp_path / "checkpoint.pt", payload)
    result = daydream("eval", "--checkpoint", str(tmp_path), "--episodes", "1")
    assert result.returncode == 2
    assert "checkpoint does not fit this model" in result.stderr and "model.deter" in result.stderr
