"""The main job end to end, shrunk to a smoke run: `daydream run --config a1_roll_cpu` (the
README's `make run` on a CPU; `LONG=1` runs a1_walk, the same task at DayDreamer's sizes)
trains a learner and an ONNX actor on the simulated A1 until `train.steps`, then reports.
It checks the pipeline, not the gait: a checkpoint, the exported policy, the actor's
per-episode forward velocity, the learning-curve PNG, a video rendered offscreen and
report.json are all left behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from processes import REPO, free_port_pair, learner_status, replay_steps, spooled_steps

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_make_run_pipeline_on_the_simulated_a1(tmp_path):
    logdir, port = tmp_path / "a1", free_port_pair()
    sets = [f"logdir={logdir}", "size=tiny", "threads=1", f"transport.bind=tcp://127.0.0.1:{port}",
            "env.time_limit=60", "train.steps=360", "train.prefill=120", "train.log_every=120",
            "train.checkpoint_every=240", "train.progress=false", "replay.batch_size=4", "replay.batch_length=16",
            "train.train_ratio=16", "transport.chunk_length=30", "transport.publish_every=10",
            "transport.status_every_s=0.2", "transport.heartbeat_interval_s=0.2", "transport.pace_slack_steps=16"]
    args = [sys.executable, "-m", "daydream.cli", "run", "--config", "a1_roll_cpu", "--actors", "1"]
    for item in sets:
        args += ["--set", item]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        # SIGINT, not a kill: the launcher then stops its learner and actor (their own sessions) too
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
        pytest.fail(f"daydream run did not finish within 240 s:\n{output[-4000:]}")
    assert proc.returncode == 0, output[-4000:]

    status = learner_status(logdir)
    assert status["received_steps"] >= 360 and status["updates"] > 0 and status["policy_version"] >= 2
    assert spooled_steps(logdir, "actor-0") == replay_steps(logdir)  # the actor was drained into replay
    assert (logdir / "checkpoint.pt").is_file() and (logdir / "policy" / "policy.onnx").is_file()
    episodes = [json.loads(line) for line in (logdir / "actors" / "actor-0" / "metrics.jsonl").read_text().splitlines()]
    assert len(episodes) >= 5 and all("forward_velocity" in e and "upright" in e for e in episodes)
    assert max(e["policy_version"] for e in episodes) >= 1  # later episodes ran a learned policy

    report = json.loads((logdir / "report.json").read_text())
    # the config's evaluation: 4 episodes in a row (one life, no resets), actions sampled as in training
    assert report["policy_version"] == status["policy_version"] and len(report["returns"]) == 4
    assert report["mode"] == "explore" and "evaluation (explore mode)" in output
    assert set(report["diagnostics"]) == {"forward_velocity", "upright", "stage"}
    # the training episodes: random prefill (policy 0) beside the learned policies' episodes
    assert report["training"]["random"]["episodes"] >= 1 and report["training"]["last"]["episodes"] >= 1
    assert "training, random actions (prefill)" in output
    assert (logdir / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    video = logdir / report["video"]
    assert video.suffix in (".mp4", ".gif") and video.stat().st_size > 5_000
    assert "forward_velocity" in output and str(video) in output
