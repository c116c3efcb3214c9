"""The autoencoder's losses, chosen for CT: nothing downloaded, every term about what a reader sees.

- L1 on intensities (in the window's units; times ``(hi - lo) / 2`` it is HU): a robust fidelity term
  that, unlike a squared error, does not settle for the blurred mean of what it cannot place exactly;
- L1 on the image gradients (horizontal and vertical differences): edges and fine texture;
- L1 on the log amplitude spectrum (a relative error per frequency): the power at every spatial
  frequency, so that the noise and texture a CT shows are kept rather than smoothed away (a blur lowers
  the high frequencies; this term sees it even where the L1 barely moves). It can be lowered by texture
  that has the right power at the wrong place as well: its weight trades MAE against sharpness;
- the KL divergence of the latent from a standard normal, weighted very little: it keeps the latent
  well-scaled for diffusion without costing detail.
"""

from __future__ import annotations

import torch


def gradient_l1(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean |d/dx (x_hat - x)| + |d/dy (x_hat - x)| of images ``(B, 1, H, W)``."""
    d = x_hat - x
    return (d[..., :, 1:] - d[..., :, :-1]).abs().mean() + (d[..., 1:, :] - d[..., :-1, :]).abs().mean()


SPECTRUM_EPS = 1e-3  # amplitude floor, window units (about 1.5 HU): well below CT noise (~0.01 per frequency)


def spectrum_l1(x_hat: torch.Tensor, x: torch.Tensor, eps: float = SPECTRUM_EPS) -> torch.Tensor:
    """Mean |log(eps + |F x_hat|) - log(eps + |F x|)| over the 2D spectra of images ``(B, 1, H, W)``
    (orthonormal FFT). A relative error per frequency: every frequency weighs alike, so the faint high
    frequencies (noise, fine texture: amplitudes near 0.01 in window units) count as much as the strong
    low ones. ``log(1 + |F|)`` would not do that: at amplitudes of 0.01 it is linear, and a blur costs
    it almost nothing."""
    fa = torch.fft.rfft2(x_hat.float(), norm="ortho").abs()
    fb = torch.fft.rfft2(x.float(), norm="ortho").abs()
    return (torch.log(fa + eps) - torch.log(fb + eps)).abs().mean()


def kl_divergence(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Mean KL(N(mu, sigma²) || N(0, 1)) per latent element."""
    var = sigma.pow(2)
    return 0.5 * (mu.pow(2) + var - 1.0 - torch.log(var.clamp_min(1e-12))).mean()


def autoencoder_loss(x_hat: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
                     config) -> tuple[torch.Tensor, dict]:
    """The weighted sum (weights from :class:`~tracect.autoencoder.config.AETrainConfig`) and each term."""
    terms = {"l1": (x_hat - x).abs().mean(), "gradient": gradient_l1(x_hat, x), "spectrum": spectrum_l1(x_hat, x),
             "kl": kl_divergence(mu, sigma)}
    loss = (config.l1_weight * terms["l1"] + config.gradient_weight * terms["gradient"]
            + config.spectrum_weight * terms["spectrum"] + config.kl_weight * terms["kl"])
    return loss, {k: float(v.detach()) for k, v in terms.items()}
