"""PlaNet's behaviour (Hafner et al. 2019): act by model-predictive control over the learned RSSM.

At every agent step `LatentPlanner.act` searches action sequences with the cross-entropy
method (`planner.cem`) from the filtered (posterior) state, scoring each by the reward
head summed along its imagined prior rollout (`planner.latent_returns`); it executes the
first action of the refit mean, plus Gaussian exploration noise while collecting, and
plans afresh at the next step. Nothing here is trained: the world model learns as for
Dreamer and the agent skips the actor-critic updates (`behavior.kind: planet`).

The rollouts' latent samples use one noise draw per planning step, shared by all CEM
iterations (common random numbers: every iteration's candidates meet the same model
noise). The robot's numpy planner (`daydream.export.onnx_planner`) does the same, which
also saves it drawing `iterations` times the normals, a cost its latency budget notices.

`noise` (for parity with that planner) fixes all randomness of one step:
`plan_action` [iterations, candidates, horizon, action] (standard normal, CEM's draws),
`plan_latent` [candidates, horizon, *stoch] (the latent noise of `RSSM.sample_noise`) and
`action` [batch, action] (standard normal, scaled by `explore_noise`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from daydream.agent.planner import CEMResult, cem, latent_returns
from daydream.agent.rssm import State
from daydream.agent.world_model import WorldModel
from daydream.config import PlannerConfig


class LatentPlanner:
    """CEM over action sequences in `wm`'s latent space, scored by its reward head."""

    def __init__(self, wm: WorldModel, cfg: PlannerConfig, action_dim: int) -> None:
        if not 0 < cfg.top_k <= cfg.candidates:
            raise ValueError(f"behavior.planner needs 0 < top_k <= candidates, got top_k={cfg.top_k}, "
                             f"candidates={cfg.candidates}")
        if cfg.horizon <= 0 or cfg.iterations <= 0 or cfg.explore_noise < 0:
            raise ValueError("behavior.planner needs a positive horizon and number of iterations and a "
                             f"non-negative explore_noise, got {cfg.horizon}, {cfg.iterations}, {cfg.explore_noise}")
        self.wm, self.cfg, self.action_dim = wm, cfg, action_dim
        self.sign = 1.0 if cfg.objective == "maximize" else -1.0

    def reward(self, state: State) -> Tensor:
        """The reward head's expected reward of a state batch [N]."""
        return self.wm.reward.mean(self.wm.reward.logits(self.wm.rssm.feat(state)))

    def plan(self, start: State, noise: dict[str, Tensor] | None = None) -> CEMResult:
        """One planning step from `start` (batch 1: deter and stoch); `best_return` is the predicted return."""
        cfg, noise = self.cfg, noise or {}
        device = start["deter"].device
        latent = noise.get("plan_latent")
        if latent is None:
            latent = self.wm.rssm.sample_noise((cfg.candidates, cfg.horizon), device)
        start = {"deter": start["deter"], "stoch": start["stoch"]}
        returns = latent_returns(self.wm.rssm.img_step, self.reward, start, latent.to(device))
        result = cem(lambda actions: self.sign * returns(actions), cfg.horizon, self.action_dim, cfg.candidates,
                     cfg.top_k, cfg.iterations, noise=noise.get("plan_action"), device=device)
        return CEMResult(result.mean, result.std, self.sign * result.best_return)

    def act(self, post: State, mode: str = "explore", noise: dict[str, Tensor] | None = None) -> Tensor:
        """Actions [B, A] for a batch of filtered states: each element planned on its own."""
        noise = noise or {}
        batch = post["deter"].shape[0]
        first = torch.stack([self.plan({k: post[k][b:b + 1] for k in ("deter", "stoch")}, noise).action
                             for b in range(batch)])
        if mode == "explore" and self.cfg.explore_noise > 0:
            eps = noise.get("action")
            eps = torch.randn_like(first) if eps is None else eps.to(first.device, first.dtype)
            first = first + self.cfg.explore_noise * eps
        return first.clamp(-1.0, 1.0)
