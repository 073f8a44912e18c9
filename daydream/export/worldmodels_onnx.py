"""Export a World Models policy (V's encoder, C, and M's LSTM step) to one ONNX graph.

One control step: the frame is encoded to V's latent mean z, C acts on [z, h], and M's
LSTM takes [z, action] to the next (h, c), which the runtime feeds back at the next step,
exactly like the Dreamer acting graph's RSSM state. Inputs `image` [B, 64, 64, 3] uint8,
`h` and `c` [B, hidden]; outputs `action` [B, actions], `h_out`, `c_out`. The policy is
deterministic (the paper's C acts on the mean latent), so there is no noise input. The
graph's metadata holds a `WorldModelsSpec`; `daydream.runtime.acting_worldmodels` runs it
with numpy and onnxruntime only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from daydream.worldmodels.controller import LinearController
from daydream.worldmodels.mdnrnn import MDNRNN
from daydream.worldmodels.vae import ConvVAE

WM_METADATA_KEY = "daydream_worldmodels_spec"
WM_INPUTS = ("image", "h", "c")
WM_OUTPUTS = ("action", "h_out", "c_out")


@dataclass(frozen=True)
class WorldModelsSpec:
    """What a runtime needs to feed the graph: shapes, the action box and the version."""

    image: list[int]      # per-step frame shape, uint8
    hidden: int           # M's LSTM units (h and c)
    z_dim: int
    action_dim: int
    low: list[float]
    high: list[float]
    version: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WorldModelsSpec:
        return cls(**json.loads(text))


class WorldModelsStep(nn.Module):
    """forward(image, h, c) -> action, h_out, c_out: V's mean latent, C on [z, h], M's LSTM on [z, action]."""

    def __init__(self, vae: ConvVAE, rnn: MDNRNN, controller: LinearController) -> None:
        super().__init__()
        self.vae, self.lstm = vae, rnn.lstm
        self.register_buffer("weight", torch.as_tensor(controller.weight, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor(controller.bias, dtype=torch.float32))
        self.register_buffer("unit", torch.as_tensor(controller.low == 0.0))  # [0, 1] dimensions

    def forward(self, image: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z, _ = self.vae.encode(image)
        y = torch.tanh(torch.cat([z, h], -1) @ self.weight.T + self.bias)
        action = torch.where(self.unit, (y + 1.0) / 2.0, y)
        _, (h_out, c_out) = self.lstm(torch.cat([z, action], -1)[:, None], (h[None], c[None]))
        return action, h_out[0], c_out[0]


def export_worldmodels_onnx(vae: ConvVAE, rnn: MDNRNN, controller: LinearController,
                            path: str | Path | None = None, version: int = 0) -> bytes:
    """The policy step as ONNX bytes (written to `path` if given), with its spec in the metadata."""
    from daydream.export.onnx_graph import export_graph  # onnx only where a policy is exported

    spec = WorldModelsSpec(image=[64, 64, 3], hidden=rnn.hidden, z_dim=rnn.z_dim, action_dim=rnn.action_dim,
                           low=[float(x) for x in controller.low], high=[float(x) for x in controller.high],
                           version=int(version))
    if controller.weight.shape != (rnn.action_dim, rnn.z_dim + rnn.hidden):
        raise ValueError(f"controller weight {controller.weight.shape} does not fit M (z {rnn.z_dim}, hidden "
                         f"{rnn.hidden}, actions {rnn.action_dim}); export the C trained with this V and M")
    graph = WorldModelsStep(vae, rnn, controller).to("cpu").float().eval()
    batch = 2
    args = (torch.zeros(batch, *spec.image, dtype=torch.uint8), torch.zeros(batch, spec.hidden),
            torch.zeros(batch, spec.hidden))
    return export_graph(graph, args, WM_INPUTS, WM_OUTPUTS, {WM_METADATA_KEY: spec.to_json(),
                                                              "policy_version": str(version)}, path)


__all__ = ["WM_METADATA_KEY", "WorldModelsSpec", "WorldModelsStep", "export_worldmodels_onnx"]
