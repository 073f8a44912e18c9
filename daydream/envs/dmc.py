"""DeepMind Control Suite backend: one `<domain>_<task>` as a native gymnasium env.

`DMCSuiteEnv` exposes the task's named observations (each flattened to float32), the
native action box, `terminated`/`truncated` from dm_env's discount, and `render()` at a
fixed size and camera. `make_env` adds action normalisation, repeat, time limit and the
contract adapter (which renders the `image` observation for `obs: pixels|both`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from daydream.envs.rendering import import_dm_control_suite, rendering_error

# Camera 0 of the quadruped is a far-off global view (10 m away) where the body is a few
# pixels at 64x64; camera 2 ('y') tracks it from 4 m, as in the Dreamer papers.
DEFAULT_CAMERA = {"quadruped": 2}


def dmc_task_names() -> list[str]:
    """Every `<domain>_<task>` the installed suite knows."""
    suite = import_dm_control_suite()
    return [f"{d}_{t}" for d, t in suite.ALL_TASKS]


def split_task(name: str, tasks: list[tuple[str, str]]) -> tuple[str, str]:
    """'ball_in_cup_catch' -> ('ball_in_cup', 'catch'), matching against the suite's (domain, task) pairs.

    Domains may contain underscores (ball_in_cup, point_mass, humanoid_CMU), so the name is
    matched against the known pairs rather than split on a fixed underscore.
    """
    for domain, task in tasks:
        if name == f"{domain}_{task}":
            return domain, task
    valid = ", ".join(f"{d}_{t}" for d, t in tasks)
    raise ValueError(f"unknown DMC task '{name}'; env.task must be one of: {valid}")


class DMCSuiteEnv(gym.Env):
    """A DMC task with native observations (dict of float32 vectors) and native actions.

    `time_limit=False` lifts the suite's own episode limit (1000 control steps) so an outer
    TimeLimit decides; `random` seeds the task's initial-state sampling.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        task: str,
        size: tuple[int, int] = (64, 64),
        camera: int = -1,
        seed: int = 0,
        time_limit: bool = True,
    ) -> None:
        suite = import_dm_control_suite()
        domain, task_name = split_task(task, list(suite.ALL_TASKS))
        task_kwargs: dict[str, Any] = {"random": seed}
        if not time_limit:
            task_kwargs["time_limit"] = float("inf")
        self._env = suite.load(domain, task_name, task_kwargs=task_kwargs)
        self.task = task
        self.render_mode = "rgb_array"
        self._size = (int(size[0]), int(size[1]))
        self._camera = DEFAULT_CAMERA.get(domain, 0) if camera < 0 else camera
        ncam = int(self._env.physics.model.ncam)
        if self._camera >= ncam:
            raise ValueError(f"env.camera={camera} but DMC domain '{domain}' has cameras 0..{ncam - 1}; use -1 for "
                             "the default")
        spec = self._env.action_spec()
        self.action_space = gym.spaces.Box(spec.minimum.astype(np.float32), spec.maximum.astype(np.float32), spec.shape,
                                           np.float32)
        self.observation_space = gym.spaces.Dict({
            key: gym.spaces.Box(-np.inf, np.inf, (int(np.prod(value.shape)),), np.float32)
            for key, value in self._env.observation_spec().items()
        })

    @staticmethod
    def _vectors(time_step: Any) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, np.float32).reshape(-1) for k, v in time_step.observation.items()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            # The task samples initial states from this RandomState only.
            self._env.task.random.seed(seed)
        return self._vectors(self._env.reset()), {}

    def step(self, action: np.ndarray):
        time_step = self._env.step(action)
        last = time_step.last()
        # dm_env ends episodes with discount 0 for a true termination, 1 for a time limit.
        terminated = bool(last and time_step.discount == 0)
        truncated = bool(last and not terminated)
        return self._vectors(time_step), float(time_step.reward or 0.0), terminated, truncated, {}

    def render(self) -> np.ndarray:
        try:
            return self._env.physics.render(*self._size, camera_id=self._camera)
        except Exception as exc:  # mujoco raises FatalError/RuntimeError when no GL context can be made
            raise rendering_error(exc) from exc

    def close(self) -> None:
        self._env.close()
