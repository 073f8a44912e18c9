"""Env backends (`dmc`, `gym`, `carracing`, and `robot`: a driver behind the safety layer with a task)
behind one contract (see `daydream.envs.contract`).

`make_env(config.env, seed)` builds a backend and wraps it so it speaks the contract;
`spaces_of(env)` checks an env against the contract and summarises its spaces.
"""

from daydream.envs.adapter import ContractAdapter
from daydream.envs.contract import FLAG_KEYS, EnvSpec, check_action, spaces_of
from daydream.envs.factory import BACKENDS, make_env
from daydream.envs.wrappers import ActionRepeat, NormalizeActions, ResizeImage, TimeLimit, resize_image

__all__ = [
    "BACKENDS",
    "FLAG_KEYS",
    "ActionRepeat",
    "ContractAdapter",
    "EnvSpec",
    "NormalizeActions",
    "ResizeImage",
    "TimeLimit",
    "check_action",
    "make_env",
    "resize_image",
    "spaces_of",
]
