"""The body envelope: from a CT (threshold) or, when a mask has none, from its organs."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Directions around an axial slice's centre, in degrees from anterior (0) through either side (90) to
# posterior (180); left and right alike. The envelope's margin is interpolated between these.
PROFILE_DEG = (0.0, 22.5, 45.0, 67.5, 90.0, 112.5, 135.0, 157.5, 180.0)

# The subcutaneous layer (fat and skin) per direction, in mm: for each real CT in
# ../shared/data/real-ct, the distance from the hull of everything inside that layer to the body's
# surface (``tracect label``'s pseudo-labels), pooled over its slices, median per direction; then the
# median over the six CTs. Thicker in front and at the sides, a few mm at the back, where a supine
# patient lies on the table. Measured by ``scripts/body_estimate_check.py``.
SUBCUTANEOUS_MM = (5.1, 7.7, 11.7, 11.9, 6.8, 5.5, 2.9, 2.4, 1.5)

# How far the body reaches beyond the hull of a TotalSegmentator ``total`` mask's labels, per direction,
# in mm: the wall's unlabelled muscles, the fat between them and the organs, and the subcutaneous layer,
# measured the same way on the one real ``total`` mask at hand (../shared/data/totalseg-example), so
# its body Dice there is not an out-of-sample figure (neither was the 20 mm all round used before).
# Same script. The tighter alternative (the wall measured there plus the six CTs' subcutaneous layer)
# fitted that body worse and drew its organs worse: a phantom-trained model draws organs that run close
# to the body's edge as lung or air (docs/data.md).
TOTAL_MASK_MM = (24.0, 26.8, 21.0, 15.0, 18.0, 21.6, 23.4, 18.0, 15.0)


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


def slice_hull_distance_mm(labelled: np.ndarray, spacing_yx) -> np.ndarray:
    """One axial slice: the distance in mm from each pixel to the convex hull of its labelled pixels
    (0 inside it) -> float32 ``(Y, X)``; ``inf`` everywhere for a slice without labels."""
    import cv2

    ys, xs = np.nonzero(labelled)
    if len(ys) == 0:
        return np.full(labelled.shape, np.inf, np.float32)
    hull = cv2.convexHull(np.stack([xs, ys], axis=1).astype(np.int32))
    img = np.zeros(labelled.shape, np.uint8)
    cv2.fillConvexPoly(img, hull, 1)
    return ndimage.distance_transform_edt(img == 0, sampling=(float(spacing_yx[0]), float(spacing_yx[1]))
                                          ).astype(np.float32)


def slice_direction_deg(labelled: np.ndarray, spacing_yx) -> np.ndarray:
    """One axial slice ``(Y, X)`` in canonical layout (rows run anterior to posterior): each pixel's
    direction from the centroid of the labelled pixels, in degrees from anterior (0) to posterior (180),
    left and right alike -> float32 ``(Y, X)``."""
    cy, cx = ndimage.center_of_mass(labelled)
    yy, xx = np.mgrid[:labelled.shape[0], :labelled.shape[1]]
    dy = (yy - cy) * float(spacing_yx[0])  # + = posterior
    dx = np.abs(xx - cx) * float(spacing_yx[1])
    return np.degrees(np.arctan2(dx, -dy)).astype(np.float32)


def _nearest_labelled(values: list, filled: list[int], n: int) -> list:
    """Slices without labels take the nearest labelled slice's ``values``."""
    idx = np.array(filled)
    nearest = idx[np.abs(np.arange(n)[:, None] - idx[None]).argmin(1)]
    return [values[z] for z in nearest]


def hull_distance_mm(labels: np.ndarray, spacing) -> np.ndarray:
    """Per axial slice, the distance in mm from each pixel to the convex hull of the slice's labelled
    pixels (0 inside it) -> float32 ``(Z, Y, X)``. Slices without any label take the nearest labelled
    slice's distances; a mask with no label at all gives ``inf`` everywhere."""
    filled = [z for z in range(labels.shape[0]) if np.any(labels[z])]
    if not filled:
        return np.full(labels.shape, np.inf, np.float32)
    per = {z: slice_hull_distance_mm(labels[z], spacing[1:]) for z in filled}
    return np.stack(_nearest_labelled(per, filled, labels.shape[0]))


def envelope_from_organs(labels: np.ndarray, spacing, wall_labelled: bool = False) -> np.ndarray:
    """A body envelope for a mask that has organs but no body label -> bool ``(Z, Y, X)``.

    Per axial slice: the convex hull of all labelled pixels grown, in each direction from the centroid
    of the slice's labelled pixels, by the margin measured for a TotalSegmentator ``total`` mask
    (:data:`TOTAL_MASK_MM`), or, for a mask whose labels reach the body wall's muscles
    (``wall_labelled``), by the subcutaneous layer alone (:data:`SUBCUTANEOUS_MM`). Slices without labels take the nearest labelled slice's envelope.
    How well it matches real bodies: ``scripts/body_estimate_check.py``, docs/data.md."""
    return envelope_with_margin(labels, spacing, SUBCUTANEOUS_MM if wall_labelled else TOTAL_MASK_MM)


def envelope_with_margin(labels: np.ndarray, spacing, margin_mm) -> np.ndarray:
    """:func:`envelope_from_organs` with the margin given per direction of :data:`PROFILE_DEG` (mm, a
    sequence of that length) -> bool ``(Z, Y, X)``."""
    margin_mm = np.asarray(margin_mm, np.float64)
    if margin_mm.shape != (len(PROFILE_DEG),):
        raise ValueError(f"margin_mm needs one value per direction of PROFILE_DEG ({len(PROFILE_DEG)})")
    filled = [z for z in range(labels.shape[0]) if np.any(labels[z])]
    if not filled:
        return np.zeros(labels.shape, bool)
    per = {}
    for z in filled:
        grow = np.interp(slice_direction_deg(labels[z], spacing[1:]), PROFILE_DEG, margin_mm)
        per[z] = slice_hull_distance_mm(labels[z], spacing[1:]) <= grow
    return np.stack(_nearest_labelled(per, filled, labels.shape[0]))


def surface_margin_profile(inside: np.ndarray, body: np.ndarray, spacing) -> np.ndarray:
    """How far a body reaches beyond the hull of ``inside``, per direction: over the body's surface
    pixels (slices where both are present), the median distance to each slice's hull of ``inside``,
    binned to the nearest direction of :data:`PROFILE_DEG` -> float64 ``(len(PROFILE_DEG),)`` in mm
    (``nan`` for a direction with no surface pixel). Both ``(Z, Y, X)`` bool in canonical layout."""
    dist, deg = [], []
    for z in range(inside.shape[0]):
        if not (np.any(inside[z]) and np.any(body[z])):
            continue
        edge = body[z] & ~ndimage.binary_erosion(body[z])
        dist.append(slice_hull_distance_mm(inside[z], spacing[1:])[edge])
        deg.append(slice_direction_deg(inside[z], spacing[1:])[edge])
    if not dist:
        return np.full(len(PROFILE_DEG), np.nan)
    dist, deg = np.concatenate(dist), np.concatenate(deg)
    step = PROFILE_DEG[1] - PROFILE_DEG[0]
    bins = np.clip(np.rint(deg / step).astype(int), 0, len(PROFILE_DEG) - 1)
    return np.array([np.median(dist[bins == b]) if np.any(bins == b) else np.nan
                     for b in range(len(PROFILE_DEG))])


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
