"""PlaNet's CEM planner: the refit on a known quadratic reward, given noise reproduces exactly, bad
arguments are refused, and latent rollouts sum the reward along each candidate's path."""

from __future__ import annotations

import pytest
import torch

from daydream.agent.planner import cem, latent_returns


def quadratic(target: torch.Tensor):
    """Return = -sum of squared distances of every planned action to `target` [horizon, action]."""
    return lambda actions: -((actions - target) ** 2).sum(dim=(1, 2))


def test_cem_refits_toward_the_optimum_of_a_known_quadratic():
    target = torch.tensor([[0.5, -0.3], [0.1, 0.8], [-0.6, 0.2]])
    g = torch.Generator().manual_seed(0)
    result = cem(quadratic(target), horizon=3, action_dim=2, candidates=400, top_k=40, iterations=8, generator=g)
    torch.testing.assert_close(result.mean, target, atol=0.05, rtol=0)
    assert float(result.std.max()) < 0.1, "the refit narrows around the optimum"
    torch.testing.assert_close(result.action, target[0], atol=0.05, rtol=0)
    # the refit is exact: with one iteration, the mean is the mean of the top-k candidates
    noise = torch.randn(1, 50, 3, 2, generator=g)
    one = cem(quadratic(target), 3, 2, candidates=50, top_k=5, iterations=1, noise=noise)
    actions = noise[0].clamp(-1, 1)
    elite = actions[quadratic(target)(actions).topk(5).indices]
    torch.testing.assert_close(one.mean, elite.mean(0))
    torch.testing.assert_close(one.std, elite.std(0, unbiased=False))


def test_cem_clips_to_the_action_box_and_reproduces_with_given_noise():
    target = torch.full((2, 1), 3.0)  # outside the box: the best plan sits on the bound
    noise = torch.randn(5, 100, 2, 1, generator=torch.Generator().manual_seed(1))
    a = cem(quadratic(target), 2, 1, candidates=100, top_k=10, iterations=5, noise=noise)
    b = cem(quadratic(target), 2, 1, candidates=100, top_k=10, iterations=5, noise=noise)
    torch.testing.assert_close(a.mean, b.mean)
    assert float(a.mean.max()) <= 1.0 and float(a.mean.min()) > 0.9


def test_cem_refuses_bad_arguments():
    with pytest.raises(ValueError, match="top_k"):
        cem(quadratic(torch.zeros(2, 1)), 2, 1, candidates=10, top_k=20)
    with pytest.raises(ValueError, match="noise must have shape"):
        cem(quadratic(torch.zeros(2, 1)), 2, 1, candidates=10, top_k=2, iterations=1, noise=torch.zeros(1, 10, 3, 1))
    with pytest.raises(ValueError, match="one value per candidate"):
        cem(lambda a: a.sum(), 2, 1, candidates=10, top_k=2, iterations=1)


def test_latent_returns_sum_the_reward_along_each_rollout():
    # a toy latent model: the state integrates the action, the reward is the state
    def img_step(state, action):
        return {"x": state["x"] + action}

    score = latent_returns(img_step, lambda s: s["x"].sum(-1), {"x": torch.zeros(1, 1)})
    actions = torch.tensor([[[1.0], [1.0]], [[0.5], [-1.0]]])  # returns: 1 + 2 = 3; 0.5 + -0.5 = 0
    torch.testing.assert_close(score(actions), torch.tensor([3.0, 0.0]))
