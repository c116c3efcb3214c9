"""Conditions of a batch of windows, and the denoise closure the sampler calls.

Training, validation images and volume generation all build a :class:`WindowCondition` the same way,
so the network sees identical conditioning in each.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tracect.model.denoiser import FrameDenoiser, geometry_features
from tracect.model.text import TextEncoder


@dataclass
class WindowCondition:
    """Conditioning of ``B`` windows of ``K`` frames (all tensors on the model's device).

    mask ``(B, K, H, W)`` long; tokens ``(B, L, D)``; pooled ``(B, D)``; null_tokens/null_pooled the
    empty report (for guidance); geometry ``(B, 5)``; known ``(B, K)`` bool; known_values
    ``(B, K, H, W)``; flow ``(B, K-1, 2, H, W)`` or None.
    """

    mask: torch.Tensor
    tokens: torch.Tensor
    pooled: torch.Tensor
    null_tokens: torch.Tensor
    null_pooled: torch.Tensor
    geometry: torch.Tensor | None
    known: torch.Tensor | None = None
    known_values: torch.Tensor | None = None
    flow: torch.Tensor | None = None


def build_condition(text: TextEncoder, mask: torch.Tensor, reports: list[str], spacing: torch.Tensor,
                    position: torch.Tensor, device, known=None, known_values=None, flow=None) -> WindowCondition:
    """spacing ``(B, 3)`` mm (z, y, x); position ``(B, K)`` relative slice positions in [0, 1]."""
    tokens, pooled = text.encode(list(reports))
    null_t, null_p = text.encode([""] * len(reports))
    geometry = geometry_features(spacing[:, 1], spacing[:, 0], position[:, 0], position[:, -1])
    to = lambda v: None if v is None else v.to(device)  # noqa: E731
    return WindowCondition(to(mask), to(tokens), to(pooled), to(null_t), to(null_p), to(geometry),
                           to(known), to(known_values), to(flow))


def make_denoise(model: FrameDenoiser, cond: WindowCondition, timesteps: int, autocast=None):
    """``denoise(x_t, t, use_report) -> prediction`` for :func:`tracect.diffusion.sampler.ddim_sample`.

    ``t`` is the schedule time in [0, 1]; the network receives ``t * timesteps``. ``autocast`` is a
    context-manager factory (bf16 on GPUs) or None.
    """
    import contextlib

    def denoise(x_t: torch.Tensor, t: torch.Tensor, use_report: bool) -> torch.Tensor:
        tokens, pooled = (cond.tokens, cond.pooled) if use_report else (cond.null_tokens, cond.null_pooled)
        with autocast() if autocast is not None else contextlib.nullcontext():
            out = model(x_t, t * timesteps, cond.mask, tokens, pooled, cond.geometry,
                        cond.known, cond.known_values, cond.flow)
        return out.float()

    return denoise
