"""Export a PlaNet agent's planning graphs to ONNX (`behavior.kind: planet`).

Two graphs, zipped into one bundle (`planner_bundle`): the RSSM filter step for the
observation (encoder + posterior, as in the acting graph but without an actor) and one
imagination step with the reward head, run over a batch of candidate sequences by the
numpy CEM on the robot (`onnx_planner`). Every sample takes its noise as an input, so
both graphs are deterministic functions of their inputs and comparable with torch.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from daydream.agent import Agent
from daydream.agent.math import twohot_decode
from daydream.export.onnx_graph import export_graph, write_model
from daydream.export.planner_bundle import (
    FILTER_OUTPUTS, STEP_INPUTS, STEP_OUTPUTS, PlannerSpec, pack_bundle,
)


class FilterGraph(nn.Module):
    """forward(*obs, deter, stoch, prev_action, is_first, latent_noise) -> (deter, stoch): the posterior state."""

    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self.wm = agent.wm
        self.obs_keys = [*agent.keys.cnn, *agent.keys.mlp]

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor]:
        obs = dict(zip(self.obs_keys, inputs[: len(self.obs_keys)]))
        deter, stoch, prev_action, is_first, latent_noise = inputs[len(self.obs_keys):]
        post = self.wm.rssm.obs_step({"deter": deter, "stoch": stoch}, prev_action, self.wm.encoder(obs), is_first,
                                     noise=latent_noise)
        return post["deter"], post["stoch"]


class ImagineStepGraph(nn.Module):
    """forward(deter, stoch, action, latent_noise) -> (deter, stoch, reward): one prior step, scored."""

    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self.wm = agent.wm

    def forward(self, deter: Tensor, stoch: Tensor, action: Tensor,
                latent_noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        state = self.wm.rssm.img_step({"deter": deter, "stoch": stoch}, action, latent_noise)
        head = self.wm.reward
        decoded = twohot_decode(torch.softmax(head.logits(self.wm.rssm.feat(state)), -1), head.decode_bins)
        # TwoHotHead.mean, with symexp as exp(|x|) - 1: ONNX has no expm1 (the difference is float rounding)
        reward = decoded if head.raw else torch.sign(decoded) * (torch.exp(decoded.abs()) - 1.0)
        return state["deter"], state["stoch"], reward.reshape(-1)


def planner_spec(agent: Agent, version: int) -> PlannerSpec:
    rssm = agent.wm.rssm
    obs = {k: (list(s), "uint8") for k, s in agent.keys.cnn.items()}
    obs.update({k: (list(s), "float32") for k, s in agent.keys.mlp.items()})
    return PlannerSpec(obs=obs, action_dim=agent.action_dim, deter=agent.config.model.deter,
                       stoch=list(rssm.stoch_shape), latent_noise="gumbel" if rssm.categorical else "normal",
                       version=int(version), config_hash=agent.config.digest("model", "behavior"))


def export_planner(agent: Agent, path: str | Path | None = None, version: int = 0) -> bytes:
    """Export `agent`'s planning graphs as a planner bundle; writes it to `path` if given and returns the bytes."""
    if agent.discrete:
        raise ValueError("the planner plans continuous actions; this agent's actions are discrete")
    spec = planner_spec(agent, version)
    if agent.device.type != "cpu":
        from daydream.export.onnx_export import _cpu_copy

        agent = _cpu_copy(agent)
    batch = 2
    obs = [torch.zeros(batch, *shape, dtype=getattr(torch, dtype)) for shape, dtype in spec.obs.values()]
    state = [torch.zeros(batch, spec.deter), torch.zeros(batch, *spec.stoch)]
    action, latent = torch.zeros(batch, spec.action_dim), torch.zeros(batch, *spec.stoch)
    filter_args = (*obs, *state, action, torch.ones(batch, dtype=torch.bool), latent)
    filter_onnx = _export(FilterGraph(agent).eval(), filter_args,
                          spec.filter_input_names, list(FILTER_OUTPUTS), spec)
    step_onnx = _export(ImagineStepGraph(agent).eval(), (*state, action, latent), list(STEP_INPUTS),
                        list(STEP_OUTPUTS), spec)
    data = pack_bundle(spec, filter_onnx, step_onnx)
    if path is not None:
        write_model(path, data)
    return data


def _export(graph: nn.Module, args: tuple[Tensor, ...], inputs: list[str], outputs: list[str],
            spec: PlannerSpec) -> bytes:
    return export_graph(graph, args, inputs, outputs, {"daydream_planner_graph": type(graph).__name__,
                                                        "policy_version": str(spec.version),
                                                        "config_hash": spec.config_hash})
