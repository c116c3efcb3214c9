"""The body envelope: from a CT (threshold) or, when a mask has none, from its organs."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def body_from_ct(hu: np.ndarray, threshold: float = -500.0) -> np.ndarray:
    """Body mask of a canonical CT ``(Z, Y, X)`` in HU -> bool ``(Z, Y, X)``.

    Threshold, fill holes slice by slice (lungs and bowel gas are inside the body), keep the largest
    3D component (drops the table, blankets and noise).
    """
    fg = hu > threshold
    fg = ndimage.binary_opening(fg, structure=np.ones((1, 3, 3), bool))
    labels, n = ndimage.label(fg)
    if n == 0:
        return fg
    sizes = ndimage.sum_labels(fg, labels, index=np.arange(1, n + 1))
    body = labels == (1 + int(np.argmax(sizes)))
    return np.stack([ndimage.binary_fill_holes(s) for s in body])


def envelope_from_organs(labels: np.ndarray, margin_vox: int = 2) -> np.ndarray:
    """A plausible body envelope for a mask that has organs but no body label -> bool ``(Z, Y, X)``.

    Per slice: the convex hull of all labelled pixels, dilated by ``margin_vox`` (the body wall and
    subcutaneous fat lie outside the organs). Slices without any organ take the nearest slice's hull.
    """
    import cv2

    out = np.zeros(labels.shape, dtype=bool)
    filled = []
    for z in range(labels.shape[0]):
        ys, xs = np.nonzero(labels[z])
        if len(ys) == 0:
            continue
        hull = cv2.convexHull(np.stack([xs, ys], axis=1).astype(np.int32))
        img = np.zeros(labels.shape[1:], np.uint8)
        cv2.fillConvexPoly(img, hull, 1)
        out[z] = ndimage.binary_dilation(img.astype(bool), iterations=margin_vox) if margin_vox else img
        filled.append(z)
    if filled and len(filled) < labels.shape[0]:
        nearest = np.array(filled)[np.abs(np.arange(labels.shape[0])[:, None] - np.array(filled)[None]).argmin(1)]
        out = out[nearest]
    return out


def bbox(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive-exclusive bounding box ``(lo, hi)`` of a boolean array, or ``None`` if empty."""
    lo, hi = [], []
    for axis in range(mask.ndim):  # per-axis projections: no index list as large as the mask
        present = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if len(present) == 0:
            return None
        lo.append(present[0])
        hi.append(present[-1] + 1)
    return np.array(lo), np.array(hi)
