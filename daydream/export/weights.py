"""The acting modules' tensors as plain numpy arrays: what a `policy_runtime: torch` actor receives.

The acting graph is the observation encoder, the RSSM and the actor (for PlaNet, the
reward head instead of the actor: it plans with it); the learner ships
their parameters and buffers (float32, CPU) and the actor loads them into its own
torch agent built from the same config. Arrays travel as raw buffers, never pickled.
"""

from __future__ import annotations

import numpy as np
import torch

from daydream.agent import Agent

ACTING_PREFIXES = ("wm.encoder.", "wm.rssm.", "behavior.actor.")
PLANNING_PREFIXES = ("wm.encoder.", "wm.rssm.", "wm.reward.")  # behavior.kind: planet plans with the reward head


def acting_prefixes(agent: Agent) -> tuple[str, ...]:
    return PLANNING_PREFIXES if agent.config.behavior.kind == "planet" else ACTING_PREFIXES


def acting_weights(agent: Agent) -> dict[str, np.ndarray]:
    """The acting modules' state as {name in agent.nets: float32 array} (other dtypes kept)."""
    out = {}
    for name, tensor in agent.nets.state_dict().items():
        if name.startswith(acting_prefixes(agent)):
            t = tensor.detach().to("cpu")
            out[name] = (t.float() if t.is_floating_point() else t).numpy().copy()
    return out


def load_acting_weights(agent: Agent, weights: dict[str, np.ndarray]) -> None:
    """Load `acting_weights` output into `agent`; a missing or mis-shaped tensor raises ValueError."""
    own = {k: v for k, v in agent.nets.state_dict().items() if k.startswith(acting_prefixes(agent))}
    missing = sorted(set(own) - set(weights))
    extra = sorted(set(weights) - set(own))
    if missing or extra:
        raise ValueError(f"policy weights do not fit this agent: missing {missing[:3]}, unexpected {extra[:3]}; "
                         "actor and learner must use the same model config")
    for name, value in weights.items():
        if tuple(value.shape) != tuple(own[name].shape):
            raise ValueError(f"policy weight {name} has shape {tuple(value.shape)}, this agent's is "
                             f"{tuple(own[name].shape)}; actor and learner must use the same model config")
    agent.nets.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in weights.items()}, strict=False)
