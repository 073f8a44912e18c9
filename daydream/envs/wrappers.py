"""Wrappers over contract envs: action repeat, time limit, and image resizing."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxWx3 uint8 image to `size` (height, width) with PIL's area filter."""
    if image.shape[:2] == tuple(size):
        return image.astype(np.uint8, copy=False)
    from PIL import Image

    resized = Image.fromarray(image.astype(np.uint8)).resize((size[1], size[0]), Image.BOX)
    return np.asarray(resized, dtype=np.uint8)


class ActionRepeat(gym.Wrapper):
    """Repeat each action `repeat` times, summing rewards, stopping at the episode's end."""

    def __init__(self, env: gym.Env, repeat: int) -> None:
        super().__init__(env)
        if repeat < 1:
            raise ValueError(f"env.action_repeat must be >= 1, got {repeat}")
        self.repeat = repeat

    def step(self, action):
        total = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += reward
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


class TimeLimit(gym.Wrapper):
    """Truncate episodes after `limit` agent steps (is_last without is_terminal)."""

    def __init__(self, env: gym.Env, limit: int) -> None:
        super().__init__(env)
        self.limit, self._steps = limit, 0

    def reset(self, **kwargs):
        self._steps = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        if self._steps >= self.limit and not (terminated or truncated):
            truncated = True
            obs = {**obs, "is_last": np.bool_(True)}
        return obs, reward, terminated, truncated, info
