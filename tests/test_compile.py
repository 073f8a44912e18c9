"""compile: true (the filter's and the imagination's step functions through torch.compile) learns what
eager mode learns: from the same weights, batch and seed one update gives the same losses and the same
new weights, for continuous actions (gradients through the imagined dynamics) and discrete ones
(REINFORCE: the imagination runs without autograd)."""

import pytest
import torch
from torch._dynamo.utils import counters

from daydream.agent import Agent
from daydream.config import ConfigError
from helpers import synthetic_batch, tiny_config, vector_spaces


@pytest.mark.parametrize("discrete", [False, True], ids=["dynamics", "reinforce"])
def test_compiled_update_matches_eager(discrete):
    obs_space, act_space = vector_spaces(action_dim=2, discrete=discrete)
    batch = synthetic_batch(obs_space, 2, b=2, t=8)
    batch["is_first"][1, 3] = True
    agents = {}
    for mode in ("eager", "compiled"):
        torch.manual_seed(0)
        agents[mode] = Agent(tiny_config(f"compile={str(mode == 'compiled').lower()}"), obs_space, act_space)
    agents["compiled"].nets.load_state_dict(agents["eager"].nets.state_dict())
    metrics = {}
    torch._dynamo.reset()  # compiled code is shared by modules of one shape: count this test's compiles alone
    counters.clear()
    for mode, agent in agents.items():
        torch.manual_seed(1)  # the same noise: it is drawn eagerly, outside the compiled steps
        metrics[mode] = {k: float(v) for k, v in agent.train(batch).items()}
    # one graph each for the filter's and the imagination's step, no graph break, no second compile
    # of a first step (compile time is what makes compile: true worth it or not)
    assert counters["stats"]["unique_graphs"] == 2, dict(counters["stats"])
    assert set(metrics["eager"]) == set(metrics["compiled"])
    for key, value in metrics["eager"].items():
        assert abs(metrics["compiled"][key] - value) <= 1e-4 + 1e-3 * abs(value), (key, value, metrics["compiled"][key])
    for (name, a), b in zip(agents["eager"].nets.named_parameters(), agents["compiled"].nets.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)


def test_compile_without_a_cpp_compiler_is_refused_at_startup(monkeypatch):
    # what a CPU box without g++ looks like to torch: none of its compiler names runs
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", ("daydream-test-no-such-compiler",))
    obs_space, act_space = vector_spaces(action_dim=2)
    with pytest.raises(ConfigError, match="compile: false"):
        Agent(tiny_config("compile=true", "device=cpu"), obs_space, act_space)
    Agent(tiny_config("compile=false", "device=cpu"), obs_space, act_space)  # eager needs no compiler
