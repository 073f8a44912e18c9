"""The policies an actor runs, behind one small interface: the exported ONNX graph on
onnxruntime (what robots run) or the torch agent loaded with the same weights
(`transport.policy_runtime: onnx | torch`; PlaNet's planner, `planner`, is in planner_acting.py).

Each keeps its recurrent state between calls to `act`; a newly received policy takes
over the state of the one it replaces (`take_state`), so swapping policies between two
control steps does not reset the RSSM filter mid-episode.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np


def batch_obs(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add the leading batch dimension of one to every observation array."""
    return {k: np.asarray(v)[None] for k, v in obs.items()}


class ActingPolicy(Protocol):
    version: int

    def act(self, obs: dict[str, np.ndarray], mode: Literal["explore", "eval"] = "explore") -> np.ndarray:
        """One control step: the action for one (unbatched) observation."""

    def take_state(self, other: "ActingPolicy") -> None:
        """Continue from `other`'s recurrent state."""


class RandomActing:
    """Uniform random actions: the baseline a learned policy's evaluation is reported beside."""

    version = 0

    def __init__(self, action_space: Any, seed: int | None = None) -> None:
        from daydream.envs.contract import random_action  # the envs package pulls in every backend: only here

        self._sample, self.action_space = random_action, action_space
        self.rng = np.random.default_rng(seed)

    def act(self, obs: dict[str, np.ndarray], mode: Literal["explore", "eval"] = "explore") -> np.ndarray:
        return self._sample(self.action_space, self.rng)

    def take_state(self, other: ActingPolicy) -> None:
        pass


class RecurrentActing:
    """An exported policy on onnxruntime (`runtime`: `policy(obs, state, mode)`, `version`,
    `spec.deter`) with the recurrent state it carries between control steps. A successor of
    the same class and state size continues from its predecessor's state."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.version = runtime.version
        self.state: Any = None

    def act(self, obs: dict[str, np.ndarray], mode: Literal["explore", "eval"] = "explore") -> np.ndarray:
        action, self.state = self.runtime.policy(batch_obs(obs), self.state, mode=mode)
        return action[0]

    def take_state(self, other: ActingPolicy) -> None:
        if type(other) is type(self) and other.runtime.spec.deter == self.runtime.spec.deter:
            self.state = other.state


class OnnxActing(RecurrentActing):
    """Dreamer's exported acting graph (RSSM filter step + actor)."""

    def __init__(self, onnx_bytes: bytes, threads: int = 1, seed: int | None = None) -> None:
        from daydream.export.onnx_policy import OnnxPolicy

        super().__init__(OnnxPolicy(onnx_bytes, threads=threads, seed=seed))


class AgentActing:
    """The torch agent as it is (its current weights): evaluation in the single-process trainer."""

    def __init__(self, agent: Any, version: int = 0) -> None:
        self.agent = agent
        self.version = version
        self.state: Any = None

    def act(self, obs: dict[str, np.ndarray], mode: Literal["explore", "eval"] = "explore") -> np.ndarray:
        action, self.state = self.agent.policy(batch_obs(obs), self.state, mode=mode)
        return action[0]

    def take_state(self, other: ActingPolicy) -> None:
        if isinstance(other, AgentActing):
            self.state = other.state


class TorchActing(AgentActing):
    """The torch agent (built once per actor from the config) with a version of acting weights loaded."""

    def __init__(self, agent: Any, weights: dict[str, np.ndarray], version: int) -> None:
        from daydream.export.weights import load_acting_weights

        load_acting_weights(agent, weights)
        super().__init__(agent, version)
