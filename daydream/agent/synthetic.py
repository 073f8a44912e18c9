"""Synthetic replay batches of the right shapes, for benchmarks and tests of the learner."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


def synthetic_batch(obs_space: gym.spaces.Dict, action_dim: int, b: int, t: int,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Random [b, t] arrays for every observation key plus action, reward and flags.

    Each sequence starts an episode (`is_first` at t=0); nothing else is flagged.
    """
    rng = np.random.default_rng(seed)
    batch = {}
    for key, space in obs_space.spaces.items():
        if space.dtype == np.uint8:
            batch[key] = rng.integers(0, 256, (b, t, *space.shape), dtype=np.uint8)
        elif space.dtype == bool:
            batch[key] = np.zeros((b, t), bool)
        else:
            batch[key] = rng.normal(size=(b, t, *space.shape)).astype(np.float32)
    for flag in ("is_first", "is_terminal"):
        batch.setdefault(flag, np.zeros((b, t), bool))
    batch["is_first"][:, 0] = True
    batch["action"] = rng.uniform(-1, 1, (b, t, action_dim)).astype(np.float32)
    batch["reward"] = rng.normal(size=(b, t)).astype(np.float32)
    return batch
