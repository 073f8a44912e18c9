"""Export the agent's acting graph (encoder + one RSSM filter step + actor) to ONNX.

The graph is one stateful step: it takes the previous state and action, the new
observation and `is_first` (which resets the state inside the graph), plus the noise
for the latent and action samples, so that its output is a deterministic function of
its inputs and can be checked against the torch agent to numerical precision.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from daydream.agent import Agent
from daydream.export.onnx_graph import export_graph
from daydream.export.spec import METADATA_KEY, OUTPUTS, STATE_INPUTS, PolicySpec

log = logging.getLogger(__name__)


class ActingGraph(nn.Module):
    """The exported step as a module: forward(*obs, deter, stoch, prev_action, is_first, noises)."""

    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self.wm, self.actor = agent.wm, agent.behavior.actor
        self.obs_keys = [*agent.keys.cnn, *agent.keys.mlp]

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        obs = dict(zip(self.obs_keys, inputs[: len(self.obs_keys)]))
        deter, stoch, prev_action, is_first, latent_noise, action_noise = inputs[len(self.obs_keys):]
        embed = self.wm.encoder(obs)
        post = self.wm.rssm.obs_step({"deter": deter, "stoch": stoch}, prev_action, embed, is_first, noise=latent_noise)
        params = self.actor.dist_params(self.wm.rssm.feat(post))
        action = self.actor.sample(params, action_noise)
        mode = self.actor.mode(params)
        if self.actor.discrete:  # exact one-hot outputs
            action = torch.nn.functional.one_hot(action.argmax(-1), self.actor.action_dim).to(mode.dtype)
        return action, mode, post["deter"], post["stoch"]


def policy_spec(agent: Agent, version: int) -> PolicySpec:
    rssm = agent.wm.rssm
    obs = {k: (list(s), "uint8") for k, s in agent.keys.cnn.items()}
    obs.update({k: (list(s), "float32") for k, s in agent.keys.mlp.items()})
    return PolicySpec(
        obs=obs,
        action_dim=agent.action_dim,
        discrete=agent.discrete,
        deter=agent.config.model.deter,
        stoch=list(rssm.stoch_shape),
        latent_noise="gumbel" if rssm.categorical else "normal",
        action_noise="gumbel" if agent.discrete else "normal",
        version=int(version),
        config_hash=agent.config.digest("model", "behavior"),
    )


def example_inputs(spec: PolicySpec, batch: int = 1) -> list[np.ndarray]:
    """Zero inputs of the right shapes and dtypes (is_first set), in input order."""
    arrays = [np.zeros((batch, *shape), dtype=dtype) for shape, dtype in spec.obs.values()]
    arrays += [
        np.zeros((batch, spec.deter), np.float32),
        np.zeros((batch, *spec.stoch), np.float32),
        np.zeros((batch, spec.action_dim), np.float32),
        np.ones((batch,), bool),
        np.zeros((batch, *spec.stoch), np.float32),
        np.zeros((batch, spec.action_dim), np.float32),
    ]
    return arrays


def export_onnx(agent: Agent, path: str | Path | None = None, version: int = 0) -> bytes:
    """Export `agent`'s acting graph; writes it to `path` if given and returns the bytes.

    A PlaNet agent (`behavior.kind: planet`) has no actor to export: it gets its planning
    graphs instead, as a planner bundle (`daydream.export.planner_export`).
    """
    if agent.config.behavior.kind == "planet":
        from daydream.export.planner_export import export_planner

        return export_planner(agent, path, version)
    spec = policy_spec(agent, version)
    graph = ActingGraph(agent if agent.device.type == "cpu" else _cpu_copy(agent)).eval()
    args = tuple(torch.as_tensor(a) for a in example_inputs(spec, batch=2))
    props = {METADATA_KEY: spec.to_json(), "policy_version": str(version), "config_hash": spec.config_hash}
    return export_graph(graph, args, spec.input_names, OUTPUTS, props, path)


def _cpu_copy(agent: Agent) -> Agent:
    """A CPU float32 copy of a GPU agent's acting parts (export traces on CPU)."""
    import copy

    clone = copy.copy(agent)
    clone.wm = copy.deepcopy(agent.wm).to("cpu").float()
    clone.behavior = copy.deepcopy(agent.behavior).to("cpu").float()
    return clone


__all__ = ["ActingGraph", "export_onnx", "example_inputs", "policy_spec", "STATE_INPUTS"]
