"""The env contract across backends, the wrappers, and bad input."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

from daydream.config import load_config
from daydream.envs import make_env
from daydream.envs.wrappers import ActionRepeat, TimeLimit


def env_config(**changes):
    return dataclasses.replace(load_config(None).env, **changes)


def check_contract(env, steps: int = 5):
    obs, _ = env.reset(seed=0)
    assert set(obs) == set(env.observation_space.spaces)
    assert obs["is_first"] and not obs["is_last"] and not obs["is_terminal"]
    for key, space in env.observation_space.spaces.items():
        assert np.asarray(obs[key]).shape == space.shape, key
        assert np.asarray(obs[key]).dtype == space.dtype, key
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert isinstance(reward, float)
        assert not obs["is_first"]
        assert bool(obs["is_last"]) == (terminated or truncated)
        assert bool(obs["is_terminal"]) == terminated
    return obs


def test_dmc_proprio_walker():
    env = make_env(env_config(backend="dmc", task="walker_walk", obs="proprio"))
    assert set(env.observation_space.spaces) >= {"orientations", "height", "velocity"}
    assert env.observation_space["height"].shape == (1,)
    assert env.action_space == gym.spaces.Box(-1, 1, (6,), np.float32)
    check_contract(env)


def test_dmc_pixels_cartpole():
    env = make_env(env_config(backend="dmc", task="cartpole_swingup", obs="pixels", size=(64, 64)))
    obs = check_contract(env, steps=2)
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["image"].std() > 0  # a real rendering, not a blank frame


def test_dmc_time_limit_truncates_without_terminal():
    env = make_env(env_config(backend="dmc", task="cartpole_balance", obs="proprio", action_repeat=2, time_limit=3))
    env.reset(seed=0)
    flags = [env.step(np.zeros(1, np.float32))[0] for _ in range(3)]
    assert [bool(f["is_last"]) for f in flags] == [False, False, True]
    assert not any(bool(f["is_terminal"]) for f in flags)


def test_dmc_domain_with_underscore_and_unknown_task():
    env = make_env(env_config(backend="dmc", task="ball_in_cup_catch", obs="proprio"))
    check_contract(env, steps=1)
    with pytest.raises(ValueError, match="unknown DMC task 'walker_fly'.*walker_walk"):
        make_env(env_config(backend="dmc", task="walker_fly"))


def test_gym_pendulum_normalises_actions():
    env = make_env(env_config(backend="gym", task="Pendulum-v1", action_repeat=1))
    assert env.observation_space["state"].shape == (3,)
    check_contract(env)
    inner = env.unwrapped._env
    env.reset(seed=0)
    env.step(np.array([1.0], np.float32))
    assert inner.unwrapped.last_u == pytest.approx(2.0)  # +1 maps to the native bound of 2 N*m
    env.step(np.array([-1.0], np.float32))
    assert inner.unwrapped.last_u == pytest.approx(-2.0)


def test_gym_discrete_cartpole_terminates():
    env = make_env(env_config(backend="gym", task="CartPole-v1", action_repeat=1))
    assert isinstance(env.action_space, gym.spaces.Discrete)
    env.reset(seed=0)
    for _ in range(500):
        obs, _, terminated, truncated, _ = env.step(np.array([1.0, 0.0], np.float32))  # always push left
        if terminated or truncated:
            break
    assert terminated and obs["is_terminal"] and obs["is_last"]


@pytest.mark.parametrize("discrete", [False, True])
def test_carracing(discrete):
    env = make_env(env_config(backend="carracing", discrete=discrete, size=(64, 64), action_repeat=2))
    obs = check_contract(env, steps=3)
    assert obs["image"].shape == (64, 64, 3)
    if discrete:
        assert env.action_space == gym.spaces.Discrete(5)
    else:
        assert env.action_space.shape == (3,)


def test_seeding_is_reproducible():
    a = make_env(env_config(backend="dmc", task="walker_walk"), seed=3)
    b = make_env(env_config(backend="dmc", task="walker_walk"), seed=3)
    oa, _ = a.reset(seed=5)
    ob, _ = b.reset(seed=5)
    for key in oa:
        assert np.array_equal(oa[key], ob[key])


class Counter(gym.Env):
    """Reward 1, 2, 3, ... per step; terminates after `end` steps."""

    def __init__(self, end=100):
        self.observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)})
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.end, self.t = end, 0

    def reset(self, seed=None, options=None):
        self.t = 0
        return {"x": np.zeros(1, np.float32), "is_first": True, "is_last": False, "is_terminal": False}, {}

    def step(self, action):
        self.t += 1
        done = self.t >= self.end
        return {"x": np.full(1, self.t, np.float32), "is_first": False, "is_last": done, "is_terminal": done}, float(self.t), done, False, {}


def test_action_repeat_sums_rewards_and_stops_at_the_end():
    env = ActionRepeat(Counter(end=5), 2)
    env.reset()
    assert env.step(np.zeros(1))[1] == 1 + 2
    assert env.step(np.zeros(1))[1] == 3 + 4
    obs, reward, terminated, _, _ = env.step(np.zeros(1))
    assert reward == 5 and terminated  # stopped early: step 6 never ran
    limited = TimeLimit(Counter(), 2)
    limited.reset()
    limited.step(np.zeros(1))
    obs, _, terminated, truncated, _ = limited.step(np.zeros(1))
    assert truncated and not terminated and obs["is_last"] and not obs["is_terminal"]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown env backend 'mars'"):
        make_env(env_config(backend="mars"))
    with pytest.raises(ValueError, match="NoSuchEnv-v0"):
        make_env(env_config(backend="gym", task="NoSuchEnv-v0"))
    env = make_env(env_config(backend="gym", task="Pendulum-v1"))
    with pytest.raises(ValueError, match=r"shape \(2,\).*expects \(1,\)"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan], np.float32))
    discrete = make_env(env_config(backend="gym", task="CartPole-v1"))
    with pytest.raises(ValueError, match="one-hot vector of length 2"):
        discrete.step(np.zeros(3))
