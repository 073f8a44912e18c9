"""V: the convolutional VAE of World Models, 64×64×3 frames to a 32-dimensional Gaussian latent.

Shapes follow the paper's appendix: four 4×4 stride-2 convolutions (32, 64, 128, 256
channels) to a 2×2×256 code, dense layers to the latent's mean and log-variance, and four
stride-2 transposed convolutions (5, 5, 6, 6 kernels) back to 64×64×3. The loss is the
summed squared pixel error plus the KL divergence to N(0, I), floored at `kl_tolerance`
nats per latent dimension as in the reference implementation (a KL below it is not
pushed down further, so the latent keeps information).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over the last axis, in closed form."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


@dataclasses.dataclass(frozen=True)
class VAELosses:
    total: torch.Tensor
    recon: torch.Tensor  # summed squared error per frame, batch mean
    kl: torch.Tensor     # per frame, batch mean, before the tolerance floor


class ConvVAE(nn.Module):
    """Frames [B, 64, 64, 3] uint8 (or floats in [0, 1]) to latents [B, z]."""

    def __init__(self, z_dim: int = 32, kl_tolerance: float = 0.5) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.kl_tolerance = kl_tolerance
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 128, 4, stride=2), nn.ReLU(),
            nn.Conv2d(128, 256, 4, stride=2), nn.ReLU(),
            nn.Flatten(),
        )
        self.mean = nn.Linear(2 * 2 * 256, z_dim)
        self.logvar = nn.Linear(2 * 2 * 256, z_dim)
        self.expand = nn.Linear(z_dim, 1024)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 6, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 6, stride=2), nn.Sigmoid(),
        )

    @staticmethod
    def to_input(frames: torch.Tensor) -> torch.Tensor:
        """[B, 64, 64, 3] uint8 or [0, 1] floats -> [B, 3, 64, 64] floats in [0, 1]."""
        if frames.shape[-3:] != (64, 64, 3):
            raise ValueError(f"ConvVAE takes 64x64x3 frames (channels last), got shape {tuple(frames.shape)}; "
                             "resize observations to 64x64 (env.size)")
        x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
        return x.permute(0, 3, 1, 2)

    def encode(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | frame)."""
        h = self.encoder(self.to_input(frames))
        return self.mean(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [B, z] -> frames [B, 64, 64, 3] in [0, 1]."""
        x = self.decoder(self.expand(z)[:, :, None, None])
        return x.permute(0, 2, 3, 1)

    def sample(self, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mean + torch.randn_like(mean) * (0.5 * logvar).exp()

    def losses(self, frames: torch.Tensor) -> VAELosses:
        mean, logvar = self.encode(frames)
        recon = self.decode(self.sample(mean, logvar))
        target = self.to_input(frames).permute(0, 2, 3, 1)
        recon_loss = (recon - target).pow(2).sum(dim=(1, 2, 3)).mean()
        kl = gaussian_kl(mean, logvar)
        floored = torch.clamp(kl, min=self.kl_tolerance * self.z_dim).mean()
        return VAELosses(recon_loss + floored, recon_loss, kl.mean())


def vae_step(vae: ConvVAE, optimiser: torch.optim.Optimizer, frames: torch.Tensor) -> dict[str, float]:
    """One gradient step on a batch of frames; the losses as floats."""
    losses = vae.losses(frames)
    optimiser.zero_grad(set_to_none=True)
    losses.total.backward()
    optimiser.step()
    return {"loss": float(losses.total.detach()), "recon": float(losses.recon.detach()),
            "kl": float(losses.kl.detach())}


__all__ = ["ConvVAE", "VAELosses", "gaussian_kl", "vae_step"]
