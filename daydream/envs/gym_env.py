"""Gymnasium backends: any registered id by name, and CarRacing.

Builds the native env with `gymnasium.make`, rendering to rgb_array whenever the env can
(so videos work even without an image observation) and replacing the registered
TimeLimit when daydream applies its own. Observation and action adaptation is left to
`make_env`'s wrappers.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

log = logging.getLogger(__name__)

CARRACING_ID = "CarRacing-v3"


def _spec(task: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of `task` (`module:Id` imports the module first, as gym.make does)."""
    module, _, env_id = task.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"Gymnasium env id '{task}': cannot import module '{module}' ({exc})") from exc
    try:
        return gym.spec(env_id)
    except gym.error.Error as exc:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; list ids with `gymnasium.pprint_registry()`"
        raise ValueError(f"unknown Gymnasium env id '{task}' ({exc}){hint}") from exc


def _render_modes(spec: gym.envs.registration.EnvSpec) -> list[str]:
    creator = spec.entry_point if callable(spec.entry_point) else load_env_creator(spec.entry_point)
    return list(getattr(creator, "metadata", {}).get("render_modes", []) or [])


def make_gym(task: str, *, render: bool = False, own_time_limit: bool = True, **kwargs: Any) -> gym.Env:
    """`gymnasium.make(task)` with rgb_array rendering where supported.

    `render=True` requires rgb_array support (it feeds an `image` observation).
    `own_time_limit=False` drops the registered TimeLimit (daydream's replaces it).
    """
    spec = _spec(task)
    modes = _render_modes(spec)
    if render and "rgb_array" not in modes:
        raise ValueError(f"env.render=true but Gymnasium env '{task}' cannot render rgb_array frames (render modes: "
                         f"{modes}); set env.render=false")
    render_mode = "rgb_array" if "rgb_array" in modes else None
    if render_mode is None:
        log.info("Gymnasium env '%s' cannot render rgb_array frames (render modes: %s): no videos", task, modes)
    try:
        return gym.make(task, render_mode=render_mode, max_episode_steps=None if own_time_limit else -1, **kwargs)
    except gym.error.DependencyNotInstalled:
        raise  # its message already says what to pip install
    except gym.error.Error as exc:
        raise ValueError(f"cannot make Gymnasium env '{task}': {exc}") from exc


def make_carracing(discrete: bool, *, own_time_limit: bool = True) -> gym.Env:
    """CarRacing-v3: 96x96 pixels; 5 discrete actions or the (steer, gas, brake) box."""
    return make_gym(CARRACING_ID, own_time_limit=own_time_limit, continuous=not discrete)
