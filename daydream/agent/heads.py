"""Output heads: symlog two-hot regression (reward, critic), Bernoulli continue flag,
and the actor's action distribution (bounded normal or categorical).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from daydream.agent.math import symexp, symexp_bins, symlog, symlog_bins, twohot_decode, twohot_log_prob
from daydream.agent.nets import MLP, gumbel_noise, onehot_sample_st, scaled_init, unimix_probs, zero_init


# Two-hot logits are padded to a multiple of this many columns (see `TwoHotHead`).
LOGIT_ALIGN = 8
# A padding logit: exp underflows to exactly 0 beside any real logit in float32 and bfloat16
# (float16 rounds it to -inf, which no consumer of the logits multiplies: they gather real bins).
PAD_LOGIT = -1e9


class TwoHotHead(nn.Module):
    """Predicts a scalar as a categorical over bins with a two-hot target (DreamerV3).

    space=symlog (June 2023): bins evenly spaced in symlog space, targets symlog'd and
    the mean symexp'd back. space=raw (newest official): bins at symexp-spaced raw values,
    two-hot of the raw target, the mean taken in raw space.
    The output layer starts at zero, so the first predictions are exactly 0 and do
    not inject large random returns into the critic's targets.

    The logits are padded to a multiple of `LOGIT_ALIGN` columns with slots no input can
    choose (weight 0, bias `PAD_LOGIT`: probability exactly 0, worth 0 when decoded), so
    255 bins give 256 logits: the same distribution and gradients, but every [N, 255]
    product and row-wise softmax ran 1.4-2.2x slower than at 256 here (MKL on AVX2), and
    GPU tensor cores want multiples of 8. `bins` are the real bins (the two-hot targets'),
    `decode_bins` the padded ones (the mean's). The padding holds no parameters.
    """

    def __init__(self, inp: int, units: int, layers: int, norm: str, act: str, bins: int, limit: float,
                 space: str = "symlog") -> None:
        super().__init__()
        if space not in ("symlog", "raw"):
            raise ValueError(f"unknown two-hot space '{space}'; use symlog or raw")
        self.mlp = MLP(inp, units, layers, norm, act)
        self.out = zero_init(nn.Linear(self.mlp.out_dim, bins))
        self.raw = space == "raw"
        values = symexp_bins(bins, limit) if self.raw else symlog_bins(bins, limit)
        pad = -bins % LOGIT_ALIGN
        self.register_buffer("bins", values, persistent=False)
        self.register_buffer("decode_bins", F.pad(values, (0, pad)), persistent=False)
        self.register_buffer("pad_weight", torch.zeros(pad, self.mlp.out_dim), persistent=False)
        self.register_buffer("pad_bias", torch.full((pad,), PAD_LOGIT), persistent=False)

    def logits(self, feat: Tensor) -> Tensor:
        """[..., bins rounded up to `LOGIT_ALIGN`]; the padding columns are `PAD_LOGIT`."""
        hidden = self.mlp(feat)
        if not len(self.pad_bias):
            return self.out(hidden).float()
        weight = torch.cat([self.out.weight, self.pad_weight.to(self.out.weight.dtype)])
        bias = torch.cat([self.out.bias, self.pad_bias.to(self.out.bias.dtype)])
        return F.linear(hidden, weight, bias).float()

    def mean(self, logits: Tensor) -> Tensor:
        decoded = twohot_decode(F.softmax(logits, -1), self.decode_bins)
        return decoded if self.raw else symexp(decoded)

    def log_prob(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.log_prob_of(F.log_softmax(logits, -1), target)

    def log_prob_of(self, log_probs: Tensor, target: Tensor) -> Tensor:
        """`log_prob` from `log_softmax(logits)`: several targets can share one normalisation."""
        target = target.float()
        return twohot_log_prob(log_probs, target if self.raw else symlog(target), self.bins)


class ContinueHead(nn.Module):
    """Bernoulli probability that the episode continues after this state."""

    def __init__(self, inp: int, units: int, layers: int, norm: str, act: str) -> None:
        super().__init__()
        self.mlp = MLP(inp, units, layers, norm, act)
        self.out = nn.Linear(self.mlp.out_dim, 1)

    def logits(self, feat: Tensor) -> Tensor:
        return self.out(self.mlp(feat)).squeeze(-1).float()

    @staticmethod
    def loss(logits: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")


class Actor(nn.Module):
    """The policy head. Continuous: a normal with tanh mean and bounded std whose samples
    are clipped to [-1, 1]. Discrete: a categorical with a uniform mix, sampled one-hot.

    `dist_params` returns the raw parameters; sampling takes its noise as an argument
    where given, so that the exported ONNX graph computes exactly the same action.
    """

    def __init__(self, inp: int, action_dim: int, discrete: bool, units: int, layers: int, norm: str, act: str,
                 min_std: float, max_std: float, unimix: float, outscale: float = 1.0) -> None:
        super().__init__()
        self.discrete, self.action_dim = discrete, action_dim
        self.min_std, self.max_std, self.unimix = min_std, max_std, unimix
        self.mlp = MLP(inp, units, layers, norm, act)
        # the official output layer: the same fan-average init as every layer, times
        # `outscale` (1.0 in June 2023, 0.01 in the newest version: a near-uniform start)
        self.out = scaled_init(nn.Linear(self.mlp.out_dim, action_dim if discrete else 2 * action_dim), outscale)

    def dist_params(self, feat: Tensor) -> dict[str, Tensor]:
        raw = self.out(self.mlp(feat)).float()
        if self.discrete:
            return {"probs": unimix_probs(raw, self.unimix)}
        mean, std = raw.chunk(2, -1)
        std = (self.max_std - self.min_std) * torch.sigmoid(std + 2.0) + self.min_std
        return {"mean": torch.tanh(mean), "std": std}

    def sample(self, params: dict[str, Tensor], noise: Tensor | None = None) -> Tensor:
        """A differentiable sample (reparameterised or straight-through), clipped to [-1, 1]."""
        return self.clip(self.sample_raw(params, noise))

    def sample_noise(self, batch: tuple[int, ...], device: torch.device | str) -> Tensor:
        """The noise one action sample consumes (Gumbel for discrete, normal for continuous actions)."""
        if self.discrete:
            return gumbel_noise((*batch, self.action_dim), device)
        return torch.randn((*batch, self.action_dim), device=device)

    def sample_raw(self, params: dict[str, Tensor], noise: Tensor | None = None) -> Tensor:
        """The sample before clipping (continuous; REINFORCE takes its log-probability here)."""
        if self.discrete:
            return onehot_sample_st(params["probs"], noise)
        if noise is None:
            noise = torch.randn_like(params["mean"])
        return params["mean"] + params["std"] * noise

    def clip(self, raw: Tensor) -> Tensor:
        """Continuous samples clipped to the action box with straight-through gradients."""
        if self.discrete:
            return raw
        return raw + (raw.clamp(-1, 1) - raw).detach()

    def mode(self, params: dict[str, Tensor]) -> Tensor:
        if self.discrete:
            return F.one_hot(params["probs"].argmax(-1), self.action_dim).float()
        return params["mean"]

    def log_prob(self, params: dict[str, Tensor], action: Tensor) -> Tensor:
        if self.discrete:
            return (action.detach() * torch.log(params["probs"])).sum(-1)
        z = (action.detach() - params["mean"]) / params["std"]
        return (-0.5 * z**2 - torch.log(params["std"]) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self, params: dict[str, Tensor]) -> Tensor:
        if self.discrete:
            p = params["probs"]
            return -(p * torch.log(p)).sum(-1)
        return (0.5 + 0.5 * math.log(2 * math.pi) + torch.log(params["std"])).sum(-1)
