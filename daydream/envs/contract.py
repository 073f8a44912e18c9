"""The env contract every backend speaks after wrapping, and checks against it.

Observations are a dict: `image` (uint8 HxWx3) and/or float32 1-D vectors, plus the bool
scalars `is_first`, `is_last` and `is_terminal` (no `reward` key). `step` returns
gymnasium's 5-tuple with `is_last = terminated or truncated` and `is_terminal =
terminated`. Actions are a `Box(-1, 1, (n,), float32)` or a `Discrete(n)`, the latter
given as an int or as a one-hot/logit vector of length n (argmax is taken).

`spaces_of(env)` checks an env's spaces against the contract and summarises them as an
`EnvSpec` for the code that sizes models and replay buffers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np

FLAG_KEYS = ("is_first", "is_last", "is_terminal")
# Keys the replay and the model add next to observations; an env must not emit them.
RESERVED_KEYS = (*FLAG_KEYS, "reward", "action")


def flag_spaces() -> dict[str, gym.spaces.Box]:
    return {k: gym.spaces.Box(0, 1, (), bool) for k in FLAG_KEYS}


def with_flags(obs: dict[str, np.ndarray], first: bool, last: bool, terminal: bool) -> dict[str, np.ndarray]:
    return {**obs, "is_first": np.bool_(first), "is_last": np.bool_(last), "is_terminal": np.bool_(terminal)}


def random_action(space: gym.Space, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random action under the contract (one-hot for Discrete): the prefill's policy."""
    if isinstance(space, gym.spaces.Discrete):
        return np.eye(int(space.n), dtype=np.float32)[rng.integers(int(space.n))]
    return rng.uniform(-1.0, 1.0, space.shape).astype(np.float32)


def zero_action(space: gym.Space) -> np.ndarray:
    """The action recorded next to an episode's first observation (no action led to it)."""
    return np.zeros(int(space.n) if isinstance(space, gym.spaces.Discrete) else space.shape, np.float32)


def vector_space(size: int) -> gym.spaces.Box:
    # Unbounded on purpose: native bounds are often loose or violated by a float, and the
    # model never reads them.
    return gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)


def image_space(size: tuple[int, int]) -> gym.spaces.Box:
    return gym.spaces.Box(0, 255, (int(size[0]), int(size[1]), 3), np.uint8)


def is_image_space(space: gym.Space) -> bool:
    """An HxWx3 uint8 Box: what the contract calls an image."""
    return (isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
            and space.shape[-1] == 3)


def is_unit_box(space: gym.Space) -> bool:
    """A 1-D float32 Box(-1, 1): the contract's continuous action space."""
    return (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 1
        and space.dtype == np.float32
        and bool(np.all(space.low == -1.0))
        and bool(np.all(space.high == 1.0))
    )


def check_action(space: gym.Space, action: Any) -> np.ndarray | int:
    """Validate an action under the contract; returns a float32 vector or a discrete index.

    Raises ValueError for a wrong shape, NaN/inf, a non-numeric value, or a discrete index
    out of range.
    """
    try:
        arr = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"action {action!r} is not numeric: {exc}") from exc
    if isinstance(space, gym.spaces.Discrete):
        n = int(space.n)
        if arr.shape == (n,):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"discrete action vector {arr} contains NaN or inf; the policy produced invalid "
                                 "logits")
            return int(np.argmax(arr))
        if arr.ndim != 0:
            raise ValueError(f"discrete action must be an int or a one-hot vector of length {n}, got shape {arr.shape}")
        if not np.isfinite(arr) or arr != np.round(arr):
            raise ValueError(f"discrete action must be a whole number in 0..{n - 1}, got {action!r} (NaN, inf or a "
                             "fraction)")
        index = int(arr)
        if not 0 <= index < n:
            raise ValueError(f"discrete action {index} is outside 0..{n - 1}")
        return index
    if arr.shape != space.shape:
        raise ValueError(f"action has shape {arr.shape}, the env expects {space.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"action {arr} contains NaN or inf; the policy produced an invalid action")
    return arr.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What a contract env observes and how it acts, without the flag keys."""

    obs_shapes: dict[str, tuple[int, ...]]
    obs_dtypes: dict[str, np.dtype]
    action_size: int  # vector length for Box, number of choices for Discrete
    discrete: bool

    @property
    def image_keys(self) -> list[str]:
        return [k for k, d in self.obs_dtypes.items() if d == np.uint8]

    @property
    def vector_keys(self) -> list[str]:
        return [k for k, d in self.obs_dtypes.items() if d == np.float32]

    def describe(self) -> str:
        obs = ", ".join(f"{k}{list(s)}" for k, s in self.obs_shapes.items())
        act = f"Discrete({self.action_size})" if self.discrete else f"Box(-1, 1, ({self.action_size},))"
        return f"obs {{{obs}}}, action {act}"


def spaces_of(env: gym.Env) -> EnvSpec:
    """Check `env`'s spaces against the contract and summarise them; ValueError lists what is off."""
    problems: list[str] = []
    obs_space = env.observation_space
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, np.dtype] = {}
    if not isinstance(obs_space, gym.spaces.Dict):
        raise ValueError(f"observation space must be a Dict under the env contract, got {obs_space}; wrap the env "
                         "with ContractAdapter")
    for key in FLAG_KEYS:
        space = obs_space.spaces.get(key)
        if not (isinstance(space, gym.spaces.Box) and space.shape == () and space.dtype == bool):
            problems.append(f"'{key}' must be a bool scalar Box, got {space}")
    if "reward" in obs_space.spaces or "action" in obs_space.spaces:
        problems.append("observations must not hold 'reward' or 'action'")
    for key, space in obs_space.spaces.items():
        if key in RESERVED_KEYS:
            continue
        if is_image_space(space):
            pass
        elif not (isinstance(space, gym.spaces.Box) and space.dtype == np.float32 and len(space.shape) == 1):
            problems.append(f"'{key}' must be a uint8 HxWx3 image or a 1-D float32 vector, got {space}")
            continue
        shapes[key], dtypes[key] = tuple(space.shape), np.dtype(space.dtype)
    act = env.action_space
    if isinstance(act, gym.spaces.Discrete):
        if int(act.start) != 0:
            problems.append(f"Discrete actions must start at 0, got start={act.start}")
        size, discrete = int(act.n), True
    elif is_unit_box(act):
        size, discrete = int(act.shape[0]), False
    else:
        problems.append(f"action space must be Box(-1, 1, (n,), float32) or Discrete(n), got {act}")
        size, discrete = 0, False
    if problems:
        raise ValueError("env does not follow the daydream env contract: " + "; ".join(problems))
    return EnvSpec(shapes, dtypes, size, discrete)
