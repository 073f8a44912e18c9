"""The small pieces of Dreamer's maths, as pure functions and one stateful normaliser.

symlog/symexp squash targets of unknown scale; two-hot encodes scalars over bins
spaced in symlog space; lambda-returns mix imagined rewards with critic values;
the KL with free bits balances the dynamics and representation losses; the
percentile normaliser scales returns for the actor. Each is pinned by unit tests
on hand-computed values (tests/test_agent_math.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def symlog(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.expm1(torch.abs(x))


def symlog_bins(num: int, limit: float) -> Tensor:
    """`num` bin centres spread evenly over [-limit, limit] in symlog space.

    Built from one half and its negation, so the bins are exactly antisymmetric (and an
    odd count has an exact 0): a uniform distribution over them decodes to exactly 0.
    """
    half = torch.linspace(-limit, 0.0, (num + 1) // 2)
    if num % 2:
        return torch.cat([half, -half[:-1].flip(0)])
    return torch.cat([half, -half.flip(0)])


def symexp_bins(num: int, limit: float) -> Tensor:
    """Bins for two-hot in raw space (newest official): `symexp` of the symlog-spaced bins."""
    return symexp(symlog_bins(num, limit))


def twohot_encode(x: Tensor, bins: Tensor) -> Tensor:
    """Weights over `bins` (last dim) whose mean is `x`: the two nearest bins share the mass.

    `x` and `bins` live in the same (symlog) space; values beyond the outer bins put all
    their mass on the outer bin.
    """
    x = x.clamp(bins[0], bins[-1])
    above = torch.searchsorted(bins, x.contiguous().unsqueeze(-1), right=True).squeeze(-1)
    above = above.clamp(1, len(bins) - 1)
    below = above - 1
    lo, hi = bins[below], bins[above]
    w_hi = ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
    w_lo = 1.0 - w_hi
    out = torch.zeros(*x.shape, len(bins), dtype=x.dtype, device=x.device)
    out.scatter_(-1, below.unsqueeze(-1), w_lo.unsqueeze(-1))
    out.scatter_add_(-1, above.unsqueeze(-1), w_hi.unsqueeze(-1))
    return out


def twohot_decode(probs: Tensor, bins: Tensor) -> Tensor:
    """The expected bin value under `probs` (last dim over bins), in the bins' space.

    Uniform probabilities over antisymmetric bins decode to exactly 0 (so a zero-initialised
    head predicts exactly 0 rather than float rounding noise, as the official mirror-pair sum
    ensures): the first bin's probability, held constant, is taken from every entry before
    the product. As `sum(bins) = 0` that changes neither the value nor the gradient (`bins`),
    and every entry is exactly 0 for uniform `probs`. Cheaper than the mirror pairs
    (`(p - flip(p)) @ b / 2`): a flip of the [.., 255] probabilities and its backward were
    about 7 % of a tiny CPU update.
    """
    return (probs - probs[..., :1].detach()) @ bins.to(probs.dtype)


def twohot_log_prob(log_probs: Tensor, x: Tensor, bins: Tensor) -> Tensor:
    """`(twohot_encode(x, bins) * log_probs).sum(-1)` without building the dense two-hot:
    the two bins that carry the weight are gathered (the critic's and reward's losses run
    this over every imagined state, where the dense form dominated the CPU update)."""
    x = x.clamp(bins[0], bins[-1])
    above = torch.searchsorted(bins, x.contiguous().unsqueeze(-1), right=True).clamp(1, len(bins) - 1)
    below = above - 1
    lo, hi = bins[below].squeeze(-1), bins[above].squeeze(-1)
    w_hi = ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
    picked = log_probs.gather(-1, torch.cat([below, above], -1))
    return (1.0 - w_hi) * picked[..., 0] + w_hi * picked[..., 1]


def lambda_returns(reward: Tensor, cont: Tensor, value: Tensor, discount: float, lambda_: float) -> Tensor:
    """TD(lambda) returns along dim 0 for a trajectory of states 1..H.

    `reward[t]`, `cont[t]` and `value[t]` belong to the state reached after step t
    (t = 0..H-1): the reward received on arriving there, whether the episode goes on
    from it (0 at a terminal), and the critic's value of it. Returns R[0..H-1] with
        R[t] = reward[t] + discount * cont[t] * ((1 - lambda) * value[t] + lambda * R[t+1])
    and the bootstrap R[H] = value[H-1], so the last return is reward + discount * cont * value.
    """
    returns = []
    last = value[-1]
    for t in reversed(range(reward.shape[0])):
        last = reward[t] + discount * cont[t] * ((1 - lambda_) * value[t] + lambda_ * last)
        returns.append(last)
    return torch.stack(returns[::-1])


def replay_lambda_returns(reward: Tensor, terminal: Tensor, last: Tensor, boot: Tensor, discount: float,
                          lambda_: float) -> Tensor:
    """lambda-returns along replayed [B, T] sequences (the newest official replay-value loss).

    `reward[:, t]`, `terminal[:, t]` and `last[:, t]` are the replay's: the reward on arriving at
    step t, whether t ends the episode (no value after it) and whether the sequence's episode
    stops there (terminal or cut off: no lambda-mixing across it). `boot[:, t]` is the value
    estimate of step t, here the imagined lambda-return from it. Returns R[:, 0..T-2] with
        R[t] = r[t+1] + discount * (1 - term[t+1]) * ((1 - c) * boot[t+1] + c * R[t+1]),
        c = lambda * (1 - last[t+1]),  R[T-1] = boot[T-1].
    """
    live = (1.0 - terminal[:, 1:].float()) * discount
    cont = (1.0 - last[:, 1:].float()) * lambda_
    interm = reward[:, 1:] + (1.0 - cont) * live * boot[:, 1:]
    returns = [boot[:, -1]]
    for t in reversed(range(live.shape[1])):
        returns.append(interm[:, t] + live[:, t] * cont[:, t] * returns[-1])
    return torch.stack(returns[::-1][:-1], 1)


def kl_free_bits(kl: Tensor, free: float) -> Tensor:
    """Elementwise free bits: KL values below `free` nats cost a constant (no gradient)."""
    return torch.clamp(kl, min=free)


def balanced_kl_losses(kl_dyn: Tensor, kl_rep: Tensor, free: float, dyn_scale: float,
                       rep_scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """DreamerV3's KL balancing: returns (total, dyn, rep) losses, each averaged.

    `kl_dyn` is KL(sg(posterior) || prior) and trains the prior; `kl_rep` is
    KL(posterior || sg(prior)) and trains the representation. Numerically both are the
    same KL; they differ only in where the gradient goes.
    """
    dyn = kl_free_bits(kl_dyn, free).mean()
    rep = kl_free_bits(kl_rep, free).mean()
    return dyn_scale * dyn + rep_scale * rep, dyn, rep


class ReturnNormalizer(nn.Module):
    """EMA of the low and high percentiles of returns; scale = max(floor, high - low).

    The actor divides advantages by this scale, so returns of any magnitude give
    gradients of similar size while small returns (below the floor) are not blown up.
    """

    def __init__(self, decay: float = 0.99, low: float = 5.0, high: float = 95.0, floor: float = 1.0) -> None:
        super().__init__()
        self.decay, self.low_q, self.high_q, self.floor = decay, low / 100.0, high / 100.0, floor
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        # The quantile levels live on the module's device: building them per update with
        # torch.tensor(..., device=cuda) was a blocking host-to-device copy (a host sync).
        self.register_buffer("levels", torch.tensor([self.low_q, self.high_q]), persistent=False)

    @torch.no_grad()
    def update(self, returns: Tensor) -> None:
        flat = returns.detach().float().flatten()
        quantiles = torch.quantile(flat, self.levels.to(flat.device))
        self.low.mul_(self.decay).add_((1 - self.decay) * quantiles[0])
        self.high.mul_(self.decay).add_((1 - self.decay) * quantiles[1])

    def scale(self) -> Tensor:
        return torch.clamp(self.high - self.low, min=self.floor)
