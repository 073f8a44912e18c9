"""A run's report: the learning-curve PNG from learner and actor metrics, evaluation of the
exported ONNX policy with the robot task's diagnostics, and exporting a policy from a
checkpoint when a run (from `daydream train`) has none."""

from __future__ import annotations

import json

import numpy as np
import pytest

from daydream.agent import Agent
from daydream.config import load_config, save_config_yaml
from daydream.envs import make_env
from daydream.runtime.checkpoint import CHECKPOINT_NAME, save_checkpoint
from daydream.runtime.metrics import MetricsWriter
from daydream.runtime.report import exported_policy, format_report, make_report, plot_learning_curve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def a1_config(logdir):
    return load_config("a1_walk", ["size=tiny", f"logdir={logdir}", "env.time_limit=15", "device=cpu",
                                   "robot.driver_args={start: standing}"])


def test_learning_curve_plots_returns_and_actor_diagnostics(tmp_path):
    assert plot_learning_curve(tmp_path, tmp_path / "curve.png") is None  # no episodes yet: no plot
    learner = MetricsWriter(tmp_path, tensorboard=False)
    actor = MetricsWriter(tmp_path / "actors" / "actor-0", tensorboard=False)
    for i in range(30):
        learner.write("episode", 250 * (i + 1), {"return": float(i), "length": 250})
        actor.write("episode", 250 * (i + 1), {"return": float(i), "length": 250, "forward_velocity": 0.01 * i})
    learner.close(), actor.close()
    path = plot_learning_curve(tmp_path, tmp_path / "curve.png")
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000


def test_training_summary_sets_the_learned_episodes_beside_the_random_prefill(tmp_path):
    from daydream.runtime.report import Report, training_summary

    assert training_summary(tmp_path) is None  # no actor episodes yet
    for actor, offset in (("actor-0", 0.0), ("actor-1", 1.0)):
        writer = MetricsWriter(tmp_path / "actors" / actor, tensorboard=False)
        for i in range(30):  # 4 random-action episodes each, then policies; returns peak at i = 20
            writer.write("episode", 250 * (i + 1), {"return": offset + 20 - abs(i - 20), "length": 250,
                                                    "policy_version": max(0, i - 3), "upright": 0.1 * (i >= 4)})
        writer.close()
    summary = training_summary(tmp_path, window=3)
    assert summary["random"] == {"episodes": 8, "return": 2.0, "upright": 0.0}  # returns 0..3 and 1..4
    # actor-0's episodes are read first, then actor-1's: the best 3 in a row are actor-1's 19..21
    assert summary["best"]["episodes"] == 3 and summary["best"]["return"] == pytest.approx(1 + 20 - 2 / 3)
    assert summary["last"] == {"episodes": 3, "return": 13.0, "upright": pytest.approx(0.1)}  # actor-1 27..29
    text = format_report(Report(tmp_path, 1, [0.0], [250], {}, None, None, None, summary))
    assert "training, random actions (prefill) 8 episode(s): return 2.0, upright 0.000" in text
    assert "training, best run of 3 episode(s)" in text


def test_report_exports_a_checkpoint_and_evaluates_the_onnx_policy(tmp_path):
    config = a1_config(tmp_path)
    save_config_yaml(config, tmp_path / "config.yaml")
    env = make_env(config.env, seed=0, robot=config.robot)
    agent = Agent(config, env.observation_space, env.action_space)
    env.close()
    with pytest.raises(FileNotFoundError, match="neither an exported policy"):
        exported_policy(tmp_path)
    save_checkpoint(tmp_path / CHECKPOINT_NAME, {"agent": agent.state_dict(), "config": config.to_dict(),
                                                 "policy_version": 0})
    report = make_report(tmp_path, episodes=2, video=False)
    assert (tmp_path / "policy" / "policy.onnx").is_file() and report.policy_version == 1
    assert len(report.returns) == 2 and all(np.isfinite(report.returns))
    # an untrained policy: whatever it does, the episode means are physical
    assert -1.0 <= report.diagnostics["upright"] <= 1.0 and abs(report.diagnostics["forward_velocity"]) < 2.0
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["policy_version"] == 1 and saved["video"] is None and saved["learning_curve"] is None
    assert set(saved["diagnostics"]) == {"forward_velocity", "upright", "stage"}
    # beside it, uniform random actions on the same episodes
    assert len(saved["random"]["returns"]) == 2
    assert set(saved["random"]["diagnostics"]) == {"forward_velocity", "upright", "stage"}
    assert saved["random"]["returns"] != saved["returns"]
    assert "random actions, same episodes" in format_report(report)


def test_the_random_baseline_starts_where_the_policy_started(tmp_path, monkeypatch):
    """A robot env has no resets: the random actions get an env of their own, so they start from
    the start pose and not from wherever the evaluated policy left the robot."""
    import daydream.runtime.report as report_module

    config = a1_config(tmp_path)
    save_config_yaml(config, tmp_path / "config.yaml")
    env = make_env(config.env, seed=0, robot=config.robot)
    agent = Agent(config, env.observation_space, env.action_space)
    env.close()
    save_checkpoint(tmp_path / CHECKPOINT_NAME, {"agent": agent.state_dict(), "config": config.to_dict(),
                                                 "policy_version": 0})
    firsts, real = [], report_module.evaluate

    def evaluate(policy, env, episodes, **kwargs):
        obs, _ = env.reset(seed=kwargs.get("seed"))
        firsts.append(obs["joint_position"].copy())
        for _ in range(10):  # move the robot, as an evaluated policy does
            env.step(np.full(12, 1.0, np.float32))
        return real(policy, env, episodes, **kwargs)

    monkeypatch.setattr(report_module, "evaluate", evaluate)
    make_report(tmp_path, episodes=1, video=False)
    assert len(firsts) == 2
    np.testing.assert_allclose(firsts[1], firsts[0])


def test_evaluation_acts_in_the_mode_it_is_given():
    from daydream.runtime.evaluate import evaluate

    class Recorder:
        version, modes = 1, []

        def act(self, obs, mode="explore"):
            self.modes.append(mode)
            return np.zeros(12, np.float32)

    policy = Recorder()
    env = make_env(a1_config("unused").env, seed=0, robot=a1_config("unused").robot)
    try:
        evaluate(policy, env, 1, mode="explore")
        assert policy.modes and set(policy.modes) == {"explore"}
        evaluate(policy, env, 1)
        assert policy.modes[-1] == "eval"  # the default: the policy's mode, no exploration
        with pytest.raises(ValueError, match="eval or explore"):
            evaluate(policy, env, 1, mode="greedy")
    finally:
        env.close()


def test_report_of_a_missing_run_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        make_report(tmp_path)
