"""The body envelope: from a CT (threshold) or, when a mask has none, from its organs."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# How far the body reaches beyond the hull of a TotalSegmentator ``total`` mask's labels (the chest and
# abdominal wall, subcutaneous fat and skin, which that task does not label). Chosen on the one real
# organ mask at hand, so its Dice there is not an out-of-sample figure (docs/data.md, "A body for a
# mask that has none"); masks that label the wall's muscles need less.
ENVELOPE_MARGIN_MM = 20.0


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


def hull_distance_mm(labels: np.ndarray, spacing) -> np.ndarray:
    """Per axial slice, the distance in mm from each pixel to the convex hull of the slice's labelled
    pixels (0 inside it) -> float32 ``(Z, Y, X)``. Slices without any label take the nearest labelled
    slice's distances; a mask with no label at all gives ``inf`` everywhere."""
    import cv2

    out = np.full(labels.shape, np.inf, np.float32)
    filled = []
    for z in range(labels.shape[0]):
        ys, xs = np.nonzero(labels[z])
        if len(ys) == 0:
            continue
        hull = cv2.convexHull(np.stack([xs, ys], axis=1).astype(np.int32))
        img = np.zeros(labels.shape[1:], np.uint8)
        cv2.fillConvexPoly(img, hull, 1)
        out[z] = ndimage.distance_transform_edt(img == 0, sampling=(float(spacing[1]), float(spacing[2])))
        filled.append(z)
    if filled and len(filled) < labels.shape[0]:
        nearest = np.array(filled)[np.abs(np.arange(labels.shape[0])[:, None] - np.array(filled)[None]).argmin(1)]
        out = out[nearest]
    return out


def envelope_from_organs(labels: np.ndarray, spacing, margin_mm: float = ENVELOPE_MARGIN_MM) -> np.ndarray:
    """A body envelope for a mask that has organs but no body label -> bool ``(Z, Y, X)``.

    Per slice: the convex hull of all labelled pixels grown by ``margin_mm`` in the plane (the
    abdominal wall, subcutaneous fat and skin lie outside the organs a segmenter labels). The default
    margin and how well it matches real bodies: ``scripts/body_estimate_check.py``, docs/data.md."""
    return hull_distance_mm(labels, spacing) <= margin_mm


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
