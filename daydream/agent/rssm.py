"""The recurrent state-space model: a deterministic GRU path plus a stochastic latent.

The stochastic part is either categorical (groups x classes, with a uniform mix and
straight-through samples, as DreamerV2/V3) or diagonal Gaussian (PlaNet / Dreamer v1),
chosen by `model.latent`. A state is a dict of tensors: `deter` [..., D], `stoch`
(one-hot [..., S, C] or [..., S]) and the distribution's statistics (`logits`, or
`mean` and `std`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from daydream.agent.nets import ACTIVATIONS, BlockGRU, gumbel_noise, make_norm, onehot_sample_st, unimix_probs
from daydream.config import ModelConfig

State = dict[str, Tensor]


class RSSM(nn.Module):
    def __init__(self, cfg: ModelConfig, embed_dim: int, action_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.categorical = cfg.latent == "categorical"
        self.stoch_shape = (cfg.stoch, cfg.classes) if self.categorical else (cfg.stoch,)
        self.stoch_dim = cfg.stoch * cfg.classes if self.categorical else cfg.stoch
        self.feat_dim = cfg.deter + self.stoch_dim
        stats = self.stoch_dim if self.categorical else 2 * cfg.stoch
        act, norm, hid = ACTIVATIONS[cfg.act], cfg.norm, cfg.hidden

        def dense(inp: int) -> nn.Module:
            return nn.Sequential(nn.Linear(inp, hid, bias=norm == "none"), make_norm(norm, hid), act())

        # The GRU's input. joint (June 2023): one layer on (z, a). split (newest official):
        # one layer each on h, z and a (`dynin`). A block GRU's blocks see only their own
        # slice of h, so with blocks > 1 the joint input also gets the layer on the whole h.
        self.split_input = cfg.dyn_input == "split"
        if self.split_input:
            self.stoch_in, self.action_in = dense(self.stoch_dim), dense(action_dim)
            self.img_in = None
        else:
            self.img_in = dense(self.stoch_dim + action_dim)
        self.deter_in = dense(cfg.deter) if self.split_input or cfg.blocks > 1 else None
        inputs = 1 + (self.deter_in is not None) + self.split_input
        self.gru = BlockGRU(inputs * hid, cfg.deter, cfg.blocks, norm, cfg.act, cfg.dyn_layers, cfg.gate_norm)
        self.prior_net = nn.Sequential(
            *[m for i in range(cfg.prior_layers) for m in dense(cfg.deter if i == 0 else hid)], nn.Linear(hid, stats))
        self.post_net = nn.Sequential(
            nn.Linear(cfg.deter + embed_dim, hid, bias=norm == "none"), make_norm(norm, hid), act(), nn.Linear(hid, stats)
        )
        self.zero_initial = cfg.initial == "zeros"
        self.initial_deter = nn.Parameter(torch.zeros(cfg.deter), requires_grad=not self.zero_initial)

    # -- distributions -------------------------------------------------------------

    def _stats(self, raw: Tensor) -> State:
        if self.categorical:
            return {"logits": raw.reshape(*raw.shape[:-1], *self.stoch_shape)}
        mean, std = raw.chunk(2, -1)
        return {"mean": mean, "std": F.softplus(std) + self.cfg.min_std}

    def _sample(self, stats: State, noise: Tensor | None) -> Tensor:
        if self.categorical:
            return onehot_sample_st(unimix_probs(stats["logits"], self.cfg.unimix), noise)
        if noise is None:
            noise = torch.randn_like(stats["mean"])
        return stats["mean"] + stats["std"] * noise

    def _mode(self, stats: State) -> Tensor:
        if self.categorical:
            probs = unimix_probs(stats["logits"], self.cfg.unimix)
            return F.one_hot(probs.argmax(-1), self.cfg.classes).to(probs.dtype)
        return stats["mean"]

    def sample_noise(self, batch: tuple[int, ...], device: torch.device | str) -> Tensor:
        """The noise one latent sample consumes (Gumbel for categorical, normal for Gaussian)."""
        if self.categorical:
            return gumbel_noise((*batch, *self.stoch_shape), device)
        return torch.randn((*batch, *self.stoch_shape), device=device)

    def kl(self, post: State, prior: State) -> tuple[Tensor, Tensor]:
        """(KL(sg(post) || prior), KL(post || sg(prior))), summed over latent dims."""
        sg = lambda s: {k: v.detach() for k, v in s.items()}  # noqa: E731
        return self._kl(sg(post), prior), self._kl(post, sg(prior))

    def _kl(self, p: State, q: State) -> Tensor:
        if self.categorical:
            lp = torch.log(unimix_probs(p["logits"], self.cfg.unimix))
            lq = torch.log(unimix_probs(q["logits"], self.cfg.unimix))
            return (lp.exp() * (lp - lq)).sum((-2, -1))
        pm, ps, qm, qs = (t.float() for t in (p["mean"], p["std"], q["mean"], q["std"]))
        return (torch.log(qs / ps) + (ps**2 + (pm - qm) ** 2) / (2 * qs**2) - 0.5).sum(-1)

    # -- steps -----------------------------------------------------------------------

    def feat(self, state: State) -> Tensor:
        stoch = state["stoch"].reshape(*state["stoch"].shape[: state["deter"].dim() - 1], -1)
        return torch.cat([state["deter"], stoch.to(state["deter"].dtype)], -1)

    def initial(self, batch: int, device: torch.device | str | None = None) -> State:
        """The state before the first step: learned (tanh of a parameter, prior mode) or all zeros (newest official)."""
        device = device or self.initial_deter.device
        if self.zero_initial:
            deter = torch.zeros(batch, self.cfg.deter, device=device, dtype=self.initial_deter.dtype)
            stats = self._stats(torch.zeros(batch, self.stoch_dim if self.categorical else 2 * self.cfg.stoch,
                                            device=device, dtype=deter.dtype))
            return {"deter": deter, "stoch": torch.zeros(batch, *self.stoch_shape, device=device, dtype=deter.dtype), **stats}
        deter = torch.tanh(self.initial_deter).to(device).expand(batch, -1)
        stats = self._stats(self.prior_net(deter))
        return {"deter": deter, "stoch": self._mode(stats), **stats}

    def _deter_step(self, state: State, action: Tensor) -> Tensor:
        """The deterministic path: (h, z, a) -> h'."""
        stoch = state["stoch"].reshape(*action.shape[:-1], -1)
        deter = state["deter"]
        if self.split_input:
            parts = [self.deter_in(deter), self.stoch_in(stoch), self.action_in(action)]  # type: ignore[misc]
        else:
            parts = [self.img_in(torch.cat([stoch, action], -1))]  # type: ignore[misc]
            if self.deter_in is not None:
                parts.append(self.deter_in(deter))
        x = parts[0] if len(parts) == 1 else torch.cat(parts, -1)
        return self.gru(x, deter)

    def img_step(self, state: State, action: Tensor, noise: Tensor | None = None) -> State:
        """One step of the prior: (h, z, a) -> h' -> p(z' | h')."""
        deter = self._deter_step(state, action)
        stats = self._stats(self.prior_net(deter))
        return {"deter": deter, "stoch": self._sample(stats, noise), **stats}

    def obs_step(
        self, state: State, action: Tensor, embed: Tensor, is_first: Tensor, noise: Tensor | None = None,
        init: State | None = None,
    ) -> State:
        """One filter step, the posterior state; where `is_first` is set the state and action start afresh.

        `init` is the initial state for this batch; pass it in when stepping in a loop.
        """
        keep = (~is_first).to(action.dtype).unsqueeze(-1)
        if init is None:
            init = self.initial(action.shape[0], action.device)
        state = {k: _restart(init[k], v, keep) for k, v in state.items()}
        deter = self._deter_step(state, action * keep)
        stats = self._stats(self.post_net(torch.cat([deter, embed], -1)))
        return {"deter": deter, "stoch": self._sample(stats, noise), **stats}

    def observe(self, embed: Tensor, action: Tensor, is_first: Tensor, state: State | None = None) -> tuple[State, State]:
        """Filter a [B, T] sequence; returns the posterior states and the prior's statistics, stacked on dim 1.

        The prior only enters the KL terms, which need its statistics and not a sample, so it
        is computed once for all steps after the loop instead of inside it (one large matmul
        instead of T small ones: the loop is launch-bound on CPUs and small GPUs alike).
        """
        init = self.initial(embed.shape[0], embed.device)
        state = init if state is None else state
        posts = []
        for t in range(embed.shape[1]):
            state = self.obs_step(state, action[:, t], embed[:, t], is_first[:, t], init=init)
            posts.append(state)
        post = {k: torch.stack([s[k] for s in posts], 1) for k in posts[0]}
        prior = {"deter": post["deter"], **self._stats(self.prior_net(post["deter"]))}
        return post, prior


def _restart(init: Tensor, value: Tensor, keep: Tensor) -> Tensor:
    """`value` where `keep` is 1, `init` where it is 0 (keep: [B, 1]).

    Under autocast the carried state and the initial state can differ in dtype (bf16
    logits from a linear layer vs float32 ones), and torch.lerp needs one dtype for
    all three operands, so they meet in the wider of the two.
    """
    dtype = torch.promote_types(init.dtype, value.dtype)
    init = init if init.dtype == dtype else init.to(dtype)
    value = value if value.dtype == dtype else value.to(dtype)
    keep = keep.reshape(-1, *[1] * (value.dim() - 1))
    return torch.lerp(init, value, keep if keep.dtype == dtype else keep.to(dtype))
