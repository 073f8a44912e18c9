"""`ContractAdapter`: turns a native-obs env into one that speaks the env contract.

It owns everything the contract adds on top of a backend: dict observations (float32
1-D vectors, uint8 images), an optional rendered `image`, the `is_first` / `is_last` /
`is_terminal` flags, action validation (shape, NaN, one-hot -> index), the seed used by
the first reset, and the guard against stepping a finished episode.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

from daydream.envs.contract import (
    RESERVED_KEYS,
    check_action,
    flag_spaces,
    image_space,
    is_image_space,
    is_unit_box,
    vector_space,
    with_flags,
)
from daydream.envs.wrappers import resize_image

Converter = Callable[[Any], np.ndarray]


def _converter(key: str, space: gym.Space) -> tuple[gym.Space, Converter]:
    """The contract space of one native observation, and the function converting a value."""
    if is_image_space(space):
        return space, lambda v: np.asarray(v, dtype=np.uint8)
    if isinstance(space, gym.spaces.Box):
        size = int(np.prod(space.shape))
        return vector_space(size), lambda v: np.asarray(v, dtype=np.float32).reshape(size)
    if isinstance(space, gym.spaces.Discrete):
        n, start = int(space.n), int(space.start)
        eye = np.eye(n, dtype=np.float32)
        return vector_space(n), lambda v: eye[int(v) - start]
    raise ValueError(
        f"observation '{key}' has space {space}, which daydream cannot encode; "
        "use Box (vectors or HxWx3 uint8 images), Discrete, or a Dict of those"
    )


class ContractAdapter(gym.Wrapper):
    """Adapt `env` (native observations; actions already Box(-1, 1, (n,)) or Discrete) to the contract.

    Observation naming: a Dict keeps its keys; a single Box becomes `image` when it is an
    HxWx3 uint8 image, else `state`; a Discrete observation becomes a one-hot `state`.
    `keep_vectors=False` drops every non-image key (DMC `obs: pixels`). `render_size`
    adds an `image` rendered with `env.render()` once per step, resized to that
    (height, width), unless the env already observes an image. `seed` is used by the
    first `reset()` that gives none, so `make_env(config, seed)` is reproducible.
    """

    def __init__(
        self,
        env: gym.Env,
        *,
        keep_vectors: bool = True,
        render_size: tuple[int, int] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(env)
        native = env.observation_space
        items = native.spaces.items() if isinstance(native, gym.spaces.Dict) else [(None, native)]
        spaces: dict[str, gym.Space] = {}
        self._convert: dict[str, tuple[str | None, Converter]] = {}
        for native_key, space in items:
            key = native_key if native_key is not None else ("image" if is_image_space(space) else "state")
            if key in RESERVED_KEYS:
                raise ValueError(f"observation key '{key}' is reserved by the env contract "
                                 f"({', '.join(RESERVED_KEYS)}); rename it in the env")
            spaces[key], convert = _converter(key, space)
            if keep_vectors or is_image_space(spaces[key]):
                self._convert[key] = (native_key, convert)
            else:
                del spaces[key]
        self._render_size = None
        if render_size is not None and "image" not in spaces:
            self._render_size = (int(render_size[0]), int(render_size[1]))
            spaces["image"] = image_space(self._render_size)
        if not spaces:
            raise ValueError(f"env {env} has no observations left under the contract (keep_vectors=False and no "
                             "image); ask for pixels or vectors")
        self.observation_space = gym.spaces.Dict({**spaces, **flag_spaces()})

        act = env.action_space
        self._action_start = 0
        if isinstance(act, gym.spaces.Discrete):
            self._action_start = int(act.start)
            self.action_space = gym.spaces.Discrete(int(act.n))
        elif is_unit_box(act):
            self.action_space = act
        else:
            raise ValueError(
                f"action space {act} is not contract-ready; wrap a bounded Box with NormalizeActions "
                "first (Discrete is passed through; other spaces are not supported)"
            )
        self._seed = seed
        if seed is not None:
            self.action_space.seed(seed)
        self._needs_reset = True

    def _observe(self, raw: Any) -> dict[str, np.ndarray]:
        out = {}
        for key, (native_key, convert) in self._convert.items():
            out[key] = convert(raw if native_key is None else raw[native_key])
        if self._render_size is not None:
            out["image"] = resize_image(self.render(), self._render_size)
        return out

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None and self._seed is not None:
            seed, self._seed = self._seed, None
        raw, info = self.env.reset(seed=seed, options=options)
        self._needs_reset = False
        return with_flags(self._observe(raw), True, False, False), info

    def step(self, action: Any):
        if self._needs_reset:
            raise RuntimeError("step() called on a finished or never-started episode; call reset() first")
        checked = check_action(self.action_space, action)
        if isinstance(checked, int):
            checked += self._action_start
        raw, reward, terminated, truncated, info = self.env.step(checked)
        terminated, truncated = bool(terminated), bool(truncated)
        self._needs_reset = terminated or truncated
        obs = with_flags(self._observe(raw), False, terminated or truncated, terminated)
        return obs, float(reward), terminated, truncated, info

    def render(self) -> np.ndarray:
        """An RGB uint8 frame of the current state (for videos and rendered observations)."""
        frame = self.env.render()
        if frame is None:
            raise RuntimeError(
                f"{self.env.unwrapped} returned no frame from render(); it was made without "
                "render_mode='rgb_array' (its render modes: "
                f"{self.env.metadata.get('render_modes', [])})"
            )
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise RuntimeError(f"render() gave a frame of shape {frame.shape}; expected HxWx3 RGB")
        return frame.astype(np.uint8, copy=False)
