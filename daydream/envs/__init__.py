"""Env backends behind one contract (see `daydream.envs.contract`): `dmc`, `gym`, `carracing`.

`make_env(config.env, seed)` builds a backend and wraps it with action repeat and an
optional time limit.
"""

from __future__ import annotations

import gymnasium as gym

from daydream.config import EnvConfig
from daydream.envs.wrappers import ActionRepeat, TimeLimit

BACKENDS = ("dmc", "gym", "carracing")


def make_env(config: EnvConfig, seed: int = 0) -> gym.Env:
    env: gym.Env
    if config.backend == "dmc":
        from daydream.envs.dmc import DMCEnv

        env = DMCEnv(config.task, config.obs, config.size, config.camera, seed)
    elif config.backend == "gym":
        from daydream.envs.gym_env import GymEnv

        env = GymEnv(config.task, config.size, render=config.render)
    elif config.backend == "carracing":
        from daydream.envs.gym_env import GymEnv

        env = GymEnv("CarRacing-v3", config.size, render=False, continuous=not config.discrete)
    else:
        raise ValueError(f"unknown env backend '{config.backend}'; choose one of: {', '.join(BACKENDS)}")
    if config.action_repeat != 1:
        env = ActionRepeat(env, config.action_repeat)
    if config.time_limit:
        env = TimeLimit(env, config.time_limit)
    env.reset(seed=seed)
    return env


__all__ = ["make_env", "BACKENDS"]
