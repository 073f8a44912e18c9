"""Fidelity to the official DreamerV3: structure and gradient paths the reference code has.

Each test pins one difference found in a line-by-line review (issue 12) and fails on
the code before its fix.
"""

import math

import numpy as np
import pytest
import torch

from daydream.agent import Agent
from daydream.agent.optim import ClippedAdam
from daydream.agent.rssm import RSSM
from helpers import synthetic_batch, tiny_config, vector_spaces


def test_reward_and_critic_heads_predict_exactly_zero_at_init():
    obs_space, act_space = vector_spaces()
    for space in ("symlog", "raw"):
        torch.manual_seed(0)
        agent = Agent(tiny_config(f"model.twohot_space={space}"), obs_space, act_space)
        feat = 3.0 * torch.randn(64, agent.wm.rssm.feat_dim)
        for head in (agent.wm.reward, agent.behavior.critic, agent.behavior.slow_critic):
            pred = head.mean(head.logits(feat))
            assert torch.equal(pred, torch.zeros_like(pred)), (space, pred.abs().max())


def test_block_gru_every_block_sees_the_whole_deterministic_state():
    for dyn_input in ("joint", "split"):
        torch.manual_seed(0)
        cfg = tiny_config("model.blocks=4", "model.deter=64", f"model.dyn_input={dyn_input}").model
        rssm = RSSM(cfg, embed_dim=16, action_dim=2)
        state = rssm.initial(3)
        state = {k: v + 0.3 * torch.randn_like(v) if k == "deter" else v for k, v in state.items()}
        action = torch.rand(3, 2) * 2 - 1
        base = rssm._deter_step(state, action)
        changed = state["deter"].clone()
        changed[:, :16] += 1.0  # block 0 only
        moved = rssm._deter_step({**state, "deter": changed}, action)
        per_block = (moved - base).abs().reshape(3, 4, 16).amax((0, 2))
        assert (per_block > 1e-6).all(), (dyn_input, per_block)


def test_no_gradient_reaches_an_imagined_state_through_the_actor_input():
    obs_space, act_space = vector_spaces()
    agent = Agent(tiny_config("behavior.horizon=4"), obs_space, act_space)
    assert agent.behavior.dynamics_grad
    seen = []
    original = agent.behavior.actor.dist_params

    def spy(feat):
        seen.append(feat.requires_grad)
        return original(feat)

    agent.behavior.actor.dist_params = spy
    agent.train(synthetic_batch(obs_space, 2))
    assert len(seen) == 4 and not any(seen)


def test_no_gradient_through_the_continue_probability():
    """The actor's loss takes the continue head's output as a constant and differentiates through the reward
    head's (the dynamics gradient); the model's own weights are constants to it (frozen: no gradient)."""
    obs_space, act_space = vector_spaces()
    agent = Agent(tiny_config("behavior.horizon=4"), obs_space, act_space)
    batch = synthetic_batch(obs_space, 2)
    agent.train(batch)  # off the exact-zero initial reward prediction, where symexp's gradient is 0
    data = agent._to_tensors(batch, batch_dims=2)
    _, post, _ = agent.wm.loss(data)
    outputs, trainable = {}, [p for p in agent.wm.parameters() if p.requires_grad]

    def spy(name, original):
        def logits(feat):
            outputs[f"{name} frozen"] = not any(p.requires_grad for p in trainable)
            return outputs.setdefault(name, original(feat))
        return logits

    for name in ("cont", "reward"):
        head = getattr(agent.wm, name)
        head.logits = spy(name, head.logits)
    actor_loss, _, _ = agent.behavior.actor_loss(agent.wm, post, data["is_terminal"])
    assert not outputs["cont"].requires_grad
    assert outputs["reward"].requires_grad
    (reward_grad,) = torch.autograd.grad(actor_loss, outputs["reward"], retain_graph=True)
    assert torch.count_nonzero(reward_grad) > 0
    assert outputs["cont frozen"] and outputs["reward frozen"]
    assert all(p.requires_grad for p in trainable)  # and trainable again after the actor's loss


@pytest.mark.parametrize("outscale", [1.0, 0.01])
def test_actor_output_layer_has_the_official_init(outscale):
    obs_space, act_space = vector_spaces(action_dim=8)
    torch.manual_seed(0)
    agent = Agent(tiny_config(f"behavior.actor_outscale={outscale}", "model.units=256"), obs_space, act_space)
    w = agent.behavior.actor.out.weight.detach()
    fan_out, fan_in = w.shape
    std = math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566 * outscale
    assert w.abs().max() <= 2 * std + 1e-7
    # a truncated normal at +-2 std has standard deviation 0.88 std
    assert float(w.std()) == pytest.approx(0.8796 * std, rel=0.1)
    assert torch.count_nonzero(agent.behavior.actor.out.bias) == 0


def test_reinforce_takes_the_log_probability_at_the_unclipped_sample():
    obs_space, act_space = vector_spaces(action_dim=4)
    torch.manual_seed(0)
    agent = Agent(tiny_config("behavior.actor_grad=reinforce"), obs_space, act_space)
    seen = []
    original = agent.behavior.actor.log_prob

    def spy(params, action):
        seen.append(action.detach().clone())
        return original(params, action)

    agent.behavior.actor.log_prob = spy
    agent.train(synthetic_batch(obs_space, 4))
    actions = torch.cat([a.flatten() for a in seen])
    assert actions.abs().max() > 1.0  # std ~0.9 around tanh means: many samples leave the box


def test_is_first_is_true_at_the_first_step_of_every_training_sequence():
    obs_space, act_space = vector_spaces()
    agent = Agent(tiny_config(), obs_space, act_space)
    batch = synthetic_batch(obs_space, 2)
    batch["is_first"][:] = False
    batch["is_first"][1, 3] = True
    given = batch["is_first"].copy()
    seen = []
    original = agent.wm.rssm.observe

    def spy(embed, action, is_first, state=None):
        seen.append(is_first.clone())
        return original(embed, action, is_first, state)

    agent.wm.rssm.observe = spy
    agent.train(batch)
    assert seen[0][:, 0].all()
    assert torch.equal(seen[0][:, 1:], torch.as_tensor(given[:, 1:]))
    assert np.array_equal(batch["is_first"], given)  # the caller's batch is left as it was


def test_agc_ratio_is_its_own_knob():
    config = tiny_config("model.clip_mode=agc", "model.agc=0.3", "model.clip=1000")
    assert config.model.agc == 0.3 and config.behavior.agc == 0.3
    param = torch.nn.Parameter(torch.full((10,), 2.0))  # norm 2 * sqrt(10)
    opt = ClippedAdam([param], lr=1e-3, eps=1e-8, clip=config.model.clip, mode="agc", agc=config.model.agc)
    grad = torch.full((10,), 50.0)
    opt.clip_([grad])
    assert float(grad.norm()) == pytest.approx(0.3 * float(param.norm()), rel=1e-4)
    obs_space, act_space = vector_spaces()
    agent = Agent(tiny_config("model.agc=0.25", "behavior.agc=0.5"), obs_space, act_space)
    assert agent.model_opt.agc == 0.25 and agent.actor_opt.agc == 0.5 and agent.critic_opt.agc == 0.5
