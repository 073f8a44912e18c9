"""The agent's interface: acting, training, checkpoints and the errors it raises."""

import numpy as np
import pytest
import torch

from daydream.agent import Agent, CheckpointMismatch
from helpers import image_spaces, step_obs, synthetic_batch, tiny_config, vector_spaces


def test_policy_and_train_vector_obs():
    obs_space, act_space = vector_spaces(action_dim=2)
    agent = Agent(tiny_config(), obs_space, act_space)
    batch = synthetic_batch(obs_space, 2)
    action, state = agent.policy(step_obs(batch))
    assert action.shape == (4, 2) and action.dtype == np.float32
    assert np.all(np.abs(action) <= 1.0)
    action2, _ = agent.policy(step_obs(batch, 1), state)
    assert action2.shape == (4, 2)
    before = [p.detach().clone() for p in agent.wm.parameters()]
    metrics = agent.train(batch)
    assert {"model_loss", "actor_loss", "critic_loss", "kl", "imag_return"} <= set(metrics)
    assert all(torch.isfinite(v) for v in metrics.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.wm.parameters()))
    assert agent.updates == 1


def test_policy_and_train_image_obs():
    obs_space, act_space = image_spaces(action_dim=3)
    agent = Agent(tiny_config("model.mlp_keys=^$"), obs_space, act_space)
    batch = synthetic_batch(obs_space, 3, b=2, t=4)
    action, _ = agent.policy(step_obs(batch))
    assert action.shape == (2, 3)
    metrics = agent.train(batch)
    assert "recon_loss/image" in metrics and torch.isfinite(metrics["recon_loss/image"])


def test_discrete_actions_are_one_hot_and_use_reinforce():
    obs_space, act_space = vector_spaces(action_dim=4, discrete=True)
    agent = Agent(tiny_config(), obs_space, act_space)
    assert not agent.behavior.dynamics_grad
    batch = synthetic_batch(obs_space, 4)
    batch["action"] = np.eye(4, dtype=np.float32)[np.random.default_rng(0).integers(4, size=(4, 8))]
    action, _ = agent.policy(step_obs(batch))
    assert action.shape == (4, 4)
    assert np.allclose(action.sum(-1), 1.0) and set(np.unique(action)) <= {0.0, 1.0}
    assert torch.isfinite(agent.train(batch)["actor_loss"])


@pytest.mark.parametrize("overrides", [
    ["model.latent=gaussian"],
    ["model.blocks=4", "model.deter=64"],
    ["model.blocks=1", "model.norm=layer"],
    ["model.clip_mode=agc", "behavior.clip_mode=agc"],
    ["behavior.actor_grad=reinforce"],
    # the newest official RSSM: split inputs, a block-linear hidden layer, no gate norm, 2 prior layers, zero start
    ["model.blocks=4", "model.dyn_input=split", "model.dyn_layers=1", "model.gate_norm=false",
     "model.prior_layers=2", "model.initial=zeros", "model.twohot_space=raw"],
])
def test_config_variants_train(overrides):
    obs_space, act_space = vector_spaces()
    agent = Agent(tiny_config(*overrides), obs_space, act_space)
    batch = synthetic_batch(obs_space, 2)
    for _ in range(2):
        metrics = agent.train(batch)
    assert all(torch.isfinite(v) for v in metrics.values())


def test_is_first_resets_the_policy_state():
    obs_space, act_space = vector_spaces()
    agent = Agent(tiny_config(), obs_space, act_space)
    batch = synthetic_batch(obs_space, 2, b=1)
    obs = step_obs(batch)
    obs["is_first"] = np.array([True])
    _, fresh = agent.policy(obs, None, mode="eval")
    _, mid = agent.policy(step_obs(batch, 3), fresh, mode="eval")
    _, again = agent.policy(obs, mid, mode="eval")
    assert torch.allclose(fresh["deter"], again["deter"])


def test_checkpoint_roundtrip_restores_everything():
    obs_space, act_space = vector_spaces()
    config = tiny_config()
    torch.manual_seed(0)
    agent = Agent(config, obs_space, act_space)
    batch = synthetic_batch(obs_space, 2)
    for _ in range(3):
        agent.train(batch)
    state = agent.state_dict()
    torch.manual_seed(1)
    other = Agent(config, obs_space, act_space)
    other.load_state_dict(state)
    assert other.updates == 3
    assert torch.equal(other.behavior.retnorm.high, agent.behavior.retnorm.high)
    for (name, a), b in zip(agent.nets.state_dict().items(), other.nets.state_dict().values()):
        assert torch.equal(a, b), name
    obs = step_obs(batch)
    torch.manual_seed(2)  # the posterior latent is sampled even in eval mode
    first = agent.policy(obs, mode="eval")[0]
    torch.manual_seed(2)
    assert np.allclose(first, other.policy(obs, mode="eval")[0])
    # optimiser moments came along: the next update is identical
    torch.manual_seed(5)
    m1 = agent.train(batch)
    torch.manual_seed(5)
    m2 = other.train(batch)
    assert float(m1["model_loss"]) == pytest.approx(float(m2["model_loss"]), rel=1e-5)


def test_checkpoint_from_different_model_shape_is_refused():
    obs_space, act_space = vector_spaces()
    state = Agent(tiny_config(), obs_space, act_space).state_dict()
    bigger = Agent(tiny_config("model.deter=128"), obs_space, act_space)
    with pytest.raises(CheckpointMismatch, match=r"model\.deter: 64 -> 128"):
        bigger.load_state_dict(state)
    other_obs, _ = image_spaces()
    img_agent = Agent(tiny_config("model.mlp_keys=^$"), other_obs, act_space)
    with pytest.raises(CheckpointMismatch, match="obs"):
        img_agent.load_state_dict(state)


def test_observation_keys_matching_nothing_name_the_keys():
    obs_space, act_space = vector_spaces()
    with pytest.raises(ValueError, match=r"no observation key matches.*position"):
        Agent(tiny_config("model.mlp_keys=^nothing$", "model.cnn_keys=^image$"), obs_space, act_space)


def test_wrong_observation_shape_is_reported():
    obs_space, act_space = vector_spaces()
    agent = Agent(tiny_config(), obs_space, act_space)
    obs = step_obs(synthetic_batch(obs_space, 2))
    obs["position"] = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"'position' has shape \(5,\).*expects \(3,\)"):
        agent.policy(obs)
    obs["position"] = np.zeros((4, 3), np.float32)
    del obs["velocity"]
    with pytest.raises(KeyError, match="velocity"):
        agent.policy(obs)


def test_bad_model_configs_are_rejected():
    obs_space, act_space = vector_spaces()
    with pytest.raises(ValueError, match="divisible"):
        Agent(tiny_config("model.blocks=3"), obs_space, act_space)
    with pytest.raises(ValueError, match="loss_scales"):
        Agent(tiny_config("model.loss_scales={recon: 1.0}"), obs_space, act_space)


def test_bfloat16_autocast_update_and_policy():
    # the CUDA default path in reduced precision, run on CPU: mixed-dtype state carries must not crash
    obs_space, act_space = image_spaces()
    agent = Agent(tiny_config("precision=bfloat16"), obs_space, act_space)
    batch = synthetic_batch(obs_space, 2)
    for _ in range(2):
        metrics = agent.train(batch)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    action, state = agent.policy(step_obs(batch), None)
    action, _ = agent.policy(step_obs(batch, 1), state)
    assert np.isfinite(action).all()

