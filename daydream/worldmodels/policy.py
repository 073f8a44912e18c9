"""The World Models policy in torch, and a uniformly random one, behind the actor's acting interface.

`TorchWorldModelsActing` is what the pipeline trains and evaluates C with: V's mean latent
z of the frame, C on [z, h], then M's LSTM on [z, action] for the next (h, c), the state
kept between steps and restarted where `is_first` is set. `WorldModelsActing`
(`daydream.runtime.acting_worldmodels`) runs the exported graph of the same step on
onnxruntime; the parity test holds the two to the same actions. `RandomActing` is the
baseline the evaluation reports beside C.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from daydream.worldmodels.controller import LinearController
from daydream.worldmodels.mdnrnn import MDNRNN
from daydream.worldmodels.vae import ConvVAE


class TorchWorldModelsActing:
    def __init__(self, vae: ConvVAE, rnn: MDNRNN, controller: LinearController, version: int = 0) -> None:
        self.vae, self.rnn, self.controller = vae.eval(), rnn.eval(), controller
        self.version = version
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None

    def act(self, obs: dict[str, np.ndarray], mode: Literal["explore", "eval"] = "explore") -> np.ndarray:
        """One step for one observation; C is deterministic, so `mode` does not change the action."""
        if self.state is None or bool(np.asarray(obs.get("is_first", False))):
            self.state = self.rnn.initial_state(1)
        with torch.no_grad():
            z = self.vae.encode(torch.as_tensor(np.array(obs["image"])[None]))[0]  # a writable copy
            h = self.state[0][0]
            action = self.controller(np.concatenate([z.numpy(), h.numpy()], -1))
            _, self.state = self.rnn.lstm(torch.cat([z, torch.as_tensor(action)], -1)[:, None], self.state)
        return action[0]

    def take_state(self, other: Any) -> None:
        if isinstance(other, TorchWorldModelsActing):
            self.state = other.state


class RandomActing:
    """Uniformly random actions in the box: the random policy of the paper's comparison."""

    version = 0

    def __init__(self, low: np.ndarray, high: np.ndarray, seed: int) -> None:
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        self.rng = np.random.default_rng(seed)

    def act(self, obs: dict[str, np.ndarray], mode: Literal["explore", "eval"] = "explore") -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)

    def take_state(self, other: Any) -> None:
        pass
