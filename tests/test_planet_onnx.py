"""PlaNet's planner on the robot: the exported planning graphs on onnxruntime with the numpy CEM give the
torch planner's plans given the same noise; the runtimes refuse each other's artifacts by name."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from daydream.agent import Agent
from daydream.export.onnx_export import export_onnx
from daydream.export.onnx_planner import OnnxPlanner
from daydream.export.planner_bundle import is_planner_bundle, unpack_bundle
from daydream.runtime.acting import OnnxActing
from daydream.runtime.planner_acting import PlannerActing, exported_acting, wire_format
from helpers import image_spaces, synthetic_batch, tiny_config, vector_spaces

PLANNER = ("behavior.planner.candidates=100", "behavior.planner.top_k=10", "behavior.planner.iterations=3",
           "behavior.planner.horizon=6")


def planet_agent(obs_space, act_space, *overrides: str) -> Agent:
    torch.manual_seed(0)
    config = tiny_config("behavior.kind=planet", "model.latent=gaussian", *PLANNER, *overrides)
    agent = Agent(config, obs_space, act_space)
    agent.train(synthetic_batch(obs_space, agent.action_dim))  # away from the initial weights
    with torch.no_grad():  # a reward head whose predictions tell sequences apart clearly (no near-ties in the top-k)
        torch.nn.init.normal_(agent.wm.reward.out.weight, std=0.1)
    return agent


def noise_for(agent: Agent, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    cfg, stoch = agent.config.behavior.planner, agent.wm.rssm.stoch_shape
    draw = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    return {"latent": draw(batch, *stoch),
            "plan_action": draw(cfg.iterations, cfg.candidates, cfg.horizon, agent.action_dim),
            "plan_latent": draw(cfg.candidates, cfg.horizon, *stoch), "action": draw(batch, agent.action_dim)}


@pytest.mark.parametrize("kind", ["vector", "image"])
def test_onnx_planner_matches_the_torch_planner_with_the_same_noise(kind):
    obs_space, act_space = vector_spaces(action_dim=2) if kind == "vector" else image_spaces(action_dim=2)
    agent = planet_agent(obs_space, act_space, *(["model.mlp_keys=^$"] if kind == "image" else []))
    data = export_onnx(agent, version=5)
    assert is_planner_bundle(data) and unpack_bundle(data)[0].version == 5
    planner = OnnxPlanner(data, agent.config.behavior.planner)
    steps = 6 if kind == "vector" else 3
    batch = synthetic_batch(obs_space, 2, b=2, t=steps, seed=1)
    batch["is_first"][:] = False
    batch["is_first"][:, 0] = True
    batch["is_first"][1, steps // 2] = True  # a reset mid-rollout in one row
    rng = np.random.default_rng(0)
    torch_state = onnx_state = None
    for t in range(steps):
        obs = {k: v[:, t] for k, v in batch.items() if k in obs_space.spaces}
        noise = noise_for(agent, 2, rng)
        mode = "explore" if t % 2 else "eval"
        a_torch, torch_state = agent.policy(obs, torch_state, mode=mode, noise=noise)
        a_onnx, onnx_state = planner.policy(obs, onnx_state, mode=mode, noise=noise)
        np.testing.assert_allclose(a_onnx, a_torch, atol=1e-4)
        np.testing.assert_allclose(onnx_state["deter"], torch_state["deter"].numpy(), atol=1e-4)
    # one search alone: the refit mean and std and the best predicted return
    start = {k: torch_state[k][:1] for k in ("deter", "stoch")}
    plan_noise = {k: v for k, v in noise.items() if k.startswith("plan_")}
    expected = agent.planner.plan(start, {k: torch.as_tensor(v) for k, v in plan_noise.items()})
    mean, std, best = planner.plan(onnx_state["deter"][:1], onnx_state["stoch"][:1], plan_noise)
    np.testing.assert_allclose(mean, expected.mean.numpy(), atol=1e-4)
    np.testing.assert_allclose(std, expected.std.numpy(), atol=1e-4)
    assert best == pytest.approx(expected.best_return, rel=1e-4, abs=1e-4)


def test_the_runtimes_refuse_each_others_artifacts_and_the_planner_acts():
    obs_space, act_space = vector_spaces(action_dim=2)
    planet = planet_agent(obs_space, act_space)
    bundle = export_onnx(planet)
    with pytest.raises(ValueError, match="policy_runtime: planner"):
        OnnxActing(bundle)
    graph = export_onnx(Agent(tiny_config(), obs_space, act_space))
    with pytest.raises(ValueError, match="policy_runtime: onnx"):
        PlannerActing(graph, planet.config.behavior.planner)
    assert isinstance(exported_acting(bundle, planet.config), PlannerActing)
    assert isinstance(exported_acting(graph, planet.config), OnnxActing)
    assert (wire_format("planner"), wire_format("onnx"), wire_format("torch")) == ("onnx", "onnx", "torch")

    acting = PlannerActing(bundle, planet.config.behavior.planner, seed=0)
    batch = synthetic_batch(obs_space, 2, b=1, t=3)
    actions = [acting.act({k: v[0, t] for k, v in batch.items() if k in obs_space.spaces}) for t in range(3)]
    assert all(a.shape == (2,) and np.abs(a).max() <= 1.0 for a in actions)
    successor = PlannerActing(bundle, planet.config.behavior.planner, seed=1)
    successor.take_state(acting)  # a new policy version continues the filter's state
    np.testing.assert_array_equal(successor.state["deter"], acting.state["deter"])


def test_torch_runtime_weights_carry_the_reward_head_for_planning():
    from daydream.export.weights import acting_weights, load_acting_weights

    obs_space, act_space = vector_spaces(action_dim=2)
    learner = planet_agent(obs_space, act_space)
    weights = acting_weights(learner)
    assert any(k.startswith("wm.reward.") for k in weights) and not any(k.startswith("behavior.") for k in weights)
    actor = Agent(learner.config, obs_space, act_space)
    load_acting_weights(actor, weights)
    obs = {k: v[:, 0] for k, v in synthetic_batch(obs_space, 2, b=1).items() if k in obs_space.spaces}
    noise = noise_for(learner, 1, np.random.default_rng(3))
    np.testing.assert_array_equal(actor.policy(obs, noise=noise)[0], learner.policy(obs, noise=noise)[0])


@pytest.mark.timeout(120)
def test_an_actor_with_the_planner_runtime_takes_the_learners_bundle_and_plans(tmp_path):
    """In-process: a policy server publishes a planet agent's bundle; an actor with policy_runtime: planner
    asks for it (as `onnx` bytes), builds the numpy + onnxruntime planner, caches it and acts with it."""
    import threading

    from daydream.config import load_config
    from daydream.envs import make_env
    from daydream.runtime.actor import Actor
    from daydream.transport import PolicyServer, PolicyUpdate
    from daydream.transport.endpoints import policy_endpoint
    from processes import free_port_pair

    port = free_port_pair()
    learner = f"tcp://127.0.0.1:{port}"
    config = load_config("planet_pendulum", [
        f"logdir={tmp_path}", f"transport.learner={learner}", "transport.actor_id=p0", "transport.pace_actors=false",
        "transport.policy_runtime=planner", "transport.policy_request_interval_s=0.05", "transport.drain_timeout_s=0.2",
        "behavior.planner.candidates=16", "behavior.planner.top_k=4", "behavior.planner.iterations=2",
        "behavior.planner.horizon=3", "device=cpu"])
    env = make_env(config.env, seed=0)
    agent = Agent(config, env.observation_space, env.action_space)
    env.close()
    stop = threading.Event()
    with PolicyServer(policy_endpoint(learner)) as server:
        server.publish(PolicyUpdate(1, export_onnx(agent, version=1)))
        actor = Actor(config)
        runner = threading.Thread(target=actor.run, args=(stop,))
        runner.start()
        try:
            deadline = time.monotonic() + 60
            acted_from = None
            while time.monotonic() < deadline:
                server.poll(10)
                if acted_from is None and isinstance(actor.policy, PlannerActing):
                    acted_from = actor.counters["steps_acted"]
                if acted_from is not None and actor.counters["steps_acted"] >= acted_from + 20:
                    break
            else:
                pytest.fail(f"the actor did not plan 20 steps with the published planner (policy {actor.policy})")
        finally:
            stop.set()
            runner.join(30)
            actor.close()
    assert actor.policy.version == 1 and actor.rejected_policies == 0
    assert is_planner_bundle(actor.store.load().onnx)  # cached for the next start


def test_a_planner_bundle_file_is_refused_by_the_onnx_policy(tmp_path):
    from daydream.export.onnx_policy import OnnxPolicy

    obs_space, act_space = vector_spaces(action_dim=2)
    path = tmp_path / "policy.onnx"
    export_onnx(planet_agent(obs_space, act_space), path)
    with pytest.raises(ValueError, match="policy_runtime: planner"):
        OnnxPolicy(path)
    assert OnnxPlanner(path, load_planner_config()).version == 0  # the planner reads the same file


def load_planner_config():
    from daydream.config import load_config

    return load_config("planet_pendulum").behavior.planner
