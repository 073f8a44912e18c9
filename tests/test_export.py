"""ONNX export: the onnxruntime policy matches the torch agent step for step."""

import numpy as np
import onnx
import pytest
import torch

from daydream.agent import Agent
from daydream.export.onnx_export import export_onnx
from daydream.export.onnx_policy import OnnxPolicy
from daydream.export.spec import METADATA_KEY, PolicySpec
from helpers import image_spaces, synthetic_batch, tiny_config, vector_spaces


def rollout_parity(agent: Agent, obs_space, steps: int, mode: str = "explore") -> float:
    policy = OnnxPolicy(export_onnx(agent, version=3), seed=0)
    batch = synthetic_batch(obs_space, agent.action_dim, b=2, t=steps, seed=1)
    batch["is_first"][:] = False
    batch["is_first"][:, 0] = True
    batch["is_first"][1, steps // 2] = True  # a reset mid-rollout in one batch row
    torch_state, onnx_state, worst = None, None, 0.0
    for t in range(steps):
        obs = {k: v[:, t] for k, v in batch.items() if k in obs_space.spaces}
        noise = policy.sample_noise(2)
        a_torch, torch_state = agent.policy(obs, torch_state, mode=mode, noise=noise)
        a_onnx, onnx_state = policy.policy(obs, onnx_state, mode=mode, noise=noise)
        worst = max(worst, float(np.abs(a_torch - a_onnx).max()),
                    float(np.abs(torch_state["deter"].numpy() - onnx_state["deter"]).max()),
                    float(np.abs(torch_state["stoch"].numpy() - onnx_state["stoch"]).max()))
    return worst


@pytest.mark.parametrize("kind", ["vector", "image"])
def test_onnx_matches_torch_over_50_steps(kind):
    torch.manual_seed(0)
    if kind == "vector":
        obs_space, act_space = vector_spaces(action_dim=3)
        agent = Agent(tiny_config(), obs_space, act_space)
    else:
        obs_space, act_space = image_spaces(action_dim=3)
        agent = Agent(tiny_config("model.mlp_keys=^$"), obs_space, act_space)
    agent.train(synthetic_batch(obs_space, 3))  # move away from the initial weights
    assert rollout_parity(agent, obs_space, 50) < 1e-4
    assert rollout_parity(agent, obs_space, 10, mode="eval") < 1e-4


def test_onnx_parity_discrete_and_gaussian():
    obs_space, act_space = vector_spaces(action_dim=4, discrete=True)
    agent = Agent(tiny_config(), obs_space, act_space)
    assert rollout_parity(agent, obs_space, 20) < 1e-4
    obs_space, act_space = vector_spaces(action_dim=2)
    agent = Agent(tiny_config("model.latent=gaussian"), obs_space, act_space)
    assert rollout_parity(agent, obs_space, 20) < 1e-4


def test_exported_file_is_checked_and_carries_metadata(tmp_path):
    obs_space, act_space = vector_spaces(action_dim=2)
    agent = Agent(tiny_config(), obs_space, act_space)
    path = tmp_path / "policy.onnx"
    export_onnx(agent, path, version=7)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    props = {p.key: p.value for p in model.metadata_props}
    spec = PolicySpec.from_json(props[METADATA_KEY])
    assert spec.version == 7 and props["policy_version"] == "7"
    assert spec.obs == {"position": ([3], "float32"), "velocity": ([2], "float32")}
    assert spec.action_dim == 2 and not spec.discrete
    assert spec.config_hash == agent.config.digest("model", "behavior")
    # batch dimension is dynamic
    policy = OnnxPolicy(path)
    obs = {"position": np.zeros((5, 3), np.float32), "velocity": np.zeros((5, 2), np.float32),
           "is_first": np.ones(5, bool)}
    action, state = policy.policy(obs)
    assert action.shape == (5, 2) and state["deter"].shape == (5, 64)


def test_onnx_policy_rejects_bad_input(tmp_path):
    obs_space, act_space = vector_spaces(action_dim=2)
    policy = OnnxPolicy(export_onnx(Agent(tiny_config(), obs_space, act_space)))
    with pytest.raises(KeyError, match="velocity"):
        policy.policy({"position": np.zeros((1, 3)), "is_first": np.ones(1, bool)})
    with pytest.raises(ValueError, match="expects"):
        policy.policy({"position": np.zeros((1, 4)), "velocity": np.zeros((1, 2)), "is_first": np.ones(1, bool)})
    with pytest.raises(ValueError, match="could not load"):
        OnnxPolicy(b"not an onnx file")
