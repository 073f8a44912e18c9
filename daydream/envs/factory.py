"""`make_env`: build the configured backend and stack the wrappers that make it speak the contract."""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym

from daydream.config import EnvConfig, RobotConfig
from daydream.envs.adapter import ContractAdapter
from daydream.envs.contract import spaces_of
from daydream.envs.wrappers import ActionRepeat, NormalizeActions, ResizeImage, TimeLimit

log = logging.getLogger(__name__)

BACKENDS = ("dmc", "gym", "carracing", "robot")
DMC_OBS = ("proprio", "pixels", "both")


def _check(config: EnvConfig) -> None:
    if config.backend not in BACKENDS:
        raise ValueError(f"unknown env backend '{config.backend}'; env.backend must be one of: {', '.join(BACKENDS)}")
    if config.action_repeat < 1:
        raise ValueError(f"env.action_repeat must be >= 1, got {config.action_repeat}")
    if config.time_limit < 0:
        raise ValueError(f"env.time_limit must be >= 0 agent steps (0 = the backend's own limit), got "
                         f"{config.time_limit}")
    if len(config.size) != 2 or min(config.size) < 1:
        raise ValueError(f"env.size must be [height, width] with positive entries, got {list(config.size)}")
    if config.backend == "dmc" and config.obs not in DMC_OBS:
        raise ValueError(f"env.obs must be one of {', '.join(DMC_OBS)} for the dmc backend, got '{config.obs}'")


def make_env(config: EnvConfig, seed: int = 0, robot: RobotConfig | None = None, driver: Any = None) -> gym.Env:
    """Build `config.backend` under the env contract, seeded so the first reset is reproducible.

    Stack (inside out): backend, NormalizeActions (Box actions), ActionRepeat, TimeLimit
    (agent steps; replaces the backend's own limit when > 0), ContractAdapter, ResizeImage.
    The `robot` backend needs the `robot` section (driver, safety layer, control rate);
    `driver` replaces the configured driver (see `make_robot_env`).
    """
    _check(config)
    task = config.task
    own_limit = config.time_limit == 0
    keep_vectors, render_size = True, None
    env: gym.Env
    if config.backend == "dmc":
        from daydream.envs.dmc import DMCSuiteEnv

        env = DMCSuiteEnv(config.task, config.size, config.camera, seed, time_limit=own_limit)
        keep_vectors = config.obs in ("proprio", "both")
        render_size = config.size if config.obs in ("pixels", "both") else None
    elif config.backend == "robot":
        if robot is None:
            raise ValueError("env.backend: robot needs the config's robot section; call make_env(config.env, seed, "
                             "robot=config.robot)")
        env = make_robot_env(config.task, robot, seed, driver)
    elif config.backend == "gym":
        from daydream.envs.gym_env import make_gym

        env = make_gym(config.task, render=config.render, own_time_limit=own_limit)
        render_size = config.size if config.render else None
    else:
        from daydream.envs.gym_env import CARRACING_ID, make_carracing

        task = CARRACING_ID  # env.task is ignored for this backend
        env = make_carracing(config.discrete, own_time_limit=own_limit)
    if isinstance(env.action_space, gym.spaces.Box):
        env = NormalizeActions(env)
    if config.action_repeat > 1:
        env = ActionRepeat(env, config.action_repeat)
    if config.time_limit > 0:
        env = TimeLimit(env, config.time_limit)
    env = ContractAdapter(env, keep_vectors=keep_vectors, render_size=render_size, seed=seed)
    env = ResizeImage(env, config.size)
    log.info("env %s:%s (seed %d, repeat %d): %s", config.backend, task, seed, config.action_repeat,
             spaces_of(env).describe())
    return env


def make_robot_env(task: str, robot: RobotConfig, seed: int = 0, driver: Any = None) -> gym.Env:
    """The robot env for `task`: the configured driver (not opened until the first reset) behind the safety layer.

    `driver` replaces the configured one as it is, without another safety layer: the robot
    actor passes its view of the robot's topics, whose safety layer runs in the robot_driver node.
    """
    from daydream.envs.robot import RobotEnv
    from daydream.envs.robot_tasks import make_task

    if driver is None:
        from daydream.drivers.registry import make_safe_driver

        driver = make_safe_driver(robot, seed)
    return RobotEnv(driver, make_task(task), robot.control_hz, action_scale=robot.action_scale, pacing=robot.pacing,
                    stale_timeout_s=robot.stale_timeout_s, reset_on_fall=robot.reset_on_fall, camera=robot.camera,
                    safe_mode=robot.safety.safe_mode, reset_each_episode=robot.reset_each_episode)
