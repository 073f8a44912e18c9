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
            nn.Linear(cfg.deter + embed_dim, hid, bias=norm == "none"), make_norm(norm, hid), act(),
            nn.Linear(hid, stats)
        )
        self.zero_initial = cfg.initial == "zeros"
        self.initial_deter = nn.Parameter(torch.zeros(cfg.deter), requires_grad=not self.zero_initial)

    def compile_steps(self, **options: object) -> None:
        """torch.compile the recurrent step functions the learner's loops call (`filter_step`,
        `img_step`), each once for its shapes and reused at every step.

        The loops stay Python: compiling them whole unrolls every step into one graph, which
        did not finish compiling in minutes (issue 13); the step functions compile in seconds
        and cut each step's dozens of kernels and autograd nodes to a few fused ones. Noise
        is drawn outside (one draw per sequence), so compiled and eager steps sample alike.
        """
        self.filter_step = torch.compile(self.filter_step, dynamic=False, **options)  # type: ignore[method-assign]
        self.img_step = torch.compile(self.img_step, dynamic=False, **options)  # type: ignore[method-assign]

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
            stoch = torch.zeros(batch, *self.stoch_shape, device=device, dtype=deter.dtype)
            return {"deter": deter, "stoch": stoch, **stats}
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

    def observe(self, embed: Tensor, action: Tensor, is_first: Tensor, state: State | None = None,
                noise: Tensor | None = None) -> tuple[State, State]:
        """Filter a [B, T] sequence; returns the posterior states and the prior's statistics, stacked on dim 1.

        The same maths as `obs_step` in a loop, with every part that does not depend on the
        carried state taken out of the loop and done once on whole [B, T] tensors (the loop
        is launch-bound on CPUs and GPUs alike): the reset masks, the masked actions and
        their input layer, the embedding's share of the posterior's first layer, and the
        sampling noise. The prior only enters the KL terms, which need its statistics and
        not a sample, so it is computed once for all steps after the loop. `noise` [B, T, ...]
        fixes the latent samples' noise (`sample_noise`); by default it is drawn here.
        """
        batch, length = embed.shape[:2]
        init = self.initial(batch, embed.device)
        if state is None:
            # a copy of the initial state with a gradient slot, as every later step's state has: a compiled
            # `filter_step` guards on which inputs are one tensor and on their requires_grad, and the first
            # step alone would otherwise be compiled a second time
            grad = torch.is_grad_enabled()
            state = {k: init[k].clone().requires_grad_(grad) for k in ("deter", "stoch")}
        keep = (~is_first).to(action.dtype).unsqueeze(-1)  # [B, T, 1]
        act_in = self._action_input(action * keep)  # [B, T, ...]: the GRU input's action part
        first = self.post_net[0]
        emb_in = F.linear(embed, first.weight[:, self.cfg.deter:], first.bias)  # the posterior layer's embed part
        noise = self.sample_noise((batch, length), embed.device) if noise is None else noise
        deter, stoch, raw = self.filter_loop(
            state["deter"], state["stoch"], init["deter"], init["stoch"], keep.transpose(0, 1),
            act_in.transpose(0, 1), emb_in.transpose(0, 1), noise.transpose(0, 1))
        post = {"deter": deter, "stoch": stoch, **self._stats(raw)}
        prior = {"deter": deter, **self._stats(self.prior_net(deter))}
        return post, prior

    def filter_loop(self, deter: Tensor, stoch: Tensor, init_deter: Tensor, init_stoch: Tensor, keep: Tensor,
                    act_in: Tensor, emb_in: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The filter's recurrence over time-major inputs [T, B, ...]; returns (deter, stoch, raw
        posterior statistics), batch-major [B, T, ...]. Tensors in, tensors out: `torch.compile`
        takes it whole (`Agent` does so with `compile: true`)."""
        deters, stochs, raws = [], [], []
        # unbind, not [t]: indexing a tensor that needs a gradient costs a full-size zero-filled
        # gradient per step in the backward pass (quadratic in T); unbind's backward is one stack
        for k, a, e, n in zip(keep.unbind(0), act_in.unbind(0), emb_in.unbind(0), noise.unbind(0)):
            deter, stoch, raw = self.filter_step(deter, stoch, init_deter, init_stoch, k, a, e, n)
            deters.append(deter)
            stochs.append(stoch)
            raws.append(raw)
        return torch.stack(deters, 1), torch.stack(stochs, 1), torch.stack(raws, 1)

    def filter_step(self, deter: Tensor, stoch: Tensor, init_deter: Tensor, init_stoch: Tensor, keep: Tensor,
                    act_in: Tensor, emb_in: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One step of `filter_loop` (tensors in, tensors out; compiled alone where the whole loop is too slow to
        compile)."""
        deter, stoch = _restart(init_deter, deter, keep), _restart(init_stoch, stoch, keep)
        deter = self.gru(self._gru_input(deter, stoch, act_in), deter)
        first = self.post_net[0]
        raw = _after_first(self.post_net, F.linear(deter, first.weight[:, : self.cfg.deter]) + emb_in)
        return deter, self._sample(self._stats(raw), noise), raw

    def _action_input(self, action: Tensor) -> Tensor:
        """The part of the GRU input that depends on the action alone (precomputable for a whole sequence)."""
        if self.split_input:
            return self.action_in(action)  # type: ignore[misc]
        first = self.img_in[0]  # type: ignore[index]
        return F.linear(action, first.weight[:, self.stoch_dim:], first.bias)

    def _gru_input(self, deter: Tensor, stoch: Tensor, act_in: Tensor) -> Tensor:
        """The GRU input from the state and the action's precomputed part (`_action_input`)."""
        stoch = stoch.reshape(*stoch.shape[: deter.dim() - 1], -1)
        if self.split_input:
            parts = [self.deter_in(deter), self.stoch_in(stoch), act_in]  # type: ignore[misc]
        else:
            first = self.img_in[0]  # type: ignore[index]
            parts = [_after_first(self.img_in, F.linear(stoch, first.weight[:, : self.stoch_dim]) + act_in)]  # type: ignore[arg-type]
            if self.deter_in is not None:
                parts.append(self.deter_in(deter))
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1)


def _after_first(seq: nn.Sequential, x: Tensor) -> Tensor:
    """`seq[1:](x)` without building a new Sequential at every step."""
    for i, module in enumerate(seq):
        if i:
            x = module(x)
    return x


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
