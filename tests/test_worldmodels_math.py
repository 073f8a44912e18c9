"""World Models' maths: the VAE's KL against the closed form, the MDN's log-likelihood against a
hand-computed mixture, sampling at a temperature, the linear controller, and CMA-ES improving a
toy objective through the same search the controller uses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from daydream.worldmodels.controller import LinearController, cma_search
from daydream.worldmodels.mdnrnn import MDNRNN, MDNOutput, mdn_log_prob
from daydream.worldmodels.vae import ConvVAE, gaussian_kl, vae_step


def test_vae_kl_matches_the_closed_form_of_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(5, 32, generator=g), torch.randn(5, 32, generator=g)
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mean, (0.5 * logvar).exp()),
                                                 torch.distributions.Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(gaussian_kl(mean, logvar), expected)
    assert torch.allclose(gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3))


def test_vae_shapes_and_a_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    vae = ConvVAE(z_dim=8)
    frames = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    mean, logvar = vae.encode(frames)
    assert mean.shape == logvar.shape == (2, 8)
    recon = vae.decode(mean)
    recon = recon.detach()
    assert recon.shape == (2, 64, 64, 3) and float(recon.min()) >= 0 and float(recon.max()) <= 1
    optimiser = torch.optim.Adam(vae.parameters(), lr=1e-3)
    first = vae_step(vae, optimiser, frames)["recon"]
    for _ in range(6):
        last = vae_step(vae, optimiser, frames)["recon"]
    assert last < first
    with pytest.raises(ValueError, match="64x64x3"):
        vae.encode(torch.zeros(2, 32, 32, 3))


def test_mdn_log_likelihood_matches_a_hand_computed_mixture():
    # one latent dimension, two components: 0.3 N(0, 1) + 0.7 N(2, 0.5^2), at x = 1
    logpi = torch.log(torch.tensor([[0.3, 0.7]]))
    mean = torch.tensor([[0.0, 2.0]])
    logstd = torch.log(torch.tensor([[1.0, 0.5]]))
    x = torch.tensor([1.0])

    def normal(x, m, s):
        return math.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    expected = math.log(0.3 * normal(1.0, 0.0, 1.0) + 0.7 * normal(1.0, 2.0, 0.5))
    assert float(mdn_log_prob(logpi, mean, logstd, x)) == pytest.approx(expected, rel=1e-6)
    # independent dimensions add up
    two = mdn_log_prob(logpi.repeat(2, 1), mean.repeat(2, 1), logstd.repeat(2, 1), torch.tensor([1.0, 1.0]))
    assert float(two) == pytest.approx(2 * expected, rel=1e-6)


def test_mdnrnn_learns_a_deterministic_next_latent():
    torch.manual_seed(0)
    rnn = MDNRNN(z_dim=2, action_dim=1, hidden=32, mixtures=3)
    z = torch.randn(8, 10, 2)
    action = torch.randn(8, 10, 1)
    next_z = z + action  # what M must predict
    done, reward = torch.zeros(8, 10), action.squeeze(-1)
    optimiser = torch.optim.Adam(rnn.parameters(), lr=1e-2)
    first = float(rnn.losses(z, action, next_z, done, reward)["nll"])
    for _ in range(60):
        losses = rnn.losses(z, action, next_z, done, reward)
        optimiser.zero_grad()
        losses["loss"].backward()
        optimiser.step()
    assert float(losses["nll"]) < first - 1.0


def test_temperature_widens_the_samples():
    out = MDNOutput(torch.log(torch.full((4000, 1, 2), 0.5)), torch.tensor([-1.0, 1.0]).expand(4000, 1, 2),
                    torch.full((4000, 1, 2), math.log(0.1)), torch.zeros(4000), torch.zeros(4000))
    g = torch.Generator().manual_seed(0)
    cold, hot = MDNRNN.sample(out, 1.0, g), MDNRNN.sample(out, 4.0, g)
    # both modes are drawn; within a mode the spread grows with sqrt(temperature)
    assert 0.4 < float((cold > 0).float().mean()) < 0.6
    def spread(s: torch.Tensor) -> float:
        return float((s.abs() - 1.0).std())

    assert spread(hot) == pytest.approx(2 * spread(cold), rel=0.15)
    with pytest.raises(ValueError, match="temperature"):
        MDNRNN.sample(out, 0.0)


def test_linear_controller_maps_into_the_carracing_box():
    low, high = [-1.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    n = LinearController.size(288, 3)
    assert n == 867  # the paper's CarRacing controller
    params = np.random.default_rng(0).normal(size=n) * 5
    action = LinearController.from_flat(params, 288, low, high)(np.random.default_rng(1).normal(size=288))
    assert action.shape == (3,) and -1 <= action[0] <= 1 and 0 <= action[1] <= 1 and 0 <= action[2] <= 1
    with pytest.raises(ValueError, match="867 parameters"):
        LinearController.from_flat(params[:-1], 288, low, high)
    with pytest.raises(ValueError, match="normalise"):
        LinearController.from_flat(params, 288, [-2.0, 0.0, 0.0], high)


def test_cma_search_improves_a_toy_objective_through_the_controller():
    # the controller must output target actions for fixed features: the same path as a rollout's score
    rng = np.random.default_rng(0)
    features = rng.normal(size=(16, 4))
    target = np.tanh(features @ rng.normal(size=(4, 2)))

    def score(params: np.ndarray) -> float:
        controller = LinearController.from_flat(params, 4, [-1.0, -1.0], [1.0, 1.0])
        return -float(np.mean((controller(features) - target) ** 2))

    dim = LinearController.size(4, 2)
    result = cma_search(score, dim, generations=30, popsize=16, sigma0=0.5, seed=0)
    assert len(result.history) == 30
    assert result.best_score > score(np.zeros(dim)) + 0.1 * abs(score(np.zeros(dim)))
    assert result.history[-1]["mean"] > result.history[0]["mean"]
    assert result.best_score == pytest.approx(score(result.best_params))
