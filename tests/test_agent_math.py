"""Dreamer's maths pinned on hand-computed values."""

import math

import pytest
import torch

from daydream.agent.math import (
    ReturnNormalizer,
    balanced_kl_losses,
    lambda_returns,
    symexp,
    symlog,
    twohot_decode,
    twohot_encode,
)


def test_symlog_symexp_values():
    x = torch.tensor([0.0, 1.0, -9.0, 99.0])
    expected = torch.tensor([0.0, math.log(2.0), -math.log(10.0), math.log(100.0)])
    assert torch.allclose(symlog(x), expected)
    assert torch.allclose(symexp(expected), x, atol=1e-4)
    big = torch.tensor([-1e6, -3.5, 0.25, 1e6])
    assert torch.allclose(symexp(symlog(big)), big, rtol=1e-5)


@pytest.mark.parametrize(
    "x, weights",
    [
        (0.25, [0, 0, 0.75, 0.25, 0]),
        (-1.5, [0.5, 0.5, 0, 0, 0]),
        (1.0, [0, 0, 0, 1, 0]),
        (2.0, [0, 0, 0, 0, 1]),
        (5.0, [0, 0, 0, 0, 1]),      # beyond the last bin: all mass on it
        (-2.0, [1, 0, 0, 0, 0]),
    ],
)
def test_twohot_encode_hand_values(x, weights):
    bins = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])
    out = twohot_encode(torch.tensor([x]), bins)[0]
    assert torch.allclose(out, torch.tensor(weights, dtype=torch.float32))
    assert out.sum().item() == pytest.approx(1.0)


def test_twohot_roundtrip_batched():
    bins = torch.linspace(-20, 20, 255)
    x = torch.tensor([[-7.3, 0.0, 0.01], [3.3, 19.9, -19.99]])
    enc = twohot_encode(x, bins)
    assert enc.shape == (2, 3, 255)
    assert torch.allclose(twohot_decode(enc, bins), x, atol=1e-5)


def test_lambda_returns_hand_values_with_terminal():
    reward = torch.tensor([1.0, 2.0, 3.0])
    cont = torch.tensor([1.0, 1.0, 0.0])   # the last state is terminal
    value = torch.tensor([10.0, 20.0, 30.0])
    ret = lambda_returns(reward, cont, value, discount=0.5, lambda_=0.5)
    # R2 = 3 (terminal: no bootstrap); R1 = 2 + .5*(.5*20 + .5*3) = 7.75; R0 = 1 + .5*(.5*10 + .5*7.75) = 5.4375
    assert torch.allclose(ret, torch.tensor([5.4375, 7.75, 3.0]))


def test_lambda_returns_limits():
    reward = torch.tensor([1.0, 1.0, 1.0])
    cont = torch.ones(3)
    value = torch.tensor([4.0, 5.0, 6.0])
    td0 = lambda_returns(reward, cont, value, discount=0.9, lambda_=0.0)
    assert torch.allclose(td0, reward + 0.9 * value)
    mc = lambda_returns(reward, cont, value, discount=0.9, lambda_=1.0)
    # Monte Carlo with bootstrap from the last value: 1 + .9 + .81 + .729 * 6
    assert mc[0].item() == pytest.approx(1 + 0.9 + 0.81 + 0.729 * 6)


def test_lambda_returns_batched_time_major():
    reward = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 1.0]])
    cont = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    value = torch.tensor([[10.0, 0.0], [20.0, 0.0], [30.0, 2.0]])
    ret = lambda_returns(reward, cont, value, 0.5, 0.5)
    assert torch.allclose(ret[:, 0], torch.tensor([5.4375, 7.75, 3.0]))
    # second column: R2 = 1 + .5*2 = 2; R1 = 0 + .5*(.5*0 + .5*2) = .5; R0 = .5*(.5*0 + .5*.5) = .125
    assert torch.allclose(ret[:, 1], torch.tensor([0.125, 0.5, 2.0]))


def test_kl_balancing_with_free_bits():
    kl = torch.tensor([0.5, 1.5, 3.0], requires_grad=True)
    total, dyn, rep = balanced_kl_losses(kl, kl, free=1.0, dyn_scale=0.5, rep_scale=0.1)
    assert dyn.item() == pytest.approx(5.5 / 3)
    assert rep.item() == pytest.approx(5.5 / 3)
    assert total.item() == pytest.approx(0.6 * 5.5 / 3)
    total.backward()
    # below the free bits there is no gradient; above it each element gets (0.5 + 0.1) / 3
    assert torch.allclose(kl.grad, torch.tensor([0.0, 0.2, 0.2]))


def test_kl_balancing_routes_gradients():
    from daydream.agent.rssm import RSSM
    from daydream.config import load_config

    cfg = load_config(None, ["size=tiny", "model.unimix=0.0", "model.stoch=1", "model.classes=2"]).model
    rssm = RSSM(cfg, embed_dim=4, action_dim=1)
    post_logits = torch.log(torch.tensor([[[0.5, 0.5]]])).requires_grad_()
    prior_logits = torch.log(torch.tensor([[[0.25, 0.75]]])).requires_grad_()
    kl_dyn, kl_rep = rssm.kl({"logits": post_logits}, {"logits": prior_logits})
    expected = 0.5 * math.log(2.0) + 0.5 * math.log(0.5 / 0.75)
    assert kl_dyn.item() == pytest.approx(expected, abs=1e-6)
    assert kl_rep.item() == pytest.approx(expected, abs=1e-6)
    kl_dyn.backward()
    assert post_logits.grad is None and prior_logits.grad is not None  # dyn trains only the prior
    prior_logits.grad = None
    kl_rep.backward()
    assert post_logits.grad is not None and prior_logits.grad is None  # rep trains only the posterior


def test_return_normalizer_percentile_ema():
    norm = ReturnNormalizer(decay=0.5, low=5.0, high=95.0, floor=1.0)
    returns = torch.linspace(0, 100, 101)  # 5th percentile 5, 95th percentile 95
    norm.update(returns)
    assert norm.low.item() == pytest.approx(2.5)
    assert norm.high.item() == pytest.approx(47.5)
    assert norm.scale().item() == pytest.approx(45.0)
    norm.update(returns)
    assert norm.scale().item() == pytest.approx(67.5)


def test_return_normalizer_floor():
    norm = ReturnNormalizer(decay=0.0, low=5.0, high=95.0, floor=1.0)
    norm.update(torch.linspace(0, 0.1, 11))
    assert norm.scale().item() == 1.0  # small returns are not blown up


def test_twohot_log_prob_equals_the_dense_two_hot_form():
    from daydream.agent.math import symlog_bins, twohot_encode, twohot_log_prob

    bins = symlog_bins(255, 20.0)
    # including values out of range and on the bins
    x = torch.cat([torch.randn(50) * 30, torch.tensor([-25.0, 25.0, 0.0]), bins[[0, 3, -1]]])
    log_probs = torch.log_softmax(torch.randn(x.numel(), 255), -1)
    dense = (twohot_encode(x, bins) * log_probs).sum(-1)
    torch.testing.assert_close(twohot_log_prob(log_probs, x, bins), dense)


def test_symlog_and_symexp_bins_are_antisymmetric_and_decode_uniform_to_zero():
    from daydream.agent.math import symexp_bins, symlog_bins

    for bins in (symlog_bins(255, 20.0), symexp_bins(255, 20.0), symlog_bins(6, 3.0)):
        assert torch.equal(bins, -bins.flip(0))
        assert twohot_decode(torch.full((3, len(bins)), 1.0 / len(bins)), bins).abs().max() == 0.0
    assert symlog_bins(255, 20.0)[127] == 0.0 and symlog_bins(255, 20.0)[-1] == 20.0
    assert symexp_bins(255, 20.0)[-1] == pytest.approx(math.expm1(20.0), rel=1e-6)
    probs = torch.softmax(torch.randn(4, 255), -1)
    bins = symlog_bins(255, 20.0)
    torch.testing.assert_close(twohot_decode(probs, bins), probs @ bins)


def test_replay_lambda_returns_hand_values():
    from daydream.agent.math import replay_lambda_returns

    # one sequence of 4 steps; rewards arrive with steps 1..3; step 2 is the last of its episode
    reward = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    boot = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    terminal = torch.tensor([[False, False, False, False]])
    last = torch.tensor([[False, False, True, False]])
    g, lam = 0.5, 0.8
    r3 = boot[0, 3]
    r2 = 2.0 + g * boot[0, 2]  # last at step 2: no lambda-mixing into step 3
    r1 = 1.0 + g * ((1 - lam) * boot[0, 1] + lam * r2)
    out = replay_lambda_returns(reward, terminal, last, boot, g, lam)
    torch.testing.assert_close(out, torch.tensor([[float(r1), float(r2),
                                                   3.0 + g * ((1 - lam) * 40.0 + lam * float(r3))]]))
    terminal = torch.tensor([[False, True, False, False]])
    out = replay_lambda_returns(reward, terminal, last, boot, g, lam)
    assert out[0, 0] == pytest.approx(1.0)  # a terminal step has no value after it


def test_laprop_matches_the_official_update_rule():
    from daydream.agent.laprop import LaProp

    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(5))
    opt = LaProp([param], lr=0.1, betas=(0.9, 0.999), eps=1e-20, warmup=2)
    ref, nu, mu = param.detach().clone(), torch.zeros(5), torch.zeros(5)
    for step in range(1, 5):
        grad = torch.randn(5)
        param.grad = grad.clone()
        opt.step()
        nu = 0.999 * nu + 0.001 * grad**2
        update = grad / ((nu / (1 - 0.999**step)).sqrt() + 1e-20)
        mu = 0.9 * mu + 0.1 * update
        lr = 0.1 * min(1.0, (step - 1) / 2)  # linear warm-up from 0, evaluated before the count increments
        ref = ref - lr * mu / (1 - 0.9**step)
        torch.testing.assert_close(param.detach(), ref)
