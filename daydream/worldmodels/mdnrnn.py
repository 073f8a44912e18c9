"""M: the MDN-RNN of World Models, an LSTM that predicts a mixture of Gaussians over the next latent.

Input at step t is [z_t, a_t]; the LSTM's output gives, for every latent dimension, the
log mixture weights, means and log standard deviations of `mixtures` Gaussians over
z_{t+1}, plus the logit of the episode ending and the reward (both used when the
controller is trained inside the dream). The temperature τ of `sample` scales the mixture
weights' logits by 1/τ and the standard deviations by √τ: τ > 1 makes the dream more
uncertain, and so harder to exploit.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclasses.dataclass
class MDNOutput:
    logpi: torch.Tensor     # [..., z, K] log mixture weights (normalised over K)
    mean: torch.Tensor      # [..., z, K]
    logstd: torch.Tensor    # [..., z, K]
    done_logit: torch.Tensor  # [...]
    reward: torch.Tensor    # [...]


def mdn_log_prob(logpi: torch.Tensor, mean: torch.Tensor, logstd: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """log p(target) under independent per-dimension Gaussian mixtures, summed over dimensions.

    logpi, mean, logstd: [..., z, K] (logpi normalised over K); target: [..., z]. Returns [...].
    """
    x = target.unsqueeze(-1)
    log_normal = -0.5 * ((x - mean) / logstd.exp()).pow(2) - logstd - _LOG_SQRT_2PI
    return torch.logsumexp(logpi + log_normal, dim=-1).sum(-1)


class MDNRNN(nn.Module):
    def __init__(self, z_dim: int = 32, action_dim: int = 3, hidden: int = 256, mixtures: int = 5) -> None:
        super().__init__()
        self.z_dim, self.action_dim, self.hidden, self.mixtures = z_dim, action_dim, hidden, mixtures
        self.lstm = nn.LSTM(z_dim + action_dim, hidden, batch_first=True)
        self.mdn = nn.Linear(hidden, 3 * z_dim * mixtures)
        self.done = nn.Linear(hidden, 1)
        self.reward = nn.Linear(hidden, 1)

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(1, batch, self.hidden, device=self.mdn.weight.device)
        return zeros, zeros.clone()

    def heads(self, h: torch.Tensor) -> MDNOutput:
        shape = (*h.shape[:-1], self.z_dim, self.mixtures)
        logits, mean, logstd = self.mdn(h).split(self.z_dim * self.mixtures, dim=-1)
        return MDNOutput(F.log_softmax(logits.reshape(shape), dim=-1), mean.reshape(shape),
                         logstd.reshape(shape).clamp(-7.0, 3.0), self.done(h).squeeze(-1), self.reward(h).squeeze(-1))

    def forward(self, z: torch.Tensor, action: torch.Tensor,
                state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[MDNOutput, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """z [B, T, z], action [B, T, a] -> predictions for steps 1..T, LSTM outputs [B, T, hidden], state."""
        if z.shape[-1] != self.z_dim or action.shape[-1] != self.action_dim:
            raise ValueError(f"MDNRNN takes z [..., {self.z_dim}] and actions [..., {self.action_dim}], got "
                             f"{tuple(z.shape)} and {tuple(action.shape)}")
        h, state = self.lstm(torch.cat([z, action], -1), state)
        return self.heads(h), h, state

    def losses(self, z: torch.Tensor, action: torch.Tensor, next_z: torch.Tensor, done: torch.Tensor,
               reward: torch.Tensor) -> dict[str, torch.Tensor]:
        """Negative log-likelihood of next_z per latent dimension, done BCE and reward MSE, each a scalar."""
        out, _, _ = self(z, action)
        nll = -mdn_log_prob(out.logpi, out.mean, out.logstd, next_z).mean() / self.z_dim
        done_loss = F.binary_cross_entropy_with_logits(out.done_logit, done.float())
        reward_loss = (out.reward - reward).pow(2).mean()
        return {"loss": nll + done_loss + reward_loss, "nll": nll, "done": done_loss, "reward": reward_loss}

    @staticmethod
    def sample(out: MDNOutput, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw z_{t+1} [..., z] from the predicted mixture at temperature τ."""
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        logpi = F.log_softmax(out.logpi / temperature, dim=-1)
        k = torch.multinomial(logpi.exp().reshape(-1, logpi.shape[-1]), 1,
                              generator=generator).reshape(logpi.shape[:-1])
        mean = out.mean.gather(-1, k.unsqueeze(-1)).squeeze(-1)
        std = out.logstd.gather(-1, k.unsqueeze(-1)).squeeze(-1).exp() * math.sqrt(temperature)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        return mean + std * noise
