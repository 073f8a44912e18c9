"""The two named recipes (June 2023 and newest official DreamerV3) and the official size presets."""

import pytest
import torch

from daydream.agent import Agent
from daydream.agent.laprop import LaProp
from daydream.config import ConfigError, load_config
from helpers import synthetic_batch, tiny_config, vector_spaces


def test_default_recipe_is_the_june_2023_maths():
    config = load_config(None, [])
    assert config.recipe == "dreamerv3_2023"
    m, b = config.model, config.behavior
    assert (m.opt, m.lr, m.eps, m.clip_mode, m.twohot_space, m.initial, m.dyn_input) == (
        "adam", 1e-4, 1e-8, "norm", "symlog", "learned", "joint")
    assert (b.actor_grad, b.repval_scale, b.actor_outscale, m.loss_scales["dyn"]) == ("auto", 0.0, 1.0, 0.5)


def test_newest_recipe_has_every_listed_change():
    config = load_config(None, ["recipe=dreamerv3"])
    m, b = config.model, config.behavior
    assert (m.opt, m.lr, m.eps, m.warmup, m.clip_mode, m.agc) == ("laprop", 4e-5, 1e-20, 1000, "agc", 0.3)
    assert (b.opt, b.actor_lr, b.critic_lr, b.eps, b.warmup, b.clip_mode, b.agc) == (
        "laprop", 4e-5, 4e-5, 1e-20, 1000, "agc", 0.3)
    assert b.actor_grad == "reinforce" and b.repval_scale == 0.3
    assert m.twohot_space == "raw" and m.initial == "zeros" and m.prior_layers == 2 and m.loss_scales["dyn"] == 1.0
    assert (m.dyn_input, m.dyn_layers, m.gate_norm, m.init_fan, b.actor_outscale) == ("split", 1, False, "in", 0.01)
    # a task config and --set still win over the recipe
    assert load_config("pendulum_tiny", ["recipe=dreamerv3"]).model.lr == 6e-4
    assert load_config(None, ["recipe=dreamerv3", "model.lr=1e-3"]).model.lr == 1e-3


@pytest.mark.parametrize("size, shape", [
    ("size1m", (512, 64, 4, 64)), ("size12m", (2048, 256, 16, 256)),
    ("size25m", (3072, 384, 24, 384)), ("size50m", (4096, 512, 32, 512)),
])
def test_size_presets_have_the_official_shapes(size, shape):
    m = load_config(None, [f"size={size}"]).model
    assert (m.deter, m.hidden, m.classes, m.units) == shape and m.stoch == 32 and m.blocks == 8


def test_old_size_names_and_unknown_recipes_say_what_to_use():
    with pytest.raises(ConfigError, match="size '12m' is gone.*use size12m"):
        load_config(None, ["size=12m"])
    with pytest.raises(ConfigError, match="recipe 'v3' is not a preset.*dreamerv3_2023, dreamerv3"):
        load_config(None, ["recipe=v3"])


def test_newest_recipe_trains_with_every_part():
    obs_space, act_space = vector_spaces()
    torch.manual_seed(0)
    agent = Agent(tiny_config("recipe=dreamerv3", "model.blocks=4"), obs_space, act_space)
    assert isinstance(agent.model_opt.opt, LaProp) and isinstance(agent.actor_opt.opt, LaProp)
    assert not agent.behavior.dynamics_grad  # REINFORCE for continuous actions too
    state = agent.wm.rssm.initial(2)
    assert all(torch.count_nonzero(v) == 0 for k, v in state.items() if k in ("deter", "stoch"))
    batch = synthetic_batch(obs_space, 2)
    for _ in range(2):
        metrics = agent.train(batch)
    assert "repval_loss" in metrics and all(torch.isfinite(v) for v in metrics.values())
    # warm-up: the first update is taken at learning rate 0, so the actor's first step leaves it unchanged
    fresh = Agent(tiny_config("recipe=dreamerv3", "model.blocks=4"), obs_space, act_space)
    before = [p.detach().clone() for p in fresh.behavior.actor.parameters()]
    fresh.train(batch)
    assert all(torch.equal(a, p) for a, p in zip(before, fresh.behavior.actor.parameters()))


def test_newest_recipe_policy_exports_to_onnx_with_parity():
    from test_export import rollout_parity

    obs_space, act_space = vector_spaces(action_dim=3)
    torch.manual_seed(0)
    agent = Agent(tiny_config("recipe=dreamerv3", "model.blocks=4"), obs_space, act_space)
    agent.train(synthetic_batch(obs_space, 3))
    assert rollout_parity(agent, obs_space, 20) < 1e-4
