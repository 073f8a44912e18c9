"""Run an exported acting graph with onnxruntime: the policy that runs on the robot.

Needs only numpy and onnxruntime. `OnnxPolicy.policy(obs, state)` has the same
interface as the torch `Agent.policy`: a batch of observations (with `is_first`) and
the previous state in, actions and the next state out.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np

from daydream.export.planner_bundle import is_planner_bundle
from daydream.export.spec import METADATA_KEY, PolicySpec, obs_feeds

log = logging.getLogger(__name__)

OnnxState = dict[str, np.ndarray]


class OnnxPolicy:
    def __init__(self, model: str | Path | bytes, threads: int = 1, seed: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = model if isinstance(model, bytes) else str(model)
        if is_planner_bundle(_head(model)):
            raise ValueError("this policy is a PlaNet planner bundle (the learner trains behavior.kind: planet), "
                             "not an acting graph: use transport.policy_runtime: planner")
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            shown = model if not isinstance(model, bytes) else "<bytes>"
            raise ValueError(f"could not load ONNX policy {shown}: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ValueError("ONNX file has no daydream policy spec in its metadata; export it with daydream.export")
        self.spec = PolicySpec.from_json(meta[METADATA_KEY])
        self.rng = np.random.default_rng(seed)
        self._input_names = self.spec.input_names

    @property
    def version(self) -> int:
        return self.spec.version

    def initial_state(self, batch: int) -> OnnxState:
        # The graph resets the state itself where is_first is set, so zeros suffice here.
        return {
            "deter": np.zeros((batch, self.spec.deter), np.float32),
            "stoch": np.zeros((batch, *self.spec.stoch), np.float32),
            "action": np.zeros((batch, self.spec.action_dim), np.float32),
        }

    def sample_noise(self, batch: int) -> dict[str, np.ndarray]:
        return {
            "latent": self._draw(self.spec.latent_noise, (batch, *self.spec.stoch)),
            "action": self._draw(self.spec.action_noise, (batch, self.spec.action_dim)),
        }

    def _draw(self, kind: str, shape: tuple[int, ...]) -> np.ndarray:
        if kind == "gumbel":
            u = self.rng.uniform(1e-10, 1.0 - 1e-7, shape)
            return (-np.log(-np.log(u))).astype(np.float32)
        return self.rng.standard_normal(shape).astype(np.float32)

    def policy(
        self, obs: dict[str, np.ndarray], state: OnnxState | None = None, mode: Literal["explore", "eval"] = "explore",
        noise: dict[str, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, OnnxState]:
        is_first = np.asarray(obs["is_first"], dtype=bool).reshape(-1)
        batch = is_first.shape[0]
        state = state or self.initial_state(batch)
        noise = noise or self.sample_noise(batch)
        feeds = obs_feeds(self.spec.obs, obs, "policy")
        feeds.update(
            deter=np.asarray(state["deter"], np.float32),
            stoch=np.asarray(state["stoch"], np.float32),
            prev_action=np.asarray(state["action"], np.float32),
            is_first=is_first,
            latent_noise=np.asarray(noise["latent"], np.float32),
            action_noise=np.asarray(noise["action"], np.float32),
        )
        action, action_mode, deter, stoch = self.session.run(None, feeds)
        chosen = action if mode == "explore" else action_mode
        return chosen, {"deter": deter, "stoch": stoch, "action": chosen}


def _head(model: str | Path | bytes) -> bytes:
    """The first bytes of a policy (bytes or file): enough to tell a planner bundle from an ONNX graph."""
    if isinstance(model, bytes):
        return model[:4]
    try:
        with open(model, "rb") as f:
            return f.read(4)
    except OSError:  # onnxruntime reports a missing file in its own words
        return b""
