"""The env contract across backends, the wrappers, seeding, and errors on bad input."""

import ctypes.util
import dataclasses
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from daydream.config import load_config
from daydream.envs import (
    ActionRepeat,
    ContractAdapter,
    NormalizeActions,
    ResizeImage,
    TimeLimit,
    make_env,
    spaces_of,
)
from daydream.envs.rendering import configure_headless_gl

FLAGS = {"is_first", "is_last", "is_terminal"}


def env_config(**changes):
    return dataclasses.replace(load_config(None).env, **changes)


def find_wrapper(env, cls):
    while not isinstance(env, cls):
        env = env.env  # AttributeError at the bottom: the wrapper is missing
    return env


def check_obs(env, obs):
    assert set(obs) == set(env.observation_space.spaces)
    for key, space in env.observation_space.spaces.items():
        value = np.asarray(obs[key])
        assert value.shape == space.shape, key
        assert value.dtype == space.dtype, key


def check_contract(env, steps=5, action=None):
    """Reset and step `env`, asserting the contract at each step; returns the last obs."""
    spec = spaces_of(env)  # raises if the spaces are off-contract
    assert "reward" not in env.observation_space.spaces
    obs, info = env.reset(seed=0)
    assert isinstance(info, dict)
    check_obs(env, obs)
    assert obs["is_first"] and not obs["is_last"] and not obs["is_terminal"]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample() if action is None else action)
        check_obs(env, obs)
        assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
        assert not obs["is_first"]
        assert bool(obs["is_last"]) == (terminated or truncated)
        assert bool(obs["is_terminal"]) == terminated
        if terminated or truncated:
            break
    for key in spec.vector_keys:
        assert obs[key].ndim == 1 and np.all(np.isfinite(obs[key])), key
    return obs


def run_episode(env, action, limit=10_000):
    """Steps until the episode ends; returns (agent steps, last obs, terminated, truncated)."""
    env.reset()
    for t in range(1, limit + 1):
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            return t, obs, terminated, truncated
    raise AssertionError(f"episode did not end within {limit} steps")


# --- DMC -------------------------------------------------------------------------------


def test_dmc_proprio_walker():
    env = make_env(env_config(backend="dmc", task="walker_walk", obs="proprio"))
    assert set(env.observation_space.spaces) == {"orientations", "height", "velocity"} | FLAGS
    assert env.observation_space["height"].shape == (1,)  # a scalar observation, flattened
    assert env.observation_space["orientations"].dtype == np.float32
    assert env.action_space == gym.spaces.Box(-1, 1, (6,), np.float32)
    check_contract(env)
    frame = env.render()  # videos work without pixel observations
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    env.close()


def test_dmc_pixels_cartpole():
    env = make_env(env_config(backend="dmc", task="cartpole_swingup", obs="pixels", size=(64, 64)))
    assert set(env.observation_space.spaces) == {"image"} | FLAGS
    first, _ = env.reset(seed=0)
    obs = check_contract(env, steps=2, action=np.ones(1, np.float32))
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["image"].std() > 0  # a real rendering, not a blank frame
    env.close()


def test_dmc_both_with_an_underscore_domain_and_non_square_size():
    env = make_env(env_config(backend="dmc", task="ball_in_cup_catch", obs="both", size=(32, 48)))
    assert set(env.observation_space.spaces) == {"position", "velocity", "image"} | FLAGS
    obs = check_contract(env, steps=1)
    assert obs["image"].shape == (32, 48, 3)
    env.close()


def test_dmc_default_time_limit_is_1000_env_steps():
    env = make_env(env_config(backend="dmc", task="cartpole_balance", obs="proprio", action_repeat=2))
    length, obs, terminated, truncated = run_episode(env, np.zeros(1, np.float32))
    assert length == 500 and truncated and not terminated
    assert obs["is_last"] and not obs["is_terminal"]


def test_dmc_time_limit_replaces_the_suite_limit():
    env = make_env(env_config(backend="dmc", task="cartpole_balance", obs="proprio", action_repeat=2, time_limit=3))
    env.reset(seed=0)
    flags = [env.step(np.zeros(1, np.float32))[0] for _ in range(3)]
    assert [bool(f["is_last"]) for f in flags] == [False, False, True]
    assert not any(bool(f["is_terminal"]) for f in flags)
    longer = make_env(env_config(backend="dmc", task="cartpole_balance", obs="proprio", action_repeat=2,
                                 time_limit=600))
    assert run_episode(longer, np.zeros(1, np.float32))[0] == 600  # past the suite's own 500


# --- Gymnasium -------------------------------------------------------------------------


def test_gym_pendulum_contract_and_action_normalisation():
    env = make_env(env_config(backend="gym", task="Pendulum-v1", action_repeat=1))
    assert set(env.observation_space.spaces) == {"state"} | FLAGS
    assert env.observation_space["state"].shape == (3,)
    assert env.action_space == gym.spaces.Box(-1, 1, (1,), np.float32)
    check_contract(env)
    env.reset(seed=0)
    env.step(np.array([1.0], np.float32))
    assert env.unwrapped.last_u == pytest.approx(2.0)  # +1 maps to the native bound of 2 N*m
    env.step(np.array([-1.0], np.float32))
    assert env.unwrapped.last_u == pytest.approx(-2.0)
    env.step(np.array([0.25], np.float32))
    assert env.unwrapped.last_u == pytest.approx(0.5)


def test_gym_time_limits_count_agent_steps():
    zero = np.zeros(1, np.float32)
    registered = make_env(env_config(backend="gym", task="Pendulum-v1", action_repeat=2, time_limit=0))
    length, obs, terminated, truncated = run_episode(registered, zero)
    assert (length, terminated, truncated) == (100, False, True)  # the registered 200 env steps
    assert obs["is_last"] and not obs["is_terminal"]
    longer = make_env(env_config(backend="gym", task="Pendulum-v1", action_repeat=1, time_limit=250))
    assert run_episode(longer, zero)[:4:2] == (250, False)  # the registered limit no longer cuts at 200


def test_gym_render_adds_an_image_observation():
    env = make_env(env_config(backend="gym", task="Pendulum-v1", render=True, size=(32, 32)))
    assert set(env.observation_space.spaces) == {"state", "image"} | FLAGS
    obs = check_contract(env, steps=2)
    assert obs["image"].shape == (32, 32, 3) and obs["image"].std() > 0


def test_cartpole_one_hot_actions_and_failure_is_terminal():
    env = make_env(env_config(backend="gym", task="CartPole-v1", action_repeat=1))
    assert env.action_space == gym.spaces.Discrete(2)
    check_contract(env, steps=3, action=np.array([0.0, 1.0], np.float32))
    length, obs, terminated, truncated = run_episode(env, np.array([1.0, 0.0], np.float32))  # always push left
    assert length < 100 and terminated and not truncated
    assert obs["is_terminal"] and obs["is_last"]


def test_cartpole_logits_act_like_their_argmax():
    ints = make_env(env_config(backend="gym", task="CartPole-v1", action_repeat=1), seed=7)
    logits = make_env(env_config(backend="gym", task="CartPole-v1", action_repeat=1), seed=7)
    a, _ = ints.reset()
    b, _ = logits.reset()
    for choice in [0, 1, 1, 0, 1]:
        vector = np.array([0.3, -2.0] if choice == 0 else [-0.5, 4.0], np.float32)
        a = ints.step(choice)[0]
        b = logits.step(vector)[0]
        np.testing.assert_array_equal(a["state"], b["state"])
    assert not np.array_equal(a["state"], ints.reset(seed=8)[0]["state"])  # the comparison can fail


@pytest.mark.parametrize("discrete", [False, True])
def test_carracing(discrete):
    env = make_env(env_config(backend="carracing", discrete=discrete, size=(64, 64), action_repeat=2))
    assert set(env.observation_space.spaces) == {"image"} | FLAGS
    obs = check_contract(env, steps=3)
    assert obs["image"].shape == (64, 64, 3) and obs["image"].std() > 0
    if discrete:
        assert env.action_space == gym.spaces.Discrete(5)
    else:
        assert env.action_space == gym.spaces.Box(-1, 1, (3,), np.float32)
        normalise = find_wrapper(env, NormalizeActions)
        # steering keeps [-1, 1]; gas and brake map [-1, 1] onto their native [0, 1]
        np.testing.assert_allclose(normalise.action(np.array([-1, -1, -1])), [-1, 0, 0])
        np.testing.assert_allclose(normalise.action(np.array([1, 1, 1])), [1, 1, 1])
        np.testing.assert_allclose(normalise.action(np.array([0, 0, 0])), [0, 0.5, 0.5])
    env.close()


# --- Seeding ---------------------------------------------------------------------------


@pytest.mark.parametrize("changes", [dict(backend="dmc", task="walker_walk"), dict(backend="gym", task="Pendulum-v1")])
def test_same_seed_same_first_observation(changes):
    first = lambda seed: make_env(env_config(**changes), seed=seed).reset()[0]  # noqa: E731
    a, b, other = first(3), first(3), first(4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a[k], other[k]) for k in a if k not in FLAGS)
    env = make_env(env_config(**changes), seed=3)
    env.reset()
    again = env.reset(seed=3)[0]  # an explicit seed reproduces it too
    for key in a:
        np.testing.assert_array_equal(a[key], again[key])


# --- Wrappers on toy envs --------------------------------------------------------------


class Counter(gym.Env):
    """Reward 1, 2, 3, ... per step; terminates after `end` steps; records the actions it got."""

    def __init__(self, end=100, action_space=None):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float64)
        self.action_space = action_space or gym.spaces.Box(-1, 1, (1,), np.float32)
        self.end, self.t, self.actions = end, 0, []

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1), {}

    def step(self, action):
        self.t += 1
        self.actions.append(action)
        return np.full(1, self.t, np.float64), float(self.t), self.t >= self.end, False, {}


def test_action_repeat_sums_rewards_and_stops_at_the_end():
    counter = Counter(end=5)
    env = ActionRepeat(counter, 2)
    env.reset()
    assert env.step(np.zeros(1))[1] == 1 + 2
    assert env.step(np.zeros(1))[1] == 3 + 4
    obs, reward, terminated, _, _ = env.step(np.zeros(1))
    assert reward == 5 and terminated and counter.t == 5  # stopped early: step 6 never ran
    adapted = ContractAdapter(ActionRepeat(Counter(end=5), 3))
    adapted.reset()
    assert adapted.step(np.zeros(1, np.float32))[1] == 1 + 2 + 3
    obs, reward, terminated, _, _ = adapted.step(np.zeros(1, np.float32))
    assert reward == 4 + 5 and terminated and obs["is_terminal"] and obs["state"][0] == 5


def test_time_limit_truncates_but_keeps_a_true_termination():
    env = ContractAdapter(TimeLimit(Counter(), 2))
    env.reset()
    assert not env.step(np.zeros(1, np.float32))[0]["is_last"]
    obs, _, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
    assert truncated and not terminated and obs["is_last"] and not obs["is_terminal"]
    ending = ContractAdapter(TimeLimit(Counter(end=2), 2))
    ending.reset()
    ending.step(np.zeros(1, np.float32))
    obs, _, terminated, truncated, _ = ending.step(np.zeros(1, np.float32))
    assert terminated and not truncated and obs["is_terminal"]
    # also usable outside the adapter, on an env that already speaks the contract
    outer = TimeLimit(ContractAdapter(Counter()), 1)
    outer.reset()
    obs, _, terminated, truncated, _ = outer.step(np.zeros(1, np.float32))
    assert truncated and obs["is_last"] and not obs["is_terminal"]


def test_normalize_actions_maps_the_unit_box_onto_native_bounds():
    counter = Counter(action_space=gym.spaces.Box(np.array([-2.0, 0.0]), np.array([2.0, 10.0]), dtype=np.float64))
    env = NormalizeActions(counter)
    assert env.action_space == gym.spaces.Box(-1, 1, (2,), np.float32)
    env.reset()
    for unit in ([-1, -1], [1, 1], [0, 0.5], [3, -7]):  # out-of-range input is clipped
        env.step(np.array(unit, np.float32))
    np.testing.assert_allclose(counter.actions, [[-2, 0], [2, 10], [0, 7.5], [2, 0]])
    with pytest.raises(ValueError, match="unbounded"):
        NormalizeActions(Counter(action_space=gym.spaces.Box(-np.inf, np.inf, (1,))))


class DictEnv(gym.Env):
    """Dict observations: a 24x40 `camera` image, a 2x2 `pose` and a Discrete `mode`."""

    observation_space = gym.spaces.Dict({
        "camera": gym.spaces.Box(0, 255, (24, 40, 3), np.uint8),
        "pose": gym.spaces.Box(-1, 1, (2, 2), np.float64),
        "mode": gym.spaces.Discrete(3),
    })
    action_space = gym.spaces.Discrete(2, start=1)

    def reset(self, seed=None, options=None):
        return {"camera": np.full((24, 40, 3), 200, np.uint8), "pose": np.eye(2), "mode": 2}, {}

    def step(self, action):
        self.last_action = action
        obs, _ = self.reset()
        return obs, 0.0, False, False, {}


def test_dict_observations_keep_their_keys_and_images_are_resized():
    raw = DictEnv()
    env = ResizeImage(ContractAdapter(raw), (16, 16))
    assert set(env.observation_space.spaces) == {"camera", "pose", "mode"} | FLAGS
    obs = check_contract(env, steps=1, action=1)
    assert obs["camera"].shape == (16, 16, 3) and np.all(obs["camera"] == 200)
    np.testing.assert_array_equal(obs["pose"], [1, 0, 0, 1])
    np.testing.assert_array_equal(obs["mode"], [0, 0, 1])  # one-hot
    assert raw.last_action == 2  # contract index 1 is the env's action 2 (Discrete start=1)


# --- Errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(backend="mars"), "unknown env backend 'mars'.*dmc, gym, carracing"),
        (dict(backend="dmc", task="walker_fly"), "unknown DMC task 'walker_fly'.*walker_walk"),
        (dict(backend="dmc", task="mars_walk"), "unknown DMC task 'mars_walk'.*cartpole_swingup"),
        (dict(backend="dmc", task="walker_walk", obs="rgb"), "env.obs must be one of proprio, pixels, both"),
        (dict(backend="dmc", task="cartpole_swingup", camera=9), r"env.camera=9.*cameras 0\.\.1"),
        (dict(backend="gym", task="NoSuchEnv-v0"), "unknown Gymnasium env id 'NoSuchEnv-v0'"),
        (dict(backend="gym", task="CartPol-v1"), "did you mean CartPole-v1"),
        (dict(backend="gym", task="Pendulum-v1", action_repeat=0), "env.action_repeat must be >= 1"),
        (dict(backend="gym", task="Pendulum-v1", time_limit=-1), "env.time_limit must be >= 0"),
        (dict(backend="gym", task="Pendulum-v1", size=(0, 64)), "env.size must be"),
    ],
)
def test_bad_configs_raise_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        make_env(env_config(**changes))


def test_bad_actions_raise_clear_errors():
    env = make_env(env_config(backend="gym", task="Pendulum-v1"))
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(1, np.float32))
    env.reset()
    with pytest.raises(ValueError, match=r"shape \(2,\).*expects \(1,\)"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"shape \(\).*expects \(1,\)"):
        env.step(0.5)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan], np.float32))
    with pytest.raises(ValueError, match="not numeric"):
        env.step(["left"])
    discrete = make_env(env_config(backend="gym", task="CartPole-v1"))
    discrete.reset()
    with pytest.raises(ValueError, match="one-hot vector of length 2"):
        discrete.step(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        discrete.step(np.array([np.nan, 1.0]))
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        discrete.step(2)
    with pytest.raises(ValueError, match="whole number"):
        discrete.step(0.5)


def test_stepping_a_finished_episode_asks_for_reset():
    env = make_env(env_config(backend="gym", task="Pendulum-v1", action_repeat=1, time_limit=1))
    env.reset()
    assert env.step(np.zeros(1, np.float32))[0]["is_last"]
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(1, np.float32))


def test_spaces_of_rejects_off_contract_envs():
    with pytest.raises(ValueError, match="must be a Dict"):
        spaces_of(gym.make("Pendulum-v1"))
    with pytest.raises(ValueError, match="action space must be Box"):
        bad = ContractAdapter(NormalizeActions(Counter()))
        bad.action_space = gym.spaces.Box(-2, 2, (1,), np.float32)
        spaces_of(bad)
    spec = spaces_of(make_env(env_config(backend="gym", task="CartPole-v1")))
    assert (spec.vector_keys, spec.image_keys, spec.action_size, spec.discrete) == (["state"], [], 2, True)


# --- Headless rendering ----------------------------------------------------------------


def test_headless_gl_defaults_to_egl_only_without_a_display():
    bare: dict[str, str] = {}
    assert configure_headless_gl(bare) == "egl" and bare["PYOPENGL_PLATFORM"] == "egl"
    with_display = {"DISPLAY": ":0"}
    assert configure_headless_gl(with_display) is None and "MUJOCO_GL" not in with_display
    chosen = {"MUJOCO_GL": "osmesa"}
    assert configure_headless_gl(chosen) == "osmesa" and chosen["PYOPENGL_PLATFORM"] == "osmesa"


@pytest.mark.skipif(ctypes.util.find_library("OSMesa") is not None, reason="OSMesa is installed, so it cannot fail")
def test_missing_gl_library_names_the_packages_to_install():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "PYOPENGL_PLATFORM")}
    env["MUJOCO_GL"] = "osmesa"
    code = "from daydream.envs.rendering import import_dm_control_suite; import_dm_control_suite()"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "RenderingError" in result.stderr and "libosmesa6" in result.stderr
    assert "libegl1 libegl-mesa0" in result.stderr
