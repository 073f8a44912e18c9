"""cuda_graph: true (the whole update captured once and replayed) learns what eager mode learns.

On a CPU the capture is an eager stand-in that re-runs the captured function on the graph's
static buffers (`UpdateGraph(capture=...)`): everything but the CUDA capture call itself is the
code under test here (warm-up, capture, the static inputs refreshed at every replay, the metrics
copied out, the warm-up schedule applied outside the step, recapture after a checkpoint, fixed
shapes). The real capture is checked where a GPU is present (`gpu` mark) and measured by
`benchmarks/gpu_suite.sh`.
"""

from __future__ import annotations

import copy

import pytest
import torch

from daydream.agent import Agent
from daydream.agent.laprop import LaProp
from daydream.agent.optim import ClippedAdam
from daydream.config import ConfigError
from helpers import synthetic_batch, tiny_config, vector_spaces


def replay_eagerly(body):
    """The CPU stand-in for a CUDA graph: capturing records nothing, replaying re-runs the body."""
    return body


def agents(*overrides: str, capture=replay_eagerly, device: str = "cpu") -> tuple[Agent, Agent]:
    obs_space, act_space = vector_spaces(action_dim=2)
    made = []
    for graphed in (False, True):
        torch.manual_seed(0)
        config = tiny_config(f"cuda_graph={str(graphed).lower()}", f"device={device}", *overrides)
        made.append(Agent(config, obs_space, act_space, capture=capture if graphed else None))
    made[1].nets.load_state_dict(made[0].nets.state_dict())
    return made[0], made[1]


def batches(n: int, b: int = 2, t: int = 8) -> list[dict]:
    obs_space, _ = vector_spaces(action_dim=2)
    return [synthetic_batch(obs_space, 2, b=b, t=t, seed=i) for i in range(n)]


def assert_same_training(eager: Agent, graphed: Agent, data: list[dict], seed: int = 1, rtol: float = 1e-6,
                         atol: float = 1e-7) -> None:
    for i, batch in enumerate(data):
        torch.manual_seed(seed + i)  # the same noise in both agents
        expected = {k: float(v) for k, v in eager.train(batch).items()}
        torch.manual_seed(seed + i)
        got = {k: float(v) for k, v in graphed.train(batch).items()}
        assert list(got) == list(expected)
        for key, value in expected.items():
            assert abs(got[key] - value) <= atol + rtol * abs(value), (i, key, value, got[key])
    for (name, a), b in zip(eager.nets.named_parameters(), graphed.nets.parameters()):
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize("recipe", ["dreamerv3_2023", "dreamerv3"])
def test_graphed_update_trains_as_eager_through_warmup_capture_and_replays(recipe):
    """Six updates on six different batches: 3 eager warm-ups, the capture, 2 replays. A replay that
    kept the captured batch, or a schedule lost in the graph (dreamerv3: LaProp's 1000-update warm-up,
    AGC, REINFORCE, the replay-value loss), would change the losses or the weights."""
    eager, graphed = agents(f"recipe={recipe}")
    data = batches(6)
    assert_same_training(eager, graphed, data[:3], rtol=1e-5, atol=1e-6)
    assert not graphed.update_graph.captured
    assert_same_training(eager, graphed, data[3:], seed=10, rtol=1e-5, atol=1e-6)
    assert graphed.update_graph.captured and graphed.update_graph.capture_s is not None
    assert graphed.updates == eager.updates == 6


def test_adam_warmup_is_scheduled_outside_the_captured_step():
    eager, graphed = agents("model.warmup=4", "behavior.warmup=4")
    assert_same_training(eager, graphed, batches(6))
    assert graphed.model_opt.steps == eager.model_opt.steps == 6
    for opt in (graphed.model_opt, graphed.actor_opt, graphed.critic_opt):
        assert opt.opt.param_groups[0]["lr"] == pytest.approx(opt.lr)


def test_returned_metrics_are_not_overwritten_by_the_next_replay():
    _, graphed = agents()
    data = batches(6)
    for batch in data[:4]:
        graphed.train(batch)
    first = graphed.train(data[4])
    kept = {k: float(v) for k, v in first.items()}
    graphed.train(data[5])
    assert {k: float(v) for k, v in first.items()} == kept


def test_a_batch_of_another_shape_is_refused_after_the_capture():
    _, graphed = agents()
    for batch in batches(4):
        graphed.train(batch)
    with pytest.raises(ValueError, match="fixed shapes"):
        graphed.train(batches(1, b=3)[0])


def test_a_failed_capture_says_what_to_do():
    def failing_capture(body):
        raise RuntimeError("operation not permitted when stream is capturing")

    _, graphed = agents(capture=failing_capture)
    data = batches(4)
    for batch in data[:3]:
        graphed.train(batch)
    with pytest.raises(RuntimeError, match="set cuda_graph: false") as caught:
        graphed.train(data[3])
    assert "operation not permitted" in str(caught.value)
    assert not graphed.update_graph.captured


def test_loading_a_checkpoint_recaptures_and_trains_as_eager():
    eager, graphed = agents()
    data = batches(8)
    assert_same_training(eager, graphed, data[:5])
    assert graphed.update_graph.captured
    state = eager.state_dict()
    graphed.load_state_dict(copy.deepcopy(state))  # as from disk: no optimiser moments shared with `eager`
    assert not graphed.update_graph.captured  # the graph held the replaced optimiser state
    assert_same_training(eager, graphed, data[5:], seed=20)
    assert graphed.update_graph.captured


def test_cuda_graph_without_a_gpu_acts_but_refuses_to_train_with_a_clear_error():
    """A learner's config with cuda_graph: true also serves its actors and reports on CPU machines."""
    obs_space, act_space = vector_spaces(action_dim=2)
    agent = Agent(tiny_config("cuda_graph=true"), obs_space, act_space)
    batch = batches(1)[0]
    action, _ = agent.policy({k: v[:, 0] for k, v in batch.items() if k not in ("action", "reward")})
    assert action.shape == (2, 2)
    with pytest.raises(ConfigError, match="cuda_graph: false"):
        agent.train(batch)


def test_capturable_laprop_steps_as_the_python_count_and_loads_either_kind():
    torch.manual_seed(0)
    weights = [torch.randn(5, 3), torch.randn(3)]
    params = {kind: [torch.nn.Parameter(w.clone()) for w in weights] for kind in ("python", "device")}
    opts = {kind: LaProp(ps, lr=1e-2, eps=1e-8, warmup=3, capturable=kind == "device") for kind, ps in params.items()}

    def step_both(opts: dict[str, LaProp]) -> None:
        """One step of each optimiser on the same gradients; both kinds of parameters stay equal."""
        grads = [torch.randn_like(w) for w in weights]
        for kind, opt in opts.items():
            for p, g in zip(params[kind], grads):
                p.grad = g.clone()
            opt.step()
        for a, b in zip(params["python"], params["device"]):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)

    for _ in range(5):
        step_both(opts)
    assert isinstance(opts["device"].state[params["device"][0]]["step"], torch.Tensor)
    # a checkpoint of one kind of count loads into the other and steps on from the same count
    swapped = {"python": LaProp(params["python"], lr=1e-2, eps=1e-8, warmup=3, capturable=True),
               "device": LaProp(params["device"], lr=1e-2, eps=1e-8, warmup=3, capturable=False)}
    swapped["python"].load_state_dict(opts["python"].state_dict())
    swapped["device"].load_state_dict(opts["device"].state_dict())
    step_both(swapped)
    assert int(swapped["device"].state[params["device"][0]]["step"]) == 6


def test_capturable_step_leaves_the_warmup_to_schedule():
    param = torch.nn.Parameter(torch.ones(3))
    opt = ClippedAdam([param], lr=1.0, eps=1e-8, clip=100.0, mode="norm", warmup=4, capturable=True)
    opt.schedule()  # step 0 of the warm-up: rate 0
    opt.step((param * 2).sum())
    torch.testing.assert_close(param.detach(), torch.ones(3))
    opt.schedule()
    assert opt.opt.param_groups[0]["lr"] == pytest.approx(0.25)
    opt.step((param * 2).sum())
    assert opt.steps == 2 and param.detach()[0] < 1.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the tests above use an eager stand-in)")
@pytest.mark.parametrize("recipe", ["dreamerv3_2023", "dreamerv3"])
def test_cuda_graph_replays_train_as_eager_on_the_gpu(recipe):
    """The real capture: a replay draws its noise from the generator's offset at replay time, as
    eager kernels do, so with the same seed both agents train alike (to GPU rounding)."""
    eager, graphed = agents(f"recipe={recipe}", capture=None, device="cuda")
    assert_same_training(eager, graphed, batches(7), rtol=1e-3, atol=1e-4)
    assert graphed.update_graph.captured
