"""Actor-critic learned in imagination (DreamerV3).

From every posterior state of a training batch the actor imagines `horizon` steps
in the world model. lambda-returns from predicted rewards, continue flags and critic
values train the critic (two-hot, regularised toward a slow EMA copy of itself) and
the actor (returns scaled by the EMA of their 5th-95th percentile range, plus an
entropy bonus), by backpropagation through the dynamics for continuous actions and
REINFORCE for discrete ones.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch
from torch import Tensor, nn

from daydream.agent.heads import Actor, TwoHotHead
from daydream.agent.math import ReturnNormalizer, lambda_returns, replay_lambda_returns
from daydream.agent.nets import frozen
from daydream.agent.rssm import State
from daydream.agent.world_model import WorldModel
from daydream.config import BehaviorConfig, ModelConfig


class Behavior(nn.Module):
    def __init__(self, cfg: BehaviorConfig, model_cfg: ModelConfig, feat_dim: int, action_dim: int,
                 discrete: bool) -> None:
        super().__init__()
        self.cfg = cfg
        m = model_cfg
        self.actor = Actor(feat_dim, action_dim, discrete, m.units, cfg.actor_layers, m.norm, m.act,
                           cfg.action_min_std, cfg.action_max_std, m.unimix, cfg.actor_outscale)
        self.critic = TwoHotHead(feat_dim, m.units, cfg.critic_layers, m.norm, m.act, m.bins, m.bin_range,
                                 m.twohot_space)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.retnorm = ReturnNormalizer(cfg.retnorm_decay, cfg.retnorm_low, cfg.retnorm_high, cfg.retnorm_floor)
        grad = cfg.actor_grad if cfg.actor_grad != "auto" else ("reinforce" if discrete else "dynamics")
        self.dynamics_grad = grad == "dynamics"

    def imagine(self, wm: WorldModel, start: State) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Roll the actor forward in the model: features [H+1, N, F], actions [H, N, A], actor params.

        The actor sees its input detached (as both official versions): gradients reach an
        imagined state only through the actions that led to it, not back through the
        actor's own input. For REINFORCE the returned actions are the unclipped samples,
        where the log-probability belongs; the model steps with the clipped action. No
        gradient flows through a REINFORCE rollout at all, so it runs without autograd and
        the actor's parameters are taken again in one pass over all imagined states (the
        same values the rollout sampled from).
        """
        if self.dynamics_grad:
            return self._rollout(wm, start)
        with torch.no_grad():
            feats, actions, _ = self._rollout(wm, start)
        return feats, actions, self.actor.dist_params(feats[:-1])

    def compile_step(self, **options: object) -> None:
        """torch.compile `imagine_step` (the actor and the model's prior step as one graph), once for its shapes.

        The rollout's loop stays Python (compiling all `horizon` steps unrolled took minutes);
        one step compiles in seconds and turns its ~50 kernels and autograd nodes per step into
        a few fused ones: the tiny CPU update 1.2x faster than with the RSSM's step compiled alone.

        Compiled without donated buffers (backward passes that free the forward's saved tensors as
        they go): the actor's backward runs through these steps and keeps the graph for the
        critic's loss (`actor_loss`), which torch refuses for a backward with donated buffers.
        """
        compiled = torch.compile(self.imagine_step, dynamic=False, **options)

        def step(*args: Any) -> tuple[State, Tensor, Tensor, dict[str, Tensor]]:
            # read when the first call compiles; later calls run the compiled code
            with torch._functorch.config.patch(donated_buffer=False):
                return compiled(*args)

        self.imagine_step = step  # type: ignore[method-assign]

    def imagine_step(self, wm: WorldModel, state: State, feat: Tensor, act_noise: Tensor,
                     latent_noise: Tensor) -> tuple[State, Tensor, Tensor, dict[str, Tensor]]:
        """One imagined step from `state` (whose features are `feat`): (next carried state, its features,
        the action kept for the loss, the actor's parameters). Tensors in, tensors out, noise given:
        `torch.compile` takes it whole (`compile_step`), and samples as eager code does. The prior's
        statistics stay inside: nothing after the step needs them."""
        p = self.actor.dist_params(feat.detach())
        raw = self.actor.sample_raw(p, act_noise)
        action = self.actor.clip(raw)
        if not self.dynamics_grad:
            raw, action = raw.detach(), action.detach()
        prior = wm.rssm.img_step(state, action.to(state["deter"].dtype), latent_noise)
        state = {"deter": prior["deter"], "stoch": prior["stoch"]}
        return state, wm.rssm.feat(state), action if self.dynamics_grad else raw, p

    def _rollout(self, wm: WorldModel, start: State) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        # The start is a constant (as `actor_loss` passes it) with a gradient slot exactly when later states have
        # one: a compiled `imagine_step` guards on its inputs' requires_grad, and the first step alone would
        # otherwise be compiled a second time
        grad = torch.is_grad_enabled()
        state = {k: start[k].detach().requires_grad_(grad) for k in ("deter", "stoch")}
        feats, actions, params = [wm.rssm.feat(state)], [], []
        horizon, batch = self.cfg.horizon, start["deter"].shape[0]
        # all steps' noise in one draw each: fewer small ops in the loop, and compiled code samples as eager does
        act_noise = self.actor.sample_noise((horizon, batch), start["deter"].device)
        latent_noise = wm.rssm.sample_noise((horizon, batch), start["deter"].device)
        for a_noise, l_noise in zip(act_noise.unbind(0), latent_noise.unbind(0)):
            state, feat, action, p = self.imagine_step(wm, state, feats[-1].detach(), a_noise, l_noise)
            feats.append(feat)
            actions.append(action)
            params.append(p)
        stacked = {k: torch.stack([p[k] for p in params]) for k in params[0]}
        return torch.stack(feats), torch.stack(actions), stacked

    def losses(self, wm: WorldModel, post: State, is_terminal: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """(actor loss, critic loss, metrics) from imagination started at every posterior state."""
        actor_loss, targets, metrics = self.actor_loss(wm, post, is_terminal)
        critic_loss, critic_metrics = self.critic_loss(targets)
        return actor_loss, critic_loss, {**metrics, **critic_metrics}

    def actor_loss(self, wm: WorldModel, post: State,
                   is_terminal: Tensor) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """(actor loss, the critic's detached training targets, metrics) from imagination.

        The critic's loss is a separate step (`critic_loss`) with a backward of its own. The
        critic runs once over the imagined states: the actor differentiates its values with
        respect to the states, the critic's loss (the targets' `logits`) with respect to its own
        parameters only, so the actor's step must keep the graph (`retain_graph`).
        """
        cfg = self.cfg
        start = {k: v.detach().reshape(-1, *v.shape[2:]) for k, v in post.items()}
        # The model is the actor's fixed simulator: gradients pass through its steps and heads to the actions, never
        # into its weights. Frozen, its weights are constants to autograd, which a compiled step's backward needs to
        # know: it computes the gradients of all its inputs that take one (the tiny update 1.02-1.05x faster so).
        with frozen(wm):
            feats, actions, params = self.imagine(wm, start)
            # REINFORCE: rewards enter only detached advantages and targets, so no graph for them
            with contextlib.nullcontext() if self.dynamics_grad else torch.no_grad():
                reward = wm.reward.mean(wm.reward.logits(feats[1:]))
            # continuation enters returns and weights as a constant: the June 2023 code takes the
            # head's mode; no gradient flows into (or through) the continue head from the actor
            with torch.no_grad():
                cont = torch.sigmoid(wm.cont.logits(feats[1:]))
        first_cont = 1.0 - is_terminal.float().reshape(1, -1)
        critic_logits = self.critic.logits(feats)
        value = self.critic.mean(critic_logits)
        returns = lambda_returns(reward, cont, value[1:], cfg.discount, cfg.lambda_)
        weight = torch.cumprod(torch.cat([first_cont, cfg.discount * cont[:-1]]), 0).detach()

        self.retnorm.update(returns)
        scale = self.retnorm.scale()
        if self.dynamics_grad:
            objective = returns / scale
        else:
            advantage = ((returns - value[:-1]) / scale).detach()
            objective = self.actor.log_prob(params, actions) * advantage
        entropy = self.actor.entropy(params)
        actor_loss = -(weight * (objective + cfg.entropy * entropy)).mean()

        targets = {"feat": feats[:-1].detach(), "returns": returns.detach(), "weight": weight,
                   "logits": critic_logits[:-1]}
        if cfg.repval_scale:  # the replay-value loss bootstraps on the imagined return of every start
            targets["start_return"] = returns[0].detach().reshape(post["deter"].shape[:2])
        metrics = {
            "actor_loss": actor_loss.detach(),
            "actor_entropy": entropy.mean().detach(),
            "imag_return": returns.mean().detach(),
            "imag_reward": reward.mean().detach(),
            "value": value.mean().detach(),
            "return_scale": scale.detach(),
        }
        if not self.actor.discrete:
            metrics["action_std"] = params["std"].mean().detach()
        return actor_loss, targets, metrics

    def critic_loss(self, targets: dict[str, Tensor],
                    replay: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The critic's two-hot loss toward the lambda-returns, regularised toward the slow critic.

        With `behavior.repval_scale` and `replay` ({feat, reward, is_terminal, is_last} of the
        [B, T] batch), the critic also fits lambda-returns along the replayed sequences,
        bootstrapped on the imagined returns (the newest official replay-value loss).
        """
        cfg = self.cfg
        critic_loss = self._fit(targets["feat"], targets["returns"], targets["weight"], targets.get("logits"))
        metrics = {}
        if cfg.repval_scale and replay is not None:
            returns = replay_lambda_returns(replay["reward"].float(), replay["is_terminal"], replay["is_last"],
                                            targets["start_return"], cfg.discount, cfg.lambda_)
            weight = 1.0 - replay["is_last"][:, :-1].float()
            repval = self._fit(replay["feat"][:, :-1].detach(), returns, weight)
            metrics["repval_loss"] = repval.detach()
            critic_loss = critic_loss + cfg.repval_scale * repval
        metrics["critic_loss"] = critic_loss.detach()
        return critic_loss, metrics

    def _fit(self, feat: Tensor, returns: Tensor, weight: Tensor, logits: Tensor | None = None) -> Tensor:
        """The critic's weighted two-hot loss at `feat` (its `logits` there, where already computed)."""
        logits = self.critic.logits(feat) if logits is None else logits
        slow = self.slow_critic.mean(self.slow_critic.logits(feat)).detach()
        log_probs = torch.log_softmax(logits, -1)
        nll = -self.critic.log_prob_of(log_probs, returns)
        reg = -self.critic.log_prob_of(log_probs, slow)
        return (weight * (nll + self.cfg.slow_critic_reg * reg)).mean()

    @torch.no_grad()
    def update_slow_critic(self) -> None:
        fraction = self.cfg.slow_critic_fraction
        for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters()):
            slow.lerp_(fast, fraction)
