"""PlaNet's behaviour (behavior.kind: planet): the agent plans with CEM over its world model, only the
world model trains, the objective's sign is a knob, and the renamed policy-runtime key."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from daydream.agent import Agent
from daydream.config import ConfigError, config_from_dict, load_config
from helpers import step_obs, synthetic_batch, tiny_config, vector_spaces

SMALL_PLANNER = ("behavior.planner.candidates=64", "behavior.planner.top_k=8", "behavior.planner.iterations=3",
                 "behavior.planner.horizon=5")


def planet_agent(*overrides: str, seed: int = 0) -> tuple[Agent, object]:
    torch.manual_seed(seed)
    obs_space, act_space = vector_spaces(action_dim=2)
    agent = Agent(tiny_config("behavior.kind=planet", "model.latent=gaussian", *SMALL_PLANNER, *overrides),
                  obs_space, act_space)
    # a reward head that tells sequences apart (a fresh one predicts ~0 for everything)
    torch.nn.init.normal_(agent.wm.reward.out.weight, std=0.1)
    return agent, obs_space


def test_only_the_world_model_trains():
    agent, obs_space = planet_agent()
    actor = [p.detach().clone() for p in agent.behavior.parameters()]
    rssm = [p.detach().clone() for p in agent.wm.rssm.parameters()]
    metrics = agent.train(synthetic_batch(obs_space, 2))
    assert "model_loss" in metrics and not any(k.startswith(("actor", "critic")) for k in metrics)
    assert agent.updates == 1
    assert all(torch.equal(a, b) for a, b in zip(actor, agent.behavior.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(rssm, agent.wm.rssm.parameters()))


@torch.no_grad()
def test_plans_beat_random_sequences_and_the_flipped_objective_seeks_the_worst():
    agent, obs_space = planet_agent()
    obs = step_obs(synthetic_batch(obs_space, 2, b=1))
    _, state = agent.policy(obs, mode="eval")
    start = {k: state[k] for k in ("deter", "stoch")}
    cfg = agent.config.behavior.planner
    # zero model noise (the prior's mean path): each sequence has one return, which CEM must push up (or down)
    latent = torch.zeros(cfg.candidates, cfg.horizon, 8)
    from daydream.agent.planner import latent_returns

    returns = latent_returns(agent.wm.rssm.img_step, agent.planner.reward, start, latent)

    def value(plan: torch.Tensor) -> float:
        return float(returns(plan.expand(cfg.candidates, -1, -1))[0])

    baseline = torch.tensor([value(torch.rand(cfg.horizon, 2) * 2 - 1) for _ in range(30)])
    best = agent.planner.plan(start, {"plan_latent": latent})
    assert value(best.mean) > float(baseline.max()), (value(best.mean), baseline)

    worst_agent, _ = planet_agent("behavior.planner.objective=minimize")
    worst_agent.nets.load_state_dict(agent.nets.state_dict())
    worst = worst_agent.planner.plan(start, {"plan_latent": latent})
    assert value(worst.mean) < float(baseline.min()), (value(worst.mean), baseline)
    assert worst.best_return < best.best_return


def test_acting_explores_around_the_plan_and_stays_in_the_box():
    agent, obs_space = planet_agent("behavior.planner.explore_noise=0.5")
    batch = synthetic_batch(obs_space, 2, b=3)
    fixed = {"plan_action": torch.randn(3, 64, 5, 2), "plan_latent": torch.randn(64, 5, 8),
             "latent": torch.zeros(3, 8)}
    eval_action, _ = agent.policy(step_obs(batch), mode="eval", noise=fixed)
    eps = np.array([[1.0, -1.0], [0.2, 0.0], [5.0, -5.0]], np.float32)
    explore, state = agent.policy(step_obs(batch), mode="explore", noise={**fixed, "action": torch.as_tensor(eps)})
    assert eval_action.shape == (3, 2) and np.abs(eval_action).max() <= 1.0
    np.testing.assert_allclose(explore, np.clip(eval_action + 0.5 * eps, -1, 1), atol=1e-6)
    np.testing.assert_array_equal(state["action"].numpy(), explore)  # the executed action feeds the next filter step


def test_planet_refuses_discrete_actions_and_bad_planner_knobs():
    obs_space, act_space = vector_spaces(action_dim=3, discrete=True)
    with pytest.raises(ConfigError, match="continuous actions"):
        Agent(tiny_config("behavior.kind=planet"), obs_space, act_space)
    obs_space, act_space = vector_spaces(action_dim=2)
    with pytest.raises(ValueError, match="top_k <= candidates"):
        Agent(tiny_config("behavior.kind=planet", "behavior.planner.top_k=2000"), obs_space, act_space)


def test_planet_presets_load_with_the_gaussian_latent():
    for name, repeat in (("planet_cartpole_swingup", 8), ("planet_pendulum", None)):
        config = load_config(name)
        assert config.behavior.kind == "planet" and config.model.latent == "gaussian"
        if repeat is not None:
            assert config.env.action_repeat == repeat
    planner = load_config("planet_cartpole_swingup").behavior.planner
    assert (planner.horizon, planner.candidates, planner.top_k, planner.iterations) == (12, 1000, 100, 10)


def test_policy_runtime_key_and_its_deprecated_name(caplog):
    assert load_config(None).transport.policy_runtime == "onnx"
    with caplog.at_level(logging.WARNING, logger="daydream.config"):
        config = load_config(None, ["transport.policy=torch"])
    assert config.transport.policy_runtime == "torch"
    assert "'transport.policy' (from --set) is deprecated; use 'transport.policy_runtime'" in caplog.text
    with pytest.raises(ConfigError, match="both given"):
        load_config(None, ["transport.policy=torch", "transport.policy_runtime=onnx"])
    # a config saved before the rename (a checkpoint's) still loads
    old = config.to_dict()
    old["transport"] = {("policy" if k == "policy_runtime" else k): v for k, v in old["transport"].items()}
    assert config_from_dict(old, ["transport.policy=planner"]).transport.policy_runtime == "planner"
    assert config.replace(**{"transport.policy": "planner"}).transport.policy_runtime == "planner"
    with pytest.raises(ConfigError, match="choose one of: onnx, torch, planner"):
        load_config(None, ["transport.policy_runtime=tflite"])
