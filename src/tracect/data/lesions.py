"""The lesion map: where a volume's focal lesions are, as kind codes on its grid.

``0`` is no lesion; ``1 + LESION_KINDS.index(kind)`` a cyst, a hypodense or a hyperenhancing lesion.
Training reads it from the cache (drawn at prepare time from the lesions a dataset knows, the phantom's
``findings.jsonl``); generation draws it from the report's lesions (:mod:`tracect.generate.lesions`).
A lesion is a ball of its diameter around its centre, kept inside its organ.
"""

from __future__ import annotations

import numpy as np

from tracect.data.findings import LESION_KINDS


def kind_code(kind: str) -> int:
    return 1 + LESION_KINDS.index(kind)


def ball(shape: tuple[int, int, int], affine: np.ndarray, center_index, diameter_mm: float) -> np.ndarray:
    """Voxels of a ``(Z, Y, X)`` grid within ``diameter_mm / 2`` of ``center_index`` (voxel
    coordinates, float), distances in mm through ``affine``'s 3x3 part (bool ``(Z, Y, X)``)."""
    A = np.asarray(affine, float)[:3, :3]
    c = np.asarray(center_index, float)
    r = diameter_mm / 2.0
    # a box around the centre wide enough for the ball (in voxels per axis), then the exact test inside
    half = np.ceil(r / np.maximum(np.linalg.norm(A, axis=0), 1e-6)).astype(int) + 1
    lo = np.maximum(np.floor(c).astype(int) - half, 0)
    hi = np.minimum(np.ceil(c).astype(int) + half + 1, shape)
    out = np.zeros(shape, bool)
    if np.any(hi <= lo):
        return out
    idx = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)  # (z, y, x, 3)
    mm = (idx - c) @ A.T
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = (mm ** 2).sum(-1) <= r * r
    return out


def lesion_map(shape: tuple[int, int, int], affine: np.ndarray, lesions, organs: list[np.ndarray] | None = None
               ) -> np.ndarray:
    """``(Z, Y, X)`` uint8 kind codes of ``lesions`` (dicts with ``kind``, ``diameter_mm`` and
    ``center_ras_mm``, world RAS mm) on the grid ``affine``; ``organs[i]`` (bool, same shape) keeps
    lesion ``i`` inside its organ."""
    out = np.zeros(shape, np.uint8)
    inv = np.linalg.inv(np.asarray(affine, float))
    for i, les in enumerate(lesions):
        center = (inv @ np.r_[np.asarray(les["center_ras_mm"], float), 1.0])[:3]
        sel = ball(shape, affine, center, float(les["diameter_mm"]))
        if organs is not None:
            sel &= organs[i]
        out[sel] = kind_code(les["kind"])
    return out
