"""M's termination head and the dream: M learns where episodes end, and a dream ends where M says so
(the done head is sampled every step), while a dream M never ends runs to its step limit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from daydream.worldmodels.controller import LinearController
from daydream.worldmodels.dream import dream_episode, dream_score
from daydream.worldmodels.mdnrnn import MDNRNN


def _controller(z_dim: int, hidden: int) -> LinearController:
    return LinearController.from_flat(np.zeros(LinearController.size(z_dim + hidden, 1)), z_dim + hidden, [-1.0], [1.0])


def test_m_learns_where_episodes_terminate():
    # an episode ends exactly at the steps whose latent has z[0] > 1: M must read that off its input
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    rnn = MDNRNN(z_dim=4, action_dim=1, hidden=16, mixtures=2)
    optimiser = torch.optim.Adam(rnn.parameters(), lr=1e-2)
    for _ in range(150):
        z = torch.randn(32, 9, 4, generator=g)
        action = torch.rand(32, 8, 1, generator=g) * 2 - 1
        done = z[:, :-1, 0] > 1.0
        losses = rnn.losses(z[:, :-1], action, z[:, 1:], done, torch.zeros(32, 8))
        optimiser.zero_grad()
        losses["loss"].backward()
        optimiser.step()
    with torch.no_grad():
        z = torch.randn(256, 8, 4, generator=g)
        out, _, _ = rnn(z, torch.zeros(256, 8, 1))
        p_done = torch.sigmoid(out.done_logit)
    ends = z[..., 0] > 1.0
    assert float(p_done[ends].mean()) > 0.8 and float(p_done[~ends].mean()) < 0.1


def test_the_dream_ends_where_m_predicts_termination():
    torch.manual_seed(0)
    rnn = MDNRNN(z_dim=4, action_dim=1, hidden=8, mixtures=2).eval()
    controller = _controller(4, 8)
    with torch.no_grad():
        rnn.done.weight.zero_()
        rnn.reward.weight.zero_()
        rnn.reward.bias.fill_(1.0)  # every dream step earns 1: the return counts the steps
        rnn.done.bias.fill_(-30.0)  # M says "never ends": the dream runs to max_steps
    g = torch.Generator().manual_seed(0)
    never = dream_episode(controller, rnn, np.zeros(4, np.float32), 1.0, g, max_steps=25)
    assert (never.steps, never.ended, never.total) == (25, False, pytest.approx(25.0))
    with torch.no_grad():
        rnn.done.bias.fill_(30.0)  # M says "ends now": the first step ends it
    at_once = dream_episode(controller, rnn, np.zeros(4, np.float32), 1.0, g, max_steps=25)
    assert (at_once.steps, at_once.ended, at_once.total) == (1, True, pytest.approx(1.0))
    with torch.no_grad():
        rnn.done.bias.fill_(0.0)  # p(end) = 1/2 per step: geometric lengths with mean 2
    lengths = [dream_episode(controller, rnn, np.zeros(4, np.float32), 1.0, g, max_steps=50).steps
               for _ in range(400)]
    assert 1.7 < np.mean(lengths) < 2.3
    assert dream_score(controller, rnn, [np.zeros(4, np.float32)], 0, 50, 1.0, g, 50) == pytest.approx(
        np.mean(lengths), abs=0.6)
    with pytest.raises(ValueError, match="no start latents"):
        dream_score(controller, rnn, [], 0, 1, 1.0, g, 5)
