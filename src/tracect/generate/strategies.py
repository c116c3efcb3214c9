"""Chaining windows into a volume of any length (TRACE's overlapping-frame strategy, and a parallel mode).

Notation: a volume has ``Z`` slices; a window has ``K`` frames; consecutive windows overlap by ``o``
frames (``1 <= o < K``), so each window after the first adds ``K - o`` new slices.

- :func:`sequential` (TRACE): the first window is generated fresh; each next window takes the ``o``
  already generated frames as known frames and generates the rest. Only one window is in memory at a
  time, so memory is constant in ``Z`` (apart from the output) and time grows linearly.
- :func:`parallel` (beyond the paper): all windows are denoised together, step by step; at every step
  the clean-slice estimates of frames that several windows share are averaged, and one DDIM step is
  taken on the whole volume. One batched network call advances the whole volume.

Both take ``denoise_windows(x (W, K, H, W), t (W,), starts, known, known_values, use_report)`` and one
``torch.Generator`` per volume.
"""

from __future__ import annotations

from typing import Callable

import torch

from tracect.diffusion.sampler import cpu_randn, ddim_sample
from tracect.diffusion.schedule import Schedule

DenoiseWindows = Callable[..., torch.Tensor]


def window_starts(Z: int, K: int, overlap: int) -> list[int]:
    """First slice of each window covering ``Z`` slices (the last window is pulled back to end at Z)."""
    if not 1 <= overlap < K and K > 1:
        raise ValueError(f"overlap must be in 1..K-1 (K={K}), got {overlap}")
    if Z <= K:
        return [0]
    step = K - overlap if K > 1 else 1
    starts = list(range(0, Z - K + 1, step))
    if starts[-1] + K < Z:
        starts.append(Z - K)
    return starts


def sequential(denoise_windows: DenoiseWindows, schedule: Schedule, Z: int, K: int, H: int, W: int,
               overlap: int, steps: int, guidance: float, generator: torch.Generator, device,
               on_window=None) -> torch.Tensor:
    """Generate ``(Z, H, W)`` in [-1, 1] window by window, each continuing from the last slices."""
    out = torch.zeros(Z, H, W)
    done = torch.zeros(Z, dtype=torch.bool)
    for n, s in enumerate(window_starts(Z, K, overlap)):
        known = done[s:s + K].clone()[None]  # (1, K)
        values = out[s:s + K][None].to(device)  # (1, K, H, W)

        def denoise(x, t, use_report, s=s, known=known, values=values):
            return denoise_windows(x, t, [s], known.to(device), values, use_report)

        x = ddim_sample(denoise, schedule, (1, K, H, W), [generator], steps, guidance,
                        known=known if known.any() else None, known_values=values, device=device)
        out[s:s + K] = x[0].float().cpu()
        done[s:s + K] = True
        if on_window is not None:
            on_window(n)
    return out


@torch.no_grad()
def parallel(denoise_windows: DenoiseWindows, schedule: Schedule, Z: int, K: int, H: int, W: int,
             overlap: int, steps: int, guidance: float, generator: torch.Generator, device,
             chunk: int = 64, on_step=None) -> torch.Tensor:
    """Generate ``(Z, H, W)`` in [-1, 1] with all windows denoised jointly (estimates fused per step)."""
    starts = window_starts(Z, K, overlap)
    idx = torch.tensor(starts)[:, None] + torch.arange(K)[None]  # (nW, K) slice of each frame
    count = torch.bincount(idx.flatten(), minlength=Z).float().to(device)  # windows per slice
    grid = schedule.sample_grid(steps)
    x = cpu_randn((1, Z, H, W), [generator], device)[0]  # (Z, H, W)
    for i in range(steps):
        t, s = float(grid[i]), float(grid[i + 1])
        x0_sum = torch.zeros(Z, H, W, device=device)
        for c in range(0, len(starts), chunk):
            sl = slice(c, c + chunk)
            xw = x[idx[sl]]  # (w, K, H, W)
            tt = torch.full((len(xw),), t, device=device)
            pred = denoise_windows(xw, tt, starts[sl], None, None, True)
            if guidance != 1.0:
                null = denoise_windows(xw, tt, starts[sl], None, None, False)
                pred = null + guidance * (pred - null)
            x0w, _ = schedule.split(xw, pred, tt)
            x0_sum.index_add_(0, idx[sl].flatten().to(device), x0w.clamp(-1, 1).flatten(0, 1))
        x0 = x0_sum / count[:, None, None]
        a_t, s_t = schedule.alpha_sigma(torch.tensor(t))
        a_s, s_s = schedule.alpha_sigma(torch.tensor(s))
        eps = (x - float(a_t) * x0) / max(float(s_t), 1e-6)
        x = float(a_s) * x0 + float(s_s) * eps
        if on_step is not None:
            on_step(i)
    return x.clamp(-1, 1).cpu()
