"""Evaluation episodes: run the agent's policy (mode, no exploration) and report returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from daydream.agent import Agent


@dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]
    frames: list[np.ndarray] = field(default_factory=list)

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else float("nan")


def batch_obs(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add the leading batch dimension of one to every observation array."""
    return {k: np.asarray(v)[None] for k, v in obs.items()}


def frame_of(env: gym.Env, obs: dict[str, np.ndarray]) -> np.ndarray | None:
    if "image" in obs:
        return np.asarray(obs["image"])
    try:
        frame = env.render()
    except Exception:  # backends without rendering give no video, not an error
        return None
    return None if frame is None else np.asarray(frame)


def evaluate(agent: Agent, env: gym.Env, episodes: int, record_video: bool = False, seed: int | None = None) -> EvalResult:
    result = EvalResult([], [])
    for episode in range(episodes):
        obs, _ = env.reset(seed=None if seed is None else seed + episode)
        state, total, length, done = None, 0.0, 0, False
        while not done:
            if record_video and episode == 0:
                frame = frame_of(env, obs)
                if frame is not None:
                    result.frames.append(frame)
            action, state = agent.policy(batch_obs(obs), state, mode="eval")
            obs, reward, terminated, truncated, _ = env.step(action[0])
            total += float(reward)
            length += 1
            done = terminated or truncated
        result.returns.append(total)
        result.lengths.append(length)
    return result
