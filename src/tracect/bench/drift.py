"""Drift along a long volume: per-organ mean HU of the first and last slices of a generated volume.

The mask is a real slab repeated to ``n`` slices, so the same organs appear at the top and the bottom;
a model that drifts as windows chain (intensity creeping up or down) shows as a difference between the
first and last ``window`` slices.
"""

from __future__ import annotations

import numpy as np

from tracect.io.volume import Volume


def repeat_slab(mask: Volume, n: int) -> Volume:
    """``mask``'s canonical slab repeated along z to ``n`` slices (same in-plane grid)."""
    can = mask.canonical()
    reps = -(-n // can.shape[0])
    return Volume(np.concatenate([can.array] * reps)[:n], can.affine, dict(mask.meta))


def organ_drift(hu: np.ndarray, labels: np.ndarray, names: dict[int, str], window: int = 64,
                min_voxels: int = 50) -> dict[str, dict]:
    """Per organ: mean HU in the first and last ``window`` slices of ``hu`` ``(Z, H, W)`` and the
    absolute difference; organs with fewer than ``min_voxels`` in either part are left out."""
    out = {}
    top, bottom = slice(0, window), slice(hu.shape[0] - window, hu.shape[0])
    for i, name in names.items():
        a, b = labels[top] == i, labels[bottom] == i
        if a.sum() >= min_voxels and b.sum() >= min_voxels:
            m1, m2 = float(hu[top][a].mean()), float(hu[bottom][b].mean())
            out[name] = {"first_hu": m1, "last_hu": m2, "abs_diff_hu": abs(m2 - m1)}
    return out


def measure_drift(checkpoint, mask_path, n: int = 500, seed: int = 0, mode: str = "sequential",
                  report: str = "", window: int = 64, steps: int | None = None) -> dict:
    from tracect.generate.pipeline import Generator
    from tracect.io.readers import read_mask

    gen = Generator.from_checkpoint(checkpoint)
    mask = repeat_slab(read_mask(mask_path), n)
    result = gen.generate(mask, report, seed=seed, mode=mode, steps=steps, progress=True)
    names = dict(gen.vocabulary.labels)
    per_organ = organ_drift(result.canonical.array, result.labels.array, names, window)
    worst = max((v["abs_diff_hu"] for v in per_organ.values()), default=float("nan"))
    return {"slices": n, "mode": mode, "seed": seed, "window": window, "per_organ": per_organ,
            "max_abs_diff_hu": worst, "seconds": result.info["seconds"], "checkpoint": str(gen.checkpoint)}
