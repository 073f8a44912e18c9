"""compile: true (the RSSM's step functions through torch.compile) learns what eager mode learns:
from the same weights, batch and seed one update gives the same losses and the same new weights."""

import torch

from daydream.agent import Agent
from helpers import synthetic_batch, tiny_config, vector_spaces


def test_compiled_update_matches_eager():
    obs_space, act_space = vector_spaces(action_dim=2)
    batch = synthetic_batch(obs_space, 2, b=2, t=8)
    batch["is_first"][1, 3] = True
    agents = {}
    for mode in ("eager", "compiled"):
        torch.manual_seed(0)
        agents[mode] = Agent(tiny_config(f"compile={str(mode == 'compiled').lower()}"), obs_space, act_space)
    agents["compiled"].nets.load_state_dict(agents["eager"].nets.state_dict())
    metrics = {}
    for mode, agent in agents.items():
        torch.manual_seed(1)  # the same noise: it is drawn eagerly, outside the compiled steps
        metrics[mode] = {k: float(v) for k, v in agent.train(batch).items()}
    assert set(metrics["eager"]) == set(metrics["compiled"])
    for key, value in metrics["eager"].items():
        assert abs(metrics["compiled"][key] - value) <= 1e-4 + 1e-3 * abs(value), (key, value, metrics["compiled"][key])
    for (name, a), b in zip(agents["eager"].nets.named_parameters(), agents["compiled"].nets.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
