"""The world model: encoder, RSSM, decoder, reward and continue heads, and its loss."""

from __future__ import annotations

from torch import Tensor, nn

from daydream.agent.heads import ContinueHead, TwoHotHead
from daydream.agent.math import balanced_kl_losses
from daydream.agent.nets import Decoder, Encoder, ObsKeys
from daydream.agent.rssm import RSSM, State
from daydream.config import ModelConfig


class WorldModel(nn.Module):
    def __init__(self, cfg: ModelConfig, keys: ObsKeys, action_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg
        self.encoder = Encoder(keys, c.units, c.mlp_layers, c.cnn_depth, c.cnn_min_res, c.norm, c.act)
        self.rssm = RSSM(cfg, self.encoder.out_dim, action_dim)
        feat = self.rssm.feat_dim
        self.decoder = Decoder(keys, feat, c.units, c.mlp_layers, c.cnn_depth, c.cnn_min_res, c.norm, c.act)
        self.reward = TwoHotHead(feat, c.units, c.head_layers, c.norm, c.act, c.bins, c.bin_range, c.twohot_space)
        self.cont = ContinueHead(feat, c.units, c.head_layers, c.norm, c.act)

    def loss(self, data: dict[str, Tensor]) -> tuple[Tensor, State, dict[str, Tensor]]:
        """World-model loss on a [B, T] batch; returns (loss, posterior states, metrics)."""
        cfg = self.cfg
        embed = self.encoder(data)
        post, prior = self.rssm.observe(embed, data["action"], data["is_first"])
        feat = self.rssm.feat(post)
        recon = self.decoder.loss(feat, data)
        reward_logits = self.reward.logits(feat)
        reward_loss = -self.reward.log_prob(reward_logits, data["reward"])
        cont_loss = self.cont.loss(self.cont.logits(feat), 1.0 - data["is_terminal"].float())
        kl_dyn, kl_rep = self.rssm.kl(post, prior)
        kl_loss, dyn, rep = balanced_kl_losses(kl_dyn, kl_rep, cfg.free_nats, cfg.loss_scales["dyn"],
                                               cfg.loss_scales["rep"])
        recon_loss = sum(recon.values())
        loss = (
            cfg.loss_scales["recon"] * recon_loss.mean()  # type: ignore[union-attr]
            + cfg.loss_scales["reward"] * reward_loss.mean()
            + cfg.loss_scales["cont"] * cont_loss.mean()
            + kl_loss
        )
        metrics = {
            "model_loss": loss.detach(),
            "reward_loss": reward_loss.mean().detach(),
            "cont_loss": cont_loss.mean().detach(),
            "dyn_loss": dyn.detach(),
            "rep_loss": rep.detach(),
            "kl": kl_dyn.mean().detach(),
            **{f"recon_loss/{k}": v.mean().detach() for k, v in recon.items()},
        }
        return loss, post, metrics
