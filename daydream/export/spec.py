"""The contract between an exported acting graph and its runtime: names, shapes, metadata.

Inputs, in order: each observation key, `deter`, `stoch`, `prev_action`, `is_first`,
`latent_noise`, `action_noise`. Outputs: `action` (sampled with the given noise),
`action_mode` (for evaluation), `deter_out`, `stoch_out`. Every tensor's first
dimension is the batch. The noise kinds say how to draw the noise: `gumbel` is
-log(-log(u)) for u ~ U(0, 1); `normal` is a standard normal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

STATE_INPUTS = ("deter", "stoch", "prev_action", "is_first", "latent_noise", "action_noise")
OUTPUTS = ("action", "action_mode", "deter_out", "stoch_out")
METADATA_KEY = "daydream_policy_spec"


@dataclass(frozen=True)
class PolicySpec:
    obs: dict[str, tuple[list[int], str]]     # key -> (per-step shape, dtype)
    action_dim: int
    discrete: bool
    deter: int
    stoch: list[int]                          # per-step shape of the stochastic state
    latent_noise: str                         # gumbel | normal
    action_noise: str                         # gumbel | normal
    version: int
    config_hash: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PolicySpec":
        data = json.loads(text)
        data["obs"] = {k: (list(v[0]), str(v[1])) for k, v in data["obs"].items()}
        return cls(**data)

    @property
    def input_names(self) -> list[str]:
        return [*self.obs, *STATE_INPUTS]


def obs_feeds(obs_spec: Mapping[str, tuple[Sequence[int], Any]], obs: Mapping[str, np.ndarray],
              who: str) -> dict[str, np.ndarray]:
    """A graph's observation inputs from a batch of observations: each key the graph needs, cast to its dtype,
    its per-step shape checked (`who`, e.g. "policy", names the graph in the errors)."""
    feeds = {}
    for key, (shape, dtype) in obs_spec.items():
        if key not in obs:
            raise KeyError(f"observation lacks key '{key}' that the {who} needs; it has {sorted(obs)}")
        value = np.asarray(obs[key], dtype=dtype)
        if value.shape[1:] != tuple(shape):
            raise ValueError(f"observation '{key}' has shape {value.shape[1:]} per step, the {who} expects "
                             f"{tuple(shape)}")
        feeds[key] = value
    return feeds
