"""A World Models policy on onnxruntime: the acting class for graphs from `export_worldmodels_onnx`.

Needs only numpy and onnxruntime (no torch), like `OnnxActing` for Dreamer's graph. It
keeps M's LSTM state (h, c) between steps as `OnnxActing` keeps the RSSM state, starts
it at zeros where an observation has `is_first`, and hands it to the policy that replaces
it (`take_state`). `onnx_acting` picks this class or `OnnxActing` from a graph's metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

# the metadata key and input names of daydream.export.worldmodels_onnx (not imported: that module needs torch)
WM_METADATA_KEY = "daydream_worldmodels_spec"

LSTMState = dict[str, np.ndarray]


class WorldModelsOnnxPolicy:
    """The exported step, batched: `step(image, state)` -> actions and the next (h, c)."""

    def __init__(self, model: str | Path | bytes, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            name = "<bytes>" if isinstance(model, bytes) else model
            raise ValueError(f"could not load the World Models ONNX policy {name}: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if WM_METADATA_KEY not in meta:
            raise ValueError("this ONNX graph has no World Models spec in its metadata; export it with "
                             "daydream.export.worldmodels_onnx (daydream worldmodels export)")
        self.spec: dict[str, Any] = json.loads(meta[WM_METADATA_KEY])
        self.hidden = int(self.spec["hidden"])

    @property
    def version(self) -> int:
        return int(self.spec["version"])

    def initial_state(self, batch: int) -> LSTMState:
        return {"h": np.zeros((batch, self.hidden), np.float32), "c": np.zeros((batch, self.hidden), np.float32)}

    def step(self, image: np.ndarray, state: LSTMState) -> tuple[np.ndarray, LSTMState]:
        image = np.asarray(image, np.uint8)
        if image.shape[1:] != tuple(self.spec["image"]):
            raise ValueError(f"the World Models policy takes frames of shape {tuple(self.spec['image'])}, got "
                             f"{image.shape[1:]}; set env.size to [64, 64] and env.obs to pixels")
        action, h, c = self.session.run(None, {"image": image, "h": state["h"], "c": state["c"]})
        return action, {"h": h, "c": c}


class WorldModelsActing:
    """One env's World Models policy on onnxruntime, the actor's `ActingPolicy` interface."""

    def __init__(self, onnx_bytes: bytes | str | Path, threads: int = 1) -> None:
        self.policy = WorldModelsOnnxPolicy(onnx_bytes, threads=threads)
        self.version = self.policy.version
        self.state: LSTMState | None = None

    def act(self, obs: dict[str, np.ndarray], mode: Literal["explore", "eval"] = "explore") -> np.ndarray:
        """C is deterministic, so `mode` does not change the action."""
        if self.state is None or bool(np.asarray(obs.get("is_first", False))):
            self.state = self.policy.initial_state(1)
        action, self.state = self.policy.step(np.asarray(obs["image"])[None], self.state)
        return action[0]

    def take_state(self, other: Any) -> None:
        if isinstance(other, WorldModelsActing) and other.policy.hidden == self.policy.hidden:
            self.state = other.state


def is_worldmodels_graph(onnx_bytes: bytes) -> bool:
    """Whether an ONNX graph is a World Models policy: its metadata names the World Models spec.

    The metadata key is a plain string field of the serialised model, so finding it needs neither the
    `onnx` package (not on robots) nor a second onnxruntime session; `WorldModelsOnnxPolicy` then
    reads and checks the spec itself.
    """
    return WM_METADATA_KEY.encode() in onnx_bytes


def onnx_acting(onnx_bytes: bytes, threads: int = 1, seed: int | None = None) -> Any:
    """The acting class an ONNX graph needs: `WorldModelsActing` for World Models, else `OnnxActing`."""
    if is_worldmodels_graph(onnx_bytes):
        return WorldModelsActing(onnx_bytes, threads=threads)
    from daydream.runtime.acting import OnnxActing

    return OnnxActing(onnx_bytes, threads=threads, seed=seed)
