"""The slice autoencoder: a CT slice in HU <-> a small latent image the frame model diffuses in.

Architecture (:class:`~tracect.autoencoder.config.AutoencoderConfig`): pixel unshuffle (a lossless
rearrangement of each ``u x u`` block of pixels into ``u²`` channels, so no convolution runs at full
resolution and no fine detail is averaged away before the network sees it), MONAI's ``AutoencoderKL``
on the unshuffled image, and pixel shuffle back. The latent is the KL autoencoder's mean; sampling
from ``N(mu, sigma)`` happens only in training, from a given generator.

Shapes: slices ``(B, 1, S, S)`` in [-1, 1] (HU through ``hu_window``) <-> latents ``(B, C, S/f, S/f)``
with ``f`` = :attr:`~tracect.autoencoder.config.AutoencoderConfig.factor`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tracect.autoencoder.config import AutoencoderConfig
from tracect.data.grid import unit_to_hu


class SliceAutoencoder(nn.Module):
    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        from monai.networks.nets import AutoencoderKL

        self.config = c = config
        u2 = c.unshuffle ** 2
        self.net = AutoencoderKL(
            spatial_dims=2, in_channels=u2, out_channels=u2, channels=c.channels,
            num_res_blocks=(c.num_res_blocks,) * len(c.channels), attention_levels=(False,) * len(c.channels),
            latent_channels=c.latent_channels, norm_num_groups=c.norm_num_groups,
            with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Slices ``(B, 1, S, S)`` in [-1, 1] -> ``(mu, sigma)``, each ``(B, C, S/f, S/f)``."""
        return self.net.encode(F.pixel_unshuffle(x, self.config.unshuffle))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, C, s, s)`` -> slices ``(B, 1, s f, s f)`` (not clamped)."""
        return F.pixel_shuffle(self.net.decode(z), self.config.unshuffle)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Reconstruction from a sampled latent -> ``(x_hat, mu, sigma)`` (``generator`` on the CPU: the
        sample's noise)."""
        mu, sigma = self.encode(x)
        noise = torch.randn(mu.shape, generator=generator).to(mu.device, mu.dtype)
        return self.decode(mu + sigma * noise), mu, sigma


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def encode_all(ae: SliceAutoencoder, unit: np.ndarray, batch: int = 8, device="cpu") -> np.ndarray:
    """Latent means of slices ``(N, S, S)`` in [-1, 1], ``batch`` at a time -> ``(N, C, s, s)`` float32."""
    out = []
    for i in range(0, len(unit), batch):
        x = torch.from_numpy(np.asarray(unit[i:i + batch], np.float32))[:, None].to(device)
        out.append(ae.encode(x)[0].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


@torch.no_grad()
def decode_all(ae: SliceAutoencoder, latents: np.ndarray, batch: int = 8, device="cpu", scale: float = 1.0,
               hu_window: tuple[float, float] | None = None) -> np.ndarray:
    """Slices ``(N, S, S)`` from latents ``(N, C, s, s)`` (divided by ``scale`` first), ``batch`` at a
    time, written into one float32 array: in [-1, 1], or in HU through ``hu_window``. Nothing of the
    volume's size is made but that array, so the memory beyond it does not grow with ``N``."""
    f = ae.config.factor
    out = np.empty((len(latents), latents.shape[-2] * f, latents.shape[-1] * f), np.float32)
    for i in range(0, len(latents), batch):
        z = torch.from_numpy(np.asarray(latents[i:i + batch], np.float32)).to(device) / scale
        x = ae.decode(z).clamp(-1, 1)[:, 0].float().cpu().numpy()
        out[i:i + batch] = unit_to_hu(x, hu_window) if hu_window is not None else x
    return out
