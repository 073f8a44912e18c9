"""`daydream report LOGDIR`: what a finished run leaves behind besides its checkpoint.

- `learning_curve.png`: episode returns over env steps (the learner's or trainer's
  `metrics.jsonl`, with a moving average and any evaluation returns), and, where the
  env logs them, per-episode diagnostics such as the robot's forward velocity (from
  each actor's `actors/<id>/metrics.jsonl`, or the trainer's evaluations).
- `gait.mp4` (GIF without ffmpeg): an offscreen video of one evaluation episode.
- `report.json`: the evaluated policy version, returns and diagnostics, beside those of
  uniform random actions on the same episodes (seeds), so that what was learned shows;
  and the actors' own training episodes: those of random actions (the prefill, before the
  first policy), the last ones and the best run of them. On a robot without resets the
  training episodes are the behaviour (each goes on from where the last ended), where an
  evaluation starts afresh from the start pose.

The evaluation runs the exported ONNX policy (`policy/policy.onnx`, what a robot runs)
on onnxruntime. A run from `daydream train` has no exported policy yet: it is exported
from `checkpoint.pt` into `policy/` first.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from daydream.config import Config, config_from_dict, load_config
from daydream.envs import make_env
from daydream.runtime.acting import ActingPolicy, RandomActing
from daydream.runtime.checkpoint import CHECKPOINT_NAME
from daydream.runtime.evaluate import EvalResult, evaluate
from daydream.runtime.metrics import read_metrics
from daydream.runtime.planner_acting import exported_acting
from daydream.runtime.policy_store import PolicyStore
from daydream.runtime.video import save_video
from daydream.transport.policy import PolicyUpdate

log = logging.getLogger(__name__)

CURVE_NAME, VIDEO_NAME, REPORT_NAME = "learning_curve.png", "gait.mp4", "report.json"


@dataclass
class Report:
    logdir: Path
    policy_version: int
    returns: list[float]
    lengths: list[int]
    diagnostics: dict[str, float]
    curve: Path | None
    video: Path | None
    random: EvalResult | None = None  # uniform random actions on the same episode seeds
    training: dict[str, dict[str, float]] | None = None  # `training_summary` of the actors' episodes
    mode: str = "eval"  # the evaluation's actions: the policy's mode, or sampled as in training (explore)

    def to_dict(self) -> dict[str, Any]:
        random = None if self.random is None else {
            "returns": self.random.returns, "lengths": self.random.lengths, "mean_return": self.random.mean_return,
            "diagnostics": self.random.mean_diagnostics()}
        return {"policy_version": self.policy_version, "mode": self.mode, "returns": self.returns,
                "lengths": self.lengths,
                "mean_return": float(np.mean(self.returns)) if self.returns else None,
                "diagnostics": self.diagnostics, "random": random, "learning_curve": self.curve and self.curve.name,
                "video": self.video and self.video.name, "training": self.training, "written_at": time.time()}


def run_config(logdir: Path) -> Config:
    """The config a run was started with (its `config.yaml`)."""
    path = logdir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{logdir} holds no config.yaml: is it a daydream run directory?")
    return load_config(path)


def exported_policy(logdir: Path) -> PolicyUpdate:
    """The run's newest exported policy; exported from its checkpoint first if it has none."""
    store = PolicyStore(logdir / "policy")
    update = store.load()
    if update is not None and update.onnx is not None:
        return update
    checkpoint = logdir / CHECKPOINT_NAME
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{logdir} has neither an exported policy (policy/) nor a {CHECKPOINT_NAME}; "
                                "train first (daydream run / train)")
    import torch  # only this fallback needs the torch agent

    from daydream.agent import Agent
    from daydream.export.onnx_export import export_onnx
    from daydream.export.weights import acting_weights
    from daydream.runtime.checkpoint import load_checkpoint

    payload = load_checkpoint(checkpoint)
    config = config_from_dict(payload["config"], ["device=cpu"])
    env = make_env(config.env, seed=config.seed, robot=config.robot)
    try:
        agent = Agent(config, env.observation_space, env.action_space)
    finally:
        env.close()
    agent.load_state_dict(payload["agent"])
    version = max(1, int(payload.get("policy_version", 0)))
    with torch.no_grad():
        update = PolicyUpdate(version, export_onnx(agent, version=version), acting_weights(agent))
    store.save(update, {"exported_from": str(checkpoint), "updates": agent.updates})
    log.info("exported the checkpoint's actor to %s", store.onnx_path)
    return update


def actor_episodes(logdir: Path) -> dict[str, list[dict[str, Any]]]:
    """Each actor's episode rows (`actors/<id>/metrics.jsonl`), by actor id."""
    return {p.parent.name: read_metrics(p, "episode") for p in sorted((logdir / "actors").glob("*/metrics.jsonl"))}


def training_summary(logdir: Path, window: int = 10) -> dict[str, dict[str, float]] | None:
    """The actors' training episodes in three groups, each with its episode count and mean return
    and diagnostics: `random` (policy version 0: the prefill's random actions), `last` (the
    last `window` episodes of learned policies) and `best` (the `window` consecutive episodes
    of learned policies with the highest mean return). None without actor episodes."""
    rows = [r for episodes in actor_episodes(logdir).values() for r in episodes if "return" in r]
    if not rows:
        return None

    def mean(group: list[dict[str, Any]]) -> dict[str, float]:
        keys = [k for k in group[0] if k not in ("kind", "step", "length", "policy_version")]
        return {"episodes": len(group), **{k: float(np.mean([r[k] for r in group if k in r])) for k in keys}}

    random = [r for r in rows if not r.get("policy_version")]
    learned = [r for r in rows if r.get("policy_version")]
    summary = {"random": mean(random)} if random else {}
    if learned:
        n = min(window, len(learned))
        returns = np.convolve([r["return"] for r in learned], np.ones(n) / n, mode="valid")
        best = int(np.argmax(returns))
        summary.update(last=mean(learned[-n:]), best=mean(learned[best:best + n]))
    return summary


def plot_learning_curve(logdir: Path, path: Path) -> Path | None:
    """Plot returns (and diagnostics) over env steps; None when the run has no episodes yet."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    rows = read_metrics(logdir / "metrics.jsonl") if (logdir / "metrics.jsonl").is_file() else []
    episodes = [r for r in rows if r.get("kind") == "episode" and "return" in r]
    evals = [r for r in rows if r.get("kind") == "eval" and "return" in r]
    actors = actor_episodes(logdir)
    diag_keys = sorted({k for rs in actors.values() for r in rs for k in r} - {"kind", "step", "return", "length",
                                                                                "policy_version"})
    diag_keys += [k for k in sorted({k for r in evals for k in r} - {"kind", "step", "return", "length"})
                  if k not in diag_keys]
    if not episodes and not evals:
        return None
    panels = 1 + len(diag_keys)
    fig, axes = plt.subplots(panels, 1, figsize=(7, 3 * panels), sharex=True, squeeze=False)
    ax = axes[0, 0]
    if episodes:
        steps = np.array([r["step"] for r in episodes])
        returns = np.array([r["return"] for r in episodes])
        ax.plot(steps, returns, ".", alpha=0.35, label="episode return")
        window = max(1, min(20, len(returns) // 5))
        smooth = np.convolve(returns, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, "-", label=f"mean of {window}")
    if evals:
        ax.plot([r["step"] for r in evals], [r["return"] for r in evals], "o-", label="evaluation")
    ax.set_ylabel("return")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    for i, key in enumerate(diag_keys, start=1):
        ax = axes[i, 0]
        for actor_id, rs in actors.items():
            points = [(r["step"], r[key]) for r in rs if key in r]
            if points:
                # an actor counts its own steps; with several actors this x-axis is per actor
                ax.plot(*zip(*points), ".-", alpha=0.6, label=actor_id)
        points = [(r["step"], r[key]) for r in evals if key in r]
        if points:
            ax.plot(*zip(*points), "o-", label="evaluation")
        ax.axhline(0.0, color="black", lw=0.5)
        ax.set_ylabel(f"{key} (episode mean)")
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("env steps")
    fig.suptitle(logdir.name)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def make_report(logdir: str | Path, episodes: int = 0, video: bool = True) -> Report:
    """Plot the curve, evaluate the exported policy for `episodes` episodes (0: the run's
    `train.eval_episodes`, at least 1) in the run's `train.eval_mode` and write report.json."""
    if episodes < 0:
        raise ValueError(f"--episodes must be at least 1 (0: the config's train.eval_episodes), got {episodes}")
    logdir = Path(logdir)
    config = run_config(logdir)
    episodes = episodes or max(1, config.train.eval_episodes)
    curve = plot_learning_curve(logdir, logdir / CURVE_NAME)
    if curve is None:
        log.warning("no episodes in %s yet: no learning curve", logdir / "metrics.jsonl")
    update = exported_policy(logdir)
    policy = exported_acting(update.onnx, config, seed=config.seed)  # an acting graph, or PlaNet's planner
    result = _evaluate_from_the_start(config, lambda env: policy, episodes, record_video=video, render=True,
                                      mode=config.train.eval_mode)
    baseline = _evaluate_from_the_start(config, lambda env: RandomActing(env.action_space, seed=config.seed),
                                        episodes)
    video_path = None
    frames = result.frames
    if video:
        if frames:
            fps = int(round(config.robot.control_hz)) if config.env.backend == "robot" else 30
            video_path = save_video(frames, logdir / VIDEO_NAME, fps=fps)
        else:
            log.warning("the env rendered no frames (no renderer for backend %s); no video", config.env.backend)
    report = Report(logdir, update.version, result.returns, result.lengths, result.mean_diagnostics(), curve,
                    video_path, baseline, training_summary(logdir), config.train.eval_mode)
    (logdir / REPORT_NAME).write_text(json.dumps(report.to_dict(), indent=1))
    return report


def _evaluate_from_the_start(config: Config, policy_for: Callable[[gym.Env], ActingPolicy], episodes: int,
                             **kwargs: Any) -> EvalResult:
    """`evaluate` on an env of its own, so every policy starts alike: a robot env has no resets, and a
    second policy on the same env would start from wherever the first left the robot."""
    seed = config.seed + 30_000
    env = make_env(config.env, seed=seed, robot=config.robot)
    try:
        return evaluate(policy_for(env), env, episodes, seed=seed, **kwargs)
    finally:
        env.close()


def format_report(report: Report) -> str:
    lines = [f"report of {report.logdir} (policy version {report.policy_version})",
             f"  evaluation ({report.mode} mode) return: {np.mean(report.returns):.1f} over {len(report.returns)} "
             f"episode(s) of {np.mean(report.lengths):.0f} steps on average"]
    random = report.random.mean_diagnostics() if report.random is not None else {}
    if report.random is not None:
        lines.append(f"  random actions, same episodes: return {report.random.mean_return:.1f}")
    lines += [f"  {k}: {v:.3f} (episode mean)" + (f"; random actions {random[k]:.3f}" if k in random else "")
              for k, v in report.diagnostics.items()]
    labels = {"random": "random actions (prefill)", "last": "last", "best": "best run of"}
    for group, row in (report.training or {}).items():
        values = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k not in ("episodes", "return"))
        lines.append(f"  training, {labels[group]} {row['episodes']:.0f} episode(s): return {row['return']:.1f}"
                     + (f", {values}" if values else "") + " (episode means)")
    for label, path in (("learning curve", report.curve), ("video", report.video)):
        lines.append(f"  {label}: {path if path else 'none'}")
    return "\n".join(lines)
