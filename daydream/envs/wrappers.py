"""Generic wrappers: action normalisation, action repeat, time limit and image resizing.

`make_env` stacks them as
`ResizeImage(ContractAdapter(TimeLimit(ActionRepeat(NormalizeActions(backend)))))`, so
repeat and limit act on native steps (cheap: a rendered image is made once per agent
step, by the adapter) and the adapter derives the flags from the final
terminated/truncated. `ActionRepeat` and `TimeLimit` also work on an env that already
speaks the contract.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from daydream.envs.contract import image_space, is_image_space


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxWx3 uint8 image to `size` (height, width); a no-op at the right size."""
    if image.shape[:2] == tuple(size):
        return np.asarray(image, dtype=np.uint8)
    from PIL import Image

    # BOX averages source pixels when shrinking (no aliasing) and is bilinear-like when growing.
    resized = Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((int(size[1]), int(size[0])), Image.BOX)
    return np.asarray(resized, dtype=np.uint8)


class NormalizeActions(gym.ActionWrapper):
    """Expose a bounded Box action space as Box(-1, 1, (n,), float32).

    `action(a)` clips to [-1, 1] (a policy's samples may overshoot by a rounding error) and
    maps linearly: -1 -> native low, +1 -> native high.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"NormalizeActions needs a 1-D Box action space, got {space}")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError(f"action space {space} has unbounded dimensions; daydream needs finite action bounds to "
                             "normalise")
        self._low = space.low.astype(np.float64)
        self._high = space.high.astype(np.float64)
        self._dtype = space.dtype
        self.action_space = gym.spaces.Box(-1.0, 1.0, space.shape, np.float32)

    def action(self, action: np.ndarray) -> np.ndarray:
        unit = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return (self._low + (unit + 1.0) / 2.0 * (self._high - self._low)).astype(self._dtype)


class ActionRepeat(gym.Wrapper):
    """Repeat each action `repeat` times, summing rewards; stops early when the episode ends."""

    def __init__(self, env: gym.Env, repeat: int) -> None:
        super().__init__(env)
        if repeat < 1:
            raise ValueError(f"env.action_repeat must be >= 1, got {repeat}")
        self.repeat = repeat

    def step(self, action: Any):
        total = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


class TimeLimit(gym.Wrapper):
    """Truncate an episode after `limit` steps of this wrapper (agent steps when outside
    ActionRepeat). A true termination on the last step stays a termination. On a contract
    env (dict obs with `is_last`) the flag is set too."""

    def __init__(self, env: gym.Env, limit: int) -> None:
        super().__init__(env)
        if limit < 1:
            raise ValueError(f"time limit must be >= 1 step, got {limit} (use no TimeLimit for none)")
        self.limit, self._steps = limit, 0

    def reset(self, **kwargs: Any):
        self._steps = 0
        return self.env.reset(**kwargs)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        if self._steps >= self.limit and not (terminated or truncated):
            truncated = True
            if isinstance(obs, dict) and "is_last" in obs:
                obs = {**obs, "is_last": np.bool_(True)}
        return obs, reward, terminated, truncated, info


class ResizeImage(gym.ObservationWrapper):
    """Resize every image key (uint8 HxWx3) of a dict observation to `size` (height, width)."""

    def __init__(self, env: gym.Env, size: tuple[int, int]) -> None:
        super().__init__(env)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"env.size must be [height, width] with positive entries, got {list(size)}")
        space = env.observation_space
        if not isinstance(space, gym.spaces.Dict):
            raise ValueError(f"ResizeImage needs dict observations (wrap with ContractAdapter first), got {space}")
        self.size = (int(size[0]), int(size[1]))
        self._keys = [k for k, s in space.spaces.items() if is_image_space(s)]
        self.observation_space = gym.spaces.Dict(
            {k: image_space(self.size) if k in self._keys else s for k, s in space.spaces.items()}
        )

    def observation(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._keys:
            return observation
        return {**observation, **{k: resize_image(observation[k], self.size) for k in self._keys}}
