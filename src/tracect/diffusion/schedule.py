"""Noise schedules and parametrisations on continuous time t in [0, 1].

Every schedule writes the noisy sample as ``x_t = alpha(t) * x0 + sigma(t) * eps``:

- ``cosine`` / ``linear`` (DDPM, Ho et al. 2020; cosine from Nichol & Dhariwal 2021): ``alpha = sqrt(abar)``,
  ``sigma = sqrt(1 - abar)``;
- rectified flow (Liu et al. 2022), selected by the ``flow`` parametrisation: ``alpha = 1 - t``,
  ``sigma = t``.

Parametrisations (what the network predicts): ``eps`` (the noise), ``v`` (Salimans & Ho 2022:
``v = alpha * eps - sigma * x0``) and ``flow`` (the velocity ``eps - x0``). The network receives
``t * train_timesteps`` as its timestep.
"""

from __future__ import annotations

import math

import torch

from tracect.config import DiffusionConfig

ABAR_MIN = 1e-5  # keeps x0 = (x_t - sigma eps) / alpha finite at t = 1


class Schedule:
    def __init__(self, config: DiffusionConfig):
        self.config = config
        self.parametrization = config.parametrization
        self.name = "rectified-flow" if config.parametrization == "flow" else config.schedule
        self.timesteps = config.train_timesteps

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """``abar(t)`` of the DDPM schedules, ``t`` in [0, 1] -> same shape."""
        if self.config.schedule == "cosine":
            s = 0.008
            f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
        else:  # linear betas 1e-4..0.02 over T steps, integrated: log abar = -int beta
            T = self.timesteps
            b0, b1 = 1e-4 * 1000 / T, 0.02 * 1000 / T
            f = torch.exp(-(b0 * t + 0.5 * (b1 - b0) * t**2) * T)
        return f.clamp(ABAR_MIN, 1.0)

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha(t), sigma(t))``, same shape as ``t``."""
        if self.parametrization == "flow":
            return 1.0 - t, t
        abar = self.alpha_bar(t)
        return abar.sqrt(), (1.0 - abar).sqrt()

    @staticmethod
    def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.reshape(v.shape + (1,) * (like.ndim - v.ndim))

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x_t`` for ``x0``, ``eps`` of shape ``(B, ...)`` and ``t`` of shape ``(B,)``."""
        a, s = (self._bcast(v, x0) for v in self.alpha_sigma(t))
        return a * x0 + s * eps

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network should output for this ``(x0, eps, t)``."""
        if self.parametrization == "eps":
            return eps
        if self.parametrization == "flow":
            return eps - x0
        a, s = (self._bcast(v, x0) for v in self.alpha_sigma(t))
        return a * eps - s * x0

    def split(self, x_t: torch.Tensor, pred: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Network output -> ``(x0_hat, eps_hat)``."""
        a, s = (self._bcast(v, x_t) for v in self.alpha_sigma(t))
        if self.parametrization == "eps":
            return (x_t - s * pred) / a, pred
        if self.parametrization == "flow":
            return x_t - s * pred, x_t + a * pred
        return a * x_t - s * pred, s * x_t + a * pred

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        """A clean estimate held to the data's range (``diffusion.clip_sample``; latents: unchanged)."""
        c = self.config.clip_sample
        return x if c is None else x.clamp(-c, c)

    def ddim_step(self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM step (Song et al. 2021, eq. 12 with eta = 0) from time ``t`` to ``s < t``.

        ``x0`` is the clean estimate at ``t`` (already clamped to the data range); the noise estimate is
        recomputed from it, ``eps = (x_t - alpha_t x0) / sigma_t``, so that the two stay consistent, and
        ``x_s = alpha_s x0 + sigma_s eps``. For rectified flow this is exactly an Euler step of the
        velocity ODE. ``t`` and ``s`` are ``(B,)`` for a batch ``x_t`` ``(B, ...)``, or 0-d for a whole
        array at one time.
        """
        a_t, s_t = (self._bcast(v, x_t) for v in self.alpha_sigma(t))
        a_s, s_s = (self._bcast(v, x_t) for v in self.alpha_sigma(s))
        eps = (x_t - a_t * x0) / s_t.clamp_min(1e-6)
        return a_s * x0 + s_s * eps

    def network_time(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.timesteps

    def sample_t(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Training times, uniform in (0, 1], ``(n,)`` float32 on the CPU."""
        return 1.0 - torch.rand(n, generator=generator)

    def sample_grid(self, steps: int) -> torch.Tensor:
        """Times from 1 (noise) to 0 (data), ``(steps + 1,)``: uniform in t."""
        return torch.linspace(1.0, 0.0, steps + 1)
