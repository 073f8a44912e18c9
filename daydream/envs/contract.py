"""The env contract every backend speaks, and the checks shared by the backends.

Observations are a dict: `image` (uint8 HxWx3) and/or float32 vectors, plus the bool
flags `is_first`, `is_last` and `is_terminal`. `step` returns gymnasium's 5-tuple with
`is_last = terminated or truncated` and `is_terminal = terminated`. Actions are a
`Box(-1, 1, (n,))` or a `Discrete(n)` (given as an int or a one-hot vector).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

FLAG_KEYS = ("is_first", "is_last", "is_terminal")


def flag_spaces() -> dict[str, gym.spaces.Box]:
    return {k: gym.spaces.Box(0, 1, (), bool) for k in FLAG_KEYS}


def with_flags(obs: dict[str, np.ndarray], first: bool, last: bool, terminal: bool) -> dict[str, np.ndarray]:
    return {**obs, "is_first": np.bool_(first), "is_last": np.bool_(last), "is_terminal": np.bool_(terminal)}


def vector_space(shape: tuple[int, ...]) -> gym.spaces.Box:
    return gym.spaces.Box(-np.inf, np.inf, shape, np.float32)


def image_space(size: tuple[int, int]) -> gym.spaces.Box:
    return gym.spaces.Box(0, 255, (*size, 3), np.uint8)


def check_action(space: gym.Space, action) -> np.ndarray | int:
    """Validate an action under the contract; returns a float32 vector or a discrete index."""
    if isinstance(space, gym.spaces.Discrete):
        arr = np.asarray(action)
        if arr.ndim == 0:
            index = int(arr)
        elif arr.shape == (space.n,):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"action {arr} contains NaN or inf")
            index = int(np.argmax(arr))
        else:
            raise ValueError(f"discrete action must be an int or a one-hot vector of length {space.n}, got shape {arr.shape}")
        if not 0 <= index < space.n:
            raise ValueError(f"discrete action {index} is outside 0..{space.n - 1}")
        return index
    arr = np.asarray(action, dtype=np.float32)
    if arr.shape != space.shape:
        raise ValueError(f"action has shape {arr.shape}, the env expects {space.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"action {arr} contains NaN or inf")
    return arr
