"""The sampler: DDIM (Song et al. 2021, eq. 12 with eta = 0) on a window with known frames.

One loop for all schedules: with ``x_t = alpha x0 + sigma eps`` a deterministic DDIM step is
``x_s = alpha_s * x0_hat + sigma_s * eps_hat``; for rectified flow this is exactly an Euler step of
the velocity ODE. Classifier-free guidance (Ho & Salimans 2022) mixes the report-conditioned and the
unconditioned prediction: ``pred = pred_null + w * (pred_report - pred_null)``.

Known frames (the overlapping-frame strategy) are held at their given clean values: at every step the
network sees them as conditioning, and their noisy channel is re-noised from the clean value.
Randomness comes only from one ``torch.Generator`` per volume, drawn on the CPU, so a result does not
depend on batch size or device.
"""

from __future__ import annotations

from typing import Callable

import torch

from tracect.diffusion.schedule import Schedule

# denoise(x_t (B, K, H, W), t (B,), use_report (bool)) -> network output (B, K, H, W)
Denoise = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]


def cpu_randn(shape, generators: list[torch.Generator], device, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise ``(B, ...)``, row ``b`` from ``generators[b]`` (on the CPU)."""
    return torch.stack([torch.randn(shape[1:], generator=g) for g in generators]).to(device, dtype)


@torch.no_grad()
def ddim_sample(denoise: Denoise, schedule: Schedule, shape: tuple[int, ...],
                generators: list[torch.Generator], steps: int, guidance: float = 1.0,
                known: torch.Tensor | None = None, known_values: torch.Tensor | None = None,
                device: str | torch.device = "cpu", callback=None) -> torch.Tensor:
    """Generate windows of shape ``(B, K, H, W)`` in [-1, 1].

    ``known`` ``(B, K)`` bool marks frames given in ``known_values`` ``(B, K, H, W)``; those frames
    are returned unchanged. ``generators`` has one generator per batch row.
    """
    B = shape[0]
    grid = schedule.sample_grid(steps)
    x = cpu_randn(shape, generators, device)
    if known is not None:
        keep = known.to(device).reshape(B, -1, *([1] * (len(shape) - 2))).float()
    for i in range(steps):
        t, s = grid[i], grid[i + 1]
        tt = torch.full((B,), float(t), device=device)
        if known is not None:
            a_t, s_t = schedule.alpha_sigma(tt[:1])
            renoised = a_t * known_values + s_t * cpu_randn(shape, generators, device)
            x = keep * renoised + (1 - keep) * x
        pred = denoise(x, tt, True)
        if guidance != 1.0:
            pred_null = denoise(x, tt, False)
            pred = pred_null + guidance * (pred - pred_null)
        x0, eps = schedule.split(x, pred, tt)
        x0 = x0.clamp(-1.0, 1.0)
        a_t, s_t = (v.reshape(B, *([1] * (len(shape) - 1))) for v in schedule.alpha_sigma(tt))
        eps = (x - a_t * x0) / s_t.clamp_min(1e-6)  # consistent with the clamped x0
        a_s, s_s = schedule.alpha_sigma(torch.full((B,), float(s), device=device))
        a_s, s_s = (v.reshape(B, *([1] * (len(shape) - 1))) for v in (a_s, s_s))
        x = a_s * x0 + s_s * eps
        if callback is not None:
            callback(i, x0)
    if known is not None:
        x = keep * known_values + (1 - keep) * x
    return x.clamp(-1.0, 1.0)
