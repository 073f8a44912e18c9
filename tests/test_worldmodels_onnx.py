"""World Models' exported policy (V's encoder, C and M's LSTM step in one ONNX graph) on onnxruntime
against the torch policy the pipeline trains with: the same actions and LSTM state on the same frames,
across episode starts and a hand-over of the state to a newly loaded graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from daydream.export.worldmodels_onnx import export_worldmodels_onnx
from daydream.runtime.acting_worldmodels import (
    WorldModelsActing,
    is_worldmodels_graph,
    onnx_acting,
)
from daydream.worldmodels.controller import LinearController
from daydream.worldmodels.mdnrnn import MDNRNN
from daydream.worldmodels.policy import TorchWorldModelsActing
from daydream.worldmodels.vae import ConvVAE


def _parts(seed: int = 0):
    torch.manual_seed(seed)
    vae, rnn = ConvVAE(z_dim=8), MDNRNN(z_dim=8, action_dim=3, hidden=16, mixtures=2)
    params = np.random.default_rng(seed).normal(0.0, 0.5, LinearController.size(8 + 16, 3))
    controller = LinearController.from_flat(params, 8 + 16, [-1.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    return vae.eval(), rnn.eval(), controller


def test_onnx_policy_matches_the_torch_policy_step_by_step():
    vae, rnn, controller = _parts()
    graph = export_worldmodels_onnx(vae, rnn, controller, version=3)
    onnx_policy, torch_policy = onnx_acting(graph), TorchWorldModelsActing(vae, rnn, controller)
    assert isinstance(onnx_policy, WorldModelsActing) and onnx_policy.version == 3
    rng = np.random.default_rng(1)
    for step in range(12):
        obs = {"image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "is_first": step in (0, 7)}
        got, want = onnx_policy.act(obs), torch_policy.act(obs)
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(onnx_policy.state["h"], torch_policy.state[0][0].numpy(), atol=1e-5)
        np.testing.assert_allclose(onnx_policy.state["c"], torch_policy.state[1][0].numpy(), atol=1e-5)
        assert got.shape == (3,) and -1 <= got[0] <= 1 and 0 <= got[1] <= 1 and 0 <= got[2] <= 1
    # M's state reaches the action: the same frame after different first frames gives different actions
    a, b = WorldModelsActing(graph), WorldModelsActing(graph)
    a.act({"image": np.zeros((64, 64, 3), np.uint8), "is_first": True})
    b.act({"image": np.full((64, 64, 3), 255, np.uint8), "is_first": True})
    frame = {"image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "is_first": False}
    assert not np.allclose(a.act(frame), b.act(frame))


def test_a_new_graph_continues_from_the_state_it_takes_over():
    vae, rnn, controller = _parts()
    graph = export_worldmodels_onnx(vae, rnn, controller)
    first, reference = WorldModelsActing(graph), TorchWorldModelsActing(vae, rnn, controller)
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    for i in range(3):
        obs = {"image": frames[i], "is_first": i == 0}
        first.act(obs), reference.act(obs)
    second = WorldModelsActing(graph)
    second.take_state(first)
    for i in range(3, 6):
        obs = {"image": frames[i], "is_first": False}
        np.testing.assert_allclose(second.act(obs), reference.act(obs), atol=1e-5)


def test_graphs_without_the_world_models_spec_are_refused():
    class Step(torch.nn.Module):
        def forward(self, x):
            return x * 2

    import io

    buffer = io.BytesIO()
    torch.onnx.export(Step(), (torch.zeros(1, 2),), buffer, dynamo=False, input_names=["x"])
    assert not is_worldmodels_graph(buffer.getvalue())
    with pytest.raises(ValueError, match="no World Models spec"):
        WorldModelsActing(buffer.getvalue())
    vae, rnn, _ = _parts()
    bad = LinearController.from_flat(np.zeros(LinearController.size(8 + 4, 3)), 8 + 4, [-1.0, 0.0, 0.0], [1.0] * 3)
    with pytest.raises(ValueError, match="does not fit M"):
        export_worldmodels_onnx(vae, rnn, bad)


def test_an_actor_picks_the_acting_class_from_the_graph():
    # what `Actor._make_policy` calls for an ONNX policy: Dreamer's acting graph stays with OnnxActing
    from helpers import tiny_config, vector_spaces

    from daydream.agent import Agent
    from daydream.export.onnx_export import export_onnx
    from daydream.runtime.acting import OnnxActing

    obs_space, act_space = vector_spaces(action_dim=2)
    dreamer = export_onnx(Agent(tiny_config(), obs_space, act_space))
    assert not is_worldmodels_graph(dreamer) and isinstance(onnx_acting(dreamer, seed=0), OnnxActing)
    vae, rnn, controller = _parts()
    assert isinstance(onnx_acting(export_worldmodels_onnx(vae, rnn, controller)), WorldModelsActing)
