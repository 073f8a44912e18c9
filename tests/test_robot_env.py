"""The robot env on the simulated A1: the env contract, the staged walking reward, and faults
(a driver with wrong shapes, stale sensors, bad actions) putting the actuators in safe mode."""

from __future__ import annotations

import dataclasses
from contextlib import closing

import numpy as np
import pytest

from daydream.config import load_config
from daydream.drivers import DriverError
from daydream.envs import make_env
from daydream.envs.contract import spaces_of


def a1_env(*overrides: str):
    c = load_config(None, ["env.backend=robot", "env.task=a1_walk", "env.time_limit=20", *overrides])
    return make_env(c.env, seed=0, robot=c.robot)


def inner(env):
    while not hasattr(env, "driver"):
        env = env.env
    return env


def test_a1_env_speaks_the_contract_and_ends_on_the_time_limit():
    with closing(a1_env()) as env:
        _speaks_the_contract_and_ends_on_the_time_limit(env)


def _speaks_the_contract_and_ends_on_the_time_limit(env):
    spaces_of(env)
    obs, _ = env.reset()
    assert obs["is_first"] and obs["joint_position"].shape == (12,) and obs["last_action"].shape == (12,)
    steps = 0
    while not obs["is_last"]:
        obs, reward, terminated, truncated, _ = env.step(np.zeros(12, np.float32))
        steps += 1
    assert steps == 20 and truncated and not terminated


def test_walking_reward_pays_standing_and_not_lying_on_the_back():
    rewards = {}
    for name, overrides in (("standing", ()), ("lying", ("robot.driver_args={start: lying_on_back}",))):
        with closing(a1_env(*overrides)) as env:
            env.reset()
            _, rewards[name], _, _, info = env.step(np.zeros(12, np.float32))
            rewards[name + "_terms"], rewards[name + "_stage"] = info["reward_terms"], info["diagnostics"]["stage"]
    assert rewards["standing_terms"]["knee"] > 0.7 and rewards["standing"] > 8  # stages reached, velocity term paid
    assert rewards["lying_terms"]["upright"] < 0.3 and rewards["lying"] < 0.5
    assert (rewards["standing_stage"], rewards["lying_stage"]) == (4.0, 0.0)  # every gate passed; none


@pytest.mark.parametrize("each_episode", [False, True])
def test_a_simulated_robot_resets_at_every_episode_only_when_asked(each_episode):
    """By default an episode goes on from where the last one ended (hardware has no resets);
    `robot.reset_each_episode` puts the sim back in its start pose at every `reset()`."""
    from daydream.envs.robot_tasks import up_z

    overrides = ["robot.driver_args={start: lying_on_back}", "robot.action_scale=1.8", "robot.safety.max_delta=1.0",
                 f"robot.reset_each_episode={str(each_episode).lower()}"]
    with closing(a1_env(*overrides)) as env:
        env.reset(seed=0)
        robot = inner(env)
        start = robot.driver.read().values["joint_position"].copy()
        obs = None
        for t in range(20):  # swing the legs far from the start pose
            obs, *_ = env.step(np.full(12, 1.0 if t % 2 else -1.0, np.float32))
        moved = robot.driver.read().values
        assert np.abs(moved["joint_position"] - start).max() > 0.3
        env.reset()
        again = robot.driver.read().values
        if each_episode:
            np.testing.assert_allclose(again["joint_position"], start, atol=1e-6)
            assert up_z(again["imu_orientation"]) < -0.99
        else:
            np.testing.assert_allclose(again["joint_position"], moved["joint_position"])


def test_faults_put_the_robot_in_safe_mode():
    with closing(a1_env()) as env:
        _faults_put_the_robot_in_safe_mode(env)


def _faults_put_the_robot_in_safe_mode(env):
    env.reset()
    robot = inner(env)
    with pytest.raises(ValueError, match="finite"):
        robot.step(np.full(12, np.nan, np.float32))
    assert robot.driver.health().mode in ("damping", "hold")
    robot.driver.resume()

    real_read = robot.driver.read
    robot.driver.read = lambda: dataclasses.replace(real_read(), stamp=real_read().stamp - 1.0)
    with pytest.raises(DriverError, match="old"):
        robot.step(np.zeros(12, np.float32))
    assert robot.driver.health().mode == "damping"
    robot.driver.resume()

    def wrong_shapes():
        sample = real_read()
        return dataclasses.replace(sample, values={**sample.values, "joint_position": np.zeros(7, np.float32)})

    robot.driver.read = wrong_shapes
    with pytest.raises(DriverError, match="joint_position.*shape"):
        robot.step(np.zeros(12, np.float32))
    assert robot.driver.health().mode == "damping"


def test_bad_robot_config_is_reported():
    with pytest.raises(ValueError, match="unknown driver"):
        a1_env("robot.driver=no_such_driver")
    with pytest.raises(DriverError, match="nowhere.xml"):
        a1_env("robot.driver_args={model: nowhere.xml}")
    with pytest.raises(ValueError, match="unknown robot task"):
        a1_env("env.task=a1_fly")
