"""DeepMind Control Suite backend: proprioceptive vectors and/or rendered pixels."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from daydream.envs.contract import check_action, flag_spaces, image_space, vector_space, with_flags
from daydream.envs.rendering import ensure_headless_gl, rendering_error

DEFAULT_CAMERA = {"quadruped": 2}


def split_task(name: str, domains: list[str]) -> tuple[str, str]:
    """'ball_in_cup_catch' -> ('ball_in_cup', 'catch'): the longest known domain prefix wins."""
    for domain in sorted(domains, key=len, reverse=True):
        if name.startswith(domain + "_"):
            return domain, name[len(domain) + 1:]
    raise ValueError(f"'{name}' does not start with a DMC domain; domains: {', '.join(sorted(domains))}")


class DMCEnv(gym.Env):
    """One DMC task under the env contract (actions normalised to [-1, 1])."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, task: str, obs: str = "proprio", size: tuple[int, int] = (64, 64), camera: int = -1, seed: int = 0) -> None:
        ensure_headless_gl()
        from dm_control import suite

        domains = sorted({d for d, _ in suite.ALL_TASKS})
        domain, task_name = split_task(task, domains)
        if (domain, task_name) not in suite.ALL_TASKS:
            valid = ", ".join(f"{d}_{t}" for d, t in suite.ALL_TASKS)
            raise ValueError(f"unknown DMC task '{task}'; valid tasks: {valid}")
        self._env = suite.load(domain, task_name, task_kwargs={"random": seed})
        self._mode, self._size = obs, tuple(size)
        self._camera = DEFAULT_CAMERA.get(domain, 0) if camera < 0 else camera
        spec = self._env.action_spec()
        self._low, self._high = spec.minimum.astype(np.float32), spec.maximum.astype(np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, spec.shape, np.float32)
        spaces: dict[str, gym.Space] = {}
        if obs in ("proprio", "both"):
            for key, value in self._env.observation_spec().items():
                spaces[key] = vector_space((int(np.prod(value.shape)),))
        if obs in ("pixels", "both"):
            spaces["image"] = image_space(self._size)
        if not spaces:
            raise ValueError(f"env.obs must be proprio, pixels or both, got '{obs}'")
        self.observation_space = gym.spaces.Dict({**spaces, **flag_spaces()})
        self.render_mode = "rgb_array"

    def _obs(self, time_step) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if self._mode in ("proprio", "both"):
            for key, value in time_step.observation.items():
                out[key] = np.asarray(value, np.float32).reshape(-1)
        if self._mode in ("pixels", "both"):
            out["image"] = self.render()
        return out

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)
        time_step = self._env.reset()
        return with_flags(self._obs(time_step), True, False, False), {}

    def step(self, action):
        action = check_action(self.action_space, action)
        native = self._low + (np.clip(action, -1, 1) + 1) / 2 * (self._high - self._low)
        time_step = self._env.step(native)
        reward = float(time_step.reward or 0.0)
        last = time_step.last()
        terminated = bool(last and time_step.discount == 0)
        truncated = bool(last and not terminated)
        return with_flags(self._obs(time_step), False, last, terminated), reward, terminated, truncated, {}

    def render(self) -> np.ndarray:
        try:
            return self._env.physics.render(*self._size, camera_id=self._camera)
        except Exception as exc:  # GL context creation fails without EGL/OSMesa
            raise rendering_error(exc) from exc

    def close(self) -> None:
        self._env.close()
