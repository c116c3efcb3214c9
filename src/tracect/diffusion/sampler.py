"""The sampler: DDIM (Song et al. 2021, eq. 12 with eta = 0) on a batch of windows with known frames.

One loop for all schedules: with ``x_t = alpha x0 + sigma eps`` the network's prediction gives
``(x0_hat, eps_hat)`` (:meth:`Schedule.split`), ``x0_hat`` is clamped to the data range and
:meth:`Schedule.ddim_step` moves to the next time. ``denoise`` returns the prediction to use, with
classifier-free guidance already applied (:func:`tracect.model.conditioning.make_denoise`).

Known frames (the overlapping-frame strategy) are held at their given clean values: at every step the
network sees them as conditioning, and their noisy channel is re-noised from the clean value.
Randomness comes only from one ``torch.Generator`` per batch row, drawn on the CPU, and a row draws
exactly what it would draw alone (initial noise, then re-noising only if it has known frames), so a
row's noise does not depend on its batch mates, the batch size or the device; its result then agrees
up to the arithmetic of the device (float32 on a CPU, bf16 on a GPU) and of the batch's kernels.
"""

from __future__ import annotations

from typing import Callable

import torch

from tracect.diffusion.schedule import Schedule

# denoise(x_t (B, K, H, W), t (B,)) -> guided network output (B, K, H, W)
Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cpu_randn(shape, generators: list[torch.Generator], device, dtype=torch.float32,
              rows: torch.Tensor | None = None) -> torch.Tensor:
    """Standard normal noise ``(B, ...)``, row ``b`` from ``generators[b]`` (on the CPU).

    ``rows`` ``(B,)`` bool: only those rows draw; the others are zeros and leave their generator as it was.
    """
    draw = [True] * len(generators) if rows is None else rows.tolist()
    return torch.stack([torch.randn(shape[1:], generator=g) if d else torch.zeros(shape[1:])
                        for g, d in zip(generators, draw)]).to(device, dtype)


@torch.no_grad()
def ddim_sample(denoise: Denoise, schedule: Schedule, shape: tuple[int, ...],
                generators: list[torch.Generator], steps: int,
                known: torch.Tensor | None = None, known_values: torch.Tensor | None = None,
                device: str | torch.device = "cpu", callback=None) -> torch.Tensor:
    """Generate windows of shape ``(B, K, H, W)`` in [-1, 1] (or latent windows ``(B, K, C, h, w)``).

    ``known`` ``(B, K)`` bool marks frames given in ``known_values`` ``(B, K, H, W)``; those frames
    are returned unchanged. ``generators`` has one generator per batch row. ``callback(i, x0_hat)``
    after each step.
    """
    B = shape[0]
    grid = schedule.sample_grid(steps)
    x = cpu_randn(shape, generators, device)
    if known is not None:
        has_known = known.any(1).cpu()  # (B,): rows that re-noise their known frames
        keep = known.to(device).reshape(B, known.shape[1], *([1] * (len(shape) - 2))).float()
        known_values = known_values.to(device)
    for i in range(steps):
        t = torch.full((B,), float(grid[i]), device=device)
        s = torch.full((B,), float(grid[i + 1]), device=device)
        if known is not None and has_known.any():
            a_t, s_t = (Schedule._bcast(v, x) for v in schedule.alpha_sigma(t))
            renoised = a_t * known_values + s_t * cpu_randn(shape, generators, device, rows=has_known)
            x = keep * renoised + (1 - keep) * x
        pred = denoise(x, t)
        x0, _ = schedule.split(x, pred, t)
        x0 = schedule.clip(x0)
        x = schedule.ddim_step(x, x0, t, s)
        if callback is not None:
            callback(i, x0)
    if known is not None:
        x = keep * known_values + (1 - keep) * x
    return schedule.clip(x)
