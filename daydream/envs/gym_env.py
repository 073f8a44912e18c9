"""Gymnasium backend: any registered id under the env contract (CarRacing included)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from daydream.envs.contract import check_action, flag_spaces, image_space, vector_space, with_flags
from daydream.envs.wrappers import resize_image


def _is_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3 and space.shape[-1] == 3


class GymEnv(gym.Env):
    """Adapts a Gymnasium env: Box observations become `state` (or `image`), Dict keys are
    kept; Box actions are normalised to [-1, 1]; Discrete actions stay Discrete. With
    `render`, a rendered `image` observation is added for envs that have none."""

    def __init__(self, task: str, size: tuple[int, int] = (64, 64), render: bool = False, **kwargs: Any) -> None:
        try:
            # rgb_array rendering is lazy (only on render()), so videos work without an image obs
            self._env = gym.make(task, render_mode="rgb_array", **kwargs)
        except gym.error.Error as exc:
            raise ValueError(f"unknown or unusable Gymnasium env id '{task}': {exc}") from exc
        self._size, self._render = tuple(size), render
        self.render_mode = "rgb_array"
        inner = self._env.observation_space
        spaces: dict[str, gym.Space] = {}
        if isinstance(inner, gym.spaces.Dict):
            self._keys = list(inner.spaces)
            for key, space in inner.spaces.items():
                spaces[key] = image_space(self._size) if _is_image(space) else vector_space((int(np.prod(space.shape)),))
        elif _is_image(inner):
            self._keys = None
            spaces["image"] = image_space(self._size)
        elif isinstance(inner, gym.spaces.Box):
            self._keys = None
            spaces["state"] = vector_space((int(np.prod(inner.shape)),))
        else:
            raise ValueError(f"Gymnasium env '{task}' has observation space {inner}; use Box or Dict observations")
        if render and "image" not in spaces:
            spaces["image"] = image_space(self._size)
        self.observation_space = gym.spaces.Dict({**spaces, **flag_spaces()})
        act = self._env.action_space
        if isinstance(act, gym.spaces.Discrete):
            self.action_space = gym.spaces.Discrete(int(act.n))
            self._low = self._high = None
        elif isinstance(act, gym.spaces.Box) and np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high)):
            self.action_space = gym.spaces.Box(-1.0, 1.0, act.shape, np.float32)
            self._low, self._high = act.low.astype(np.float32), act.high.astype(np.float32)
        else:
            raise ValueError(f"Gymnasium env '{task}' has action space {act}; use a bounded Box or Discrete")

    def _convert(self, raw) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if self._keys is not None:
            for key in self._keys:
                value = np.asarray(raw[key])
                out[key] = resize_image(value, self._size) if _is_image(self._env.observation_space[key]) else value.astype(np.float32).reshape(-1)
        elif "image" in self.observation_space.spaces and _is_image(self._env.observation_space):
            out["image"] = resize_image(np.asarray(raw), self._size)
        else:
            out["state"] = np.asarray(raw, np.float32).reshape(-1)
        if self._render and "image" not in out:
            out["image"] = resize_image(np.asarray(self._env.render()), self._size)
        return out

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        raw, info = self._env.reset(seed=seed, options=options)
        return with_flags(self._convert(raw), True, False, False), info

    def step(self, action):
        checked = check_action(self.action_space, action)
        if self._low is not None:
            checked = self._low + (np.clip(checked, -1, 1) + 1) / 2 * (self._high - self._low)
        raw, reward, terminated, truncated, info = self._env.step(checked)
        obs = with_flags(self._convert(raw), False, terminated or truncated, terminated)
        return obs, float(reward), bool(terminated), bool(truncated), info

    def render(self):
        return self._env.render()

    def close(self) -> None:
        self._env.close()
