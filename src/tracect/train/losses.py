"""Training losses: the diffusion objective on unknown frames, TRACE's optical-flow constraint, and the
region-mean term that holds each labelled region at its density."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def warp(frames: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``frames`` ``(B, H, W)`` (or ``(B, C, H, W)``: every channel alike) at ``p + flow(p)``,
    bilinear, border clamped; same shape out.

    ``flow`` ``(B, 2, H, W)`` in pixels, channel 0 = dx, 1 = dy: the convention of
    :mod:`tracect.data.flow` (``slice_k ≈ warp(slice_{k+1}, flow_k)``).
    """
    single = frames.ndim == 3
    if single:
        frames = frames.unsqueeze(1)
    B, _, H, W = frames.shape
    ys, xs = torch.meshgrid(torch.arange(H, device=frames.device, dtype=flow.dtype),
                            torch.arange(W, device=frames.device, dtype=flow.dtype), indexing="ij")
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    grid = torch.stack([2 * x / max(W - 1, 1) - 1, 2 * y / max(H - 1, 1) - 1], dim=-1)  # (B, H, W, 2)
    out = F.grid_sample(frames, grid.to(frames.dtype), mode="bilinear", padding_mode="border", align_corners=True)
    return out.squeeze(1) if single else out


def flow_loss(x0: torch.Tensor, flow: torch.Tensor, body: torch.Tensor,
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """TRACE's inter-frame constraint on predicted clean frames.

    ``x0`` ``(B, K, H, W)`` predicted clean window (latent windows: ``(B, K, C, h, w)``, every channel
    warped alike), ``flow`` ``(B, K-1, 2, H, W)`` real flow k -> k+1 on the same grid, ``body``
    ``(B, K, H, W)`` bool, ``weight`` ``(B,)`` (e.g. 0 where the time is too noisy). Mean over frame
    pairs (and channels) of ``|warp(x0[k+1], flow[k]) - x0[k]|`` inside the body of frame k: exactly 0
    when neighbouring frames are related by the given flow, and growing with misalignment.
    """
    B, K = x0.shape[:2]
    if K < 2:
        return x0.new_zeros(())
    latent = x0.ndim == 5
    frames = x0 if latent else x0.unsqueeze(2)  # (B, K, C, H, W)
    C = frames.shape[2]
    nxt = frames[:, 1:].flatten(0, 1)  # (B*(K-1), C, H, W)
    warped = warp(nxt, flow.flatten(0, 1).to(x0.dtype)).view(B, K - 1, *frames.shape[2:])
    inside = body[:, :-1, None].to(x0.dtype)  # (B, K-1, 1, H, W)
    diff = ((warped - frames[:, :-1]).abs() * inside).flatten(2).sum(-1)  # (B, K-1)
    per_pair = diff / (inside.flatten(2).sum(-1) * C).clamp_min(1)
    per_window = per_pair.mean(1)  # (B,)
    if weight is not None:
        return (per_window * weight).sum() / weight.sum().clamp_min(1e-8)
    return per_window.mean()


def diffusion_loss(pred: torch.Tensor, target: torch.Tensor, unknown: torch.Tensor,
                   pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """MSE over the frames the model has to generate. pred/target ``(B, K, ...)``, unknown ``(B, K)``;
    ``pixel_weight`` (the shape of pred, or None: all 1) weighs each pixel's squared error before the
    mean over a frame's pixels."""
    err = (pred.float() - target.float()).pow(2)
    if pixel_weight is not None:
        err = err * pixel_weight
    per_frame = err.flatten(2).mean(-1)  # (B, K)
    w = unknown.float()
    return (per_frame * w).sum() / w.sum().clamp_min(1.0)


def region_loss(x0: torch.Tensor, target: torch.Tensor, regions: torch.Tensor, unknown: torch.Tensor,
                n_regions: int) -> torch.Tensor:
    """Squared error of each region's mean: ``x0`` ``(B, K, H, W)`` predicted clean frames, ``target``
    the real ones, ``regions`` ``(B, K, H, W)`` integer ids in ``[0, n_regions)`` (a label, or a label
    with its lesion pixels as a region of their own), ``unknown`` ``(B, K)`` the frames it counts.

    Per frame, the mean over the regions present of ``(mean of x0 in region - mean of target in
    region)^2``: every region counts once, whatever its area. The pixel MSE weighs an organ by its
    area, so a liver that is a small island among lung at its dome, or a 20 mm lesion, hardly moves
    it when its whole level is off; this term does. Its minimiser is the same as the diffusion loss's
    (the posterior mean of each region's mean given the noisy frames and the conditions), so it
    re-weights what the network is asked, not what the right answer is.
    """
    if x0.ndim != 4 or regions.shape != x0.shape:
        raise ValueError(f"region_loss needs pixel frames (B, K, H, W) and regions of that shape, got "
                         f"{tuple(x0.shape)} and {tuple(regions.shape)}")
    B, K = x0.shape[:2]
    frame = torch.arange(B * K, device=x0.device).view(B, K, 1)
    idx = (frame * n_regions + regions.flatten(2).long().to(x0.device)).flatten()  # (B*K*H*W,)
    size = B * K * n_regions
    err = (x0.float() - target.float()).flatten()
    sums = torch.zeros(size, device=x0.device, dtype=err.dtype).index_add_(0, idx, err)
    counts = torch.bincount(idx, minlength=size).to(err.dtype)
    present = (counts > 0).to(err.dtype).view(B, K, n_regions)
    mean_err = (sums / counts.clamp_min(1.0)).view(B, K, n_regions)
    per_frame = (mean_err.pow(2) * present).sum(-1) / present.sum(-1).clamp_min(1.0)  # (B, K)
    w = unknown.float().to(x0.device)
    return (per_frame * w).sum() / w.sum().clamp_min(1.0)
