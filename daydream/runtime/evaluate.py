"""Evaluation episodes: run a policy (its mode, no exploration) and report returns and diagnostics.

`daydream eval` (`run_eval`) evaluates a training checkpoint this way. The policy is anything
with `act(obs, mode)` that keeps its own recurrent state (the
torch agent through `AgentActing`, or the exported ONNX graph through `OnnxActing`), so
a run's report can evaluate exactly the file a robot would run. Envs that put a
`diagnostics` mapping in their step info (the A1 task: forward velocity, uprightness, reward stage)
get its per-episode means reported too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from daydream.runtime.acting import ActingPolicy


@dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]
    frames: list[np.ndarray] = field(default_factory=list)
    diagnostics: list[dict[str, float]] = field(default_factory=list)  # per episode: mean of each value

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else float("nan")

    def mean_diagnostics(self) -> dict[str, float]:
        keys = sorted({k for d in self.diagnostics for k in d})
        return {k: float(np.mean([d[k] for d in self.diagnostics if k in d])) for k in keys}


class EpisodeDiagnostics:
    """Running per-episode means of the numbers in `info["diagnostics"]`."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, info: dict[str, Any]) -> None:
        values = info.get("diagnostics") if isinstance(info, dict) else None
        if not values:
            return
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += 1

    def means(self) -> dict[str, float]:
        return {k: v / self.count for k, v in self.sums.items()} if self.count else {}

    def clear(self) -> None:
        self.sums, self.count = {}, 0


def frame_of(env: gym.Env, obs: dict[str, np.ndarray], render: bool = False) -> np.ndarray | None:
    """A video frame: the observed image, or (with `render`, or without one) the env's render()."""
    if "image" in obs and not render:
        return np.asarray(obs["image"])
    try:
        frame = env.render()
    except Exception:  # backends without rendering give no video, not an error
        return None
    return None if frame is None else np.asarray(frame)


def evaluate(policy: ActingPolicy, env: gym.Env, episodes: int, record_video: bool = False,
             seed: int | None = None, render: bool = False,
             mode: Literal["eval", "explore"] = "eval") -> EvalResult:
    """Run `episodes` episodes with `policy.act(obs, mode)`; frames of the first if `record_video`
    (the observed image, or the env's render() with `render`: a robot's tracking camera at video size)."""
    if mode not in ("eval", "explore"):
        raise ValueError(f"evaluation mode must be eval or explore, got {mode!r}")
    result = EvalResult([], [])
    diagnostics = EpisodeDiagnostics()
    for episode in range(episodes):
        obs, _ = env.reset(seed=None if seed is None else seed + episode)
        total, length, done = 0.0, 0, False
        diagnostics.clear()
        while not done:
            if record_video and episode == 0:
                frame = frame_of(env, obs, render)
                if frame is not None:
                    result.frames.append(frame)
            # is_first in the observation resets the policy's recurrent state at each episode start
            obs, reward, terminated, truncated, info = env.step(policy.act(obs, mode=mode))
            diagnostics.add(info)
            total += float(reward)
            length += 1
            done = terminated or truncated
        result.returns.append(total)
        result.lengths.append(length)
        result.diagnostics.append(diagnostics.means())
    return result


def run_eval(checkpoint: Path, episodes: int, video: str | None = None, overrides: Sequence[str] = ()) -> EvalResult:
    """`daydream eval`: load a checkpoint with the config it was trained with and run `episodes` episodes."""
    # torch and the envs only here: robots import this module for evaluate() without them
    from daydream.agent import Agent
    from daydream.config import config_from_dict
    from daydream.envs import make_env
    from daydream.runtime.acting import AgentActing
    from daydream.runtime.checkpoint import load_checkpoint
    from daydream.runtime.video import save_video

    payload = load_checkpoint(checkpoint)
    if "config" not in payload or "agent" not in payload:
        raise ValueError(f"{checkpoint} is not a daydream training checkpoint (no config/agent inside)")
    config = config_from_dict(payload["config"], overrides)
    env = make_env(config.env, seed=config.seed + 20_000, robot=config.robot)
    try:
        agent = Agent(config, env.observation_space, env.action_space)
        agent.load_state_dict(payload["agent"])
        result = evaluate(AgentActing(agent), env, episodes, record_video=video is not None, seed=config.seed + 20_000,
                          mode=config.train.eval_mode)
    finally:
        env.close()
    if video is not None:
        path = save_video(result.frames, video)
        print(f"video written to {path}")
    return result
