"""Drift along a long volume: per-organ mean HU early and late in a generated volume.

The mask is a real slab repeated to ``n`` slices, so the same organs appear at the top and the bottom;
a model that drifts as windows chain (intensity creeping up or down) shows as a difference between an
early and the last ``window`` slices, compared on identical mask slices (see :func:`organ_drift`), and
as a trend in the per-copy means.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tracect.io.volume import Volume


def repeat_slab(mask: Volume, n: int, mirror: bool = False) -> Volume:
    """``mask``'s canonical slab repeated along z to ``n`` slices (same in-plane grid).

    ``mirror``: slab, slab upside down, slab, ... so that consecutive copies meet at the same anatomy
    instead of jumping from the slab's last slice back to its first (which a chained generator must
    then bridge in one step)."""
    can = mask.canonical()
    unit = np.concatenate([can.array, can.array[::-1]]) if mirror else can.array
    reps = -(-n // unit.shape[0])
    return Volume(np.concatenate([unit] * reps)[:n], can.affine, dict(mask.meta))


def mask_period(labels: np.ndarray) -> int | None:
    """The smallest ``p`` with ``labels[p:] == labels[:-p]`` (the slab length of a repeated mask on the
    generation grid), or ``None`` when ``labels`` ``(Z, H, W)`` does not repeat within half its length."""
    for p in range(1, labels.shape[0] // 2 + 1):
        if np.array_equal(labels[p:], labels[:-p]):
            return p
    return None


def organ_drift(hu: np.ndarray, labels: np.ndarray, names: dict[int, str], window: int = 64,
                min_voxels: int = 50, period: int | None = None) -> dict[str, dict]:
    """Per organ: mean HU in an early and the last ``window`` slices of ``hu`` ``(Z, H, W)`` and the
    absolute difference; organs with fewer than ``min_voxels`` in either part are left out.

    Without ``period`` the early window is the first ``window`` slices. With the ``period`` of a
    repeated mask it starts at ``(Z - window) % period`` (inside the first ``period`` slices), so both
    windows hold slice for slice the same mask: an organ's mean then compares the same anatomy, and
    a difference is drift along the chain, not a different mix of the slab's slices (the lung bases
    of a slab, say, are partial-volume dense at one end and aerated at the other).
    """
    out = {}
    Z = hu.shape[0]
    s0 = 0 if period is None else (Z - window) % period
    top, bottom = slice(s0, s0 + window), slice(Z - window, Z)
    for i, name in names.items():
        a, b = labels[top] == i, labels[bottom] == i
        if a.sum() >= min_voxels and b.sum() >= min_voxels:
            m1, m2 = float(hu[top][a].mean()), float(hu[bottom][b].mean())
            out[name] = {"first_hu": m1, "last_hu": m2, "abs_diff_hu": abs(m2 - m1), "first_start": s0}
    return out


def per_copy_means(hu: np.ndarray, labels: np.ndarray, names: dict[int, str], period: int,
                   min_voxels: int = 50) -> dict[str, list[float]]:
    """Per organ, its mean HU in each full copy of the repeated slab, top to bottom (the drift curve)."""
    copies = hu.shape[0] // period
    out = {}
    for i, name in names.items():
        sel = labels[:period] == i
        if sel.sum() >= min_voxels:
            out[name] = [float(hu[c * period:(c + 1) * period][sel].mean()) for c in range(copies)]
    return out


def measure_drift(checkpoint, mask_path, n: int = 500, seed: int = 0, mode: str = "sequential",
                  report: str = "", window: int = 64, steps: int | None = None, save=None,
                  device: str = "auto", text_encoder: str | None = None, mirror: bool = False,
                  warmup: int | None = None) -> dict:
    """``text_encoder``: a local folder replacing the checkpoint's (same encoder, another place);
    ``warmup``: burn-in slices of sequential mode (default: the generator's)."""
    from tracect.generate.pipeline import Generator
    from tracect.io.readers import read_mask
    from tracect.model.text import TextEncoder

    text = None
    if text_encoder:
        cfg = json.loads((Path(checkpoint) / "config.json").read_text()) if (Path(checkpoint) / "config.json").is_file() else None
        m = (cfg or {}).get("model", {})
        text = TextEncoder(text_encoder, m.get("text_max_tokens", 256), units=m.get("text_units", "wordpieces"))
    gen = Generator.from_checkpoint(checkpoint, device=device, text=text)
    mask = repeat_slab(read_mask(mask_path), n, mirror)
    result = gen.generate(mask, report, seed=seed, mode=mode, steps=steps, progress=True, warmup=warmup)
    names = dict(gen.vocabulary.labels)
    hu, labels = result.canonical.array, result.labels.array
    period = mask_period(labels)
    per_organ = organ_drift(hu, labels, names, window, period=period)
    unmatched = organ_drift(hu, labels, names, window)
    worst = max((v["abs_diff_hu"] for v in per_organ.values()), default=float("nan"))
    out = {"slices": n, "mode": mode, "seed": seed, "window": window, "period": period, "mirror": mirror,
           "warmup": result.info["warmup"], "windows": result.info["windows"],
           "per_organ": per_organ, "max_abs_diff_hu": worst,
           "per_organ_first_window": unmatched,
           "max_abs_diff_hu_first_window": max((v["abs_diff_hu"] for v in unmatched.values()),
                                               default=float("nan")),
           "per_copy_mean_hu": per_copy_means(hu, labels, names, period) if period else None,
           "seconds": result.info["seconds"], "checkpoint": str(gen.checkpoint), "device": str(gen.device)}
    if save:
        from tracect.io.readers import write_volume

        write_volume(result.canonical, save)
    return out
