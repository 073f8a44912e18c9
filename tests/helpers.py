"""Shared test fixtures: small spaces and synthetic replay batches."""

from __future__ import annotations

import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from daydream.agent.synthetic import synthetic_batch as _synthetic_batch
from daydream.config import load_config


def tiny_config(*overrides: str, logdir: str = "runs/test"):
    return load_config(None, ["size=tiny", "device=cpu", f"logdir={logdir}", *overrides])


def vector_spaces(action_dim: int = 2, discrete: bool = False):
    obs = gym.spaces.Dict({
        "position": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
        "velocity": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
        "is_first": gym.spaces.Box(0, 1, (), bool),
        "is_last": gym.spaces.Box(0, 1, (), bool),
        "is_terminal": gym.spaces.Box(0, 1, (), bool),
    })
    act = gym.spaces.Discrete(action_dim) if discrete else gym.spaces.Box(-1, 1, (action_dim,), np.float32)
    return obs, act


def image_spaces(action_dim: int = 2):
    obs = gym.spaces.Dict({
        "image": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
        "is_first": gym.spaces.Box(0, 1, (), bool),
        "is_last": gym.spaces.Box(0, 1, (), bool),
        "is_terminal": gym.spaces.Box(0, 1, (), bool),
    })
    return obs, gym.spaces.Box(-1, 1, (action_dim,), np.float32)


def synthetic_batch(obs_space, action_dim: int, b: int = 4, t: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """A random batch with an extra episode start and a terminal inside it."""
    batch = _synthetic_batch(obs_space, action_dim, b, t, seed)
    batch["is_first"][0, t // 2] = True
    batch["is_terminal"][b - 1, t - 1] = True
    return batch


def step_obs(batch: dict[str, np.ndarray], t: int = 0) -> dict[str, np.ndarray]:
    return {k: v[:, t] for k, v in batch.items() if k not in ("action", "reward")}


def pump(done: Callable[[], bool], *polls: Callable[[], object], timeout: float = 10.0) -> bool:
    """Call each poll function until `done()` or the timeout; returns whether done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in polls:
            p()
        if done():
            return True
        time.sleep(0.005)
    return done()
