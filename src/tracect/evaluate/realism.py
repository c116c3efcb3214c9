"""Realism against real CT: the HU distribution of each tissue, generated against real.

The tissues are the real CT's own, from ``tracect label``'s rules (:mod:`tracect.labels.pseudo`): lung,
fat, soft tissue, bone and contrast-filled vessels. For a generated volume, its HU in each tissue region
of the real CT of the same mask are compared with the real CT's HU there: the Wasserstein-1 distance
(the mean absolute difference between the two quantile functions, in HU). A right tissue in the wrong
place or with the wrong spread scores as far as a wrong tissue.

The yardstick is two real CTs against each other, each in its own tissue regions: what a real patient
scores against another. A distribution of generated HU closer than that to its own real CT is as real as
another patient; a tissue missing from a volume (no vessels without contrast) gives no figure.

Distributions are kept as :data:`QUANTILES` (1,000 midpoint quantiles), so that a set of volumes costs
kilobytes and any two can be compared later.
"""

from __future__ import annotations

import numpy as np

TISSUES = ("lung", "fat", "soft_tissue", "bone", "vessel")
QUANTILES = (np.arange(1000) + 0.5) / 1000
MIN_VOXELS = 50  # a tissue with fewer voxels in a volume gives no distribution


def tissue_map(hu: np.ndarray, spacing) -> np.ndarray:
    """Tissue ids ``(Z, Y, X)`` (vocabulary :data:`tracect.labels.pseudo.TISSUE`) of a real CT in HU."""
    from tracect.labels.pseudo import pseudo_labels

    return pseudo_labels(hu, spacing)[0]


def tissue_quantiles(hu: np.ndarray, tissues: np.ndarray) -> dict[str, np.ndarray | None]:
    """The quantiles of ``hu`` in each tissue region of ``tissues`` (same shape) -> tissue -> ``(1000,)``
    or None where the region has fewer than :data:`MIN_VOXELS` voxels."""
    from tracect.labels.pseudo import TISSUE

    ids = {n: i for i, n in TISSUE.labels.items()}
    out = {}
    for name in TISSUES:
        values = hu[tissues == ids[name]]
        out[name] = np.quantile(values.astype(np.float64), QUANTILES) if values.size >= MIN_VOXELS else None
    return out


def wasserstein(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Wasserstein-1 distance between two distributions given as :data:`QUANTILES`, in their unit."""
    if a is None or b is None:
        return None
    return float(np.mean(np.abs(a - b)))


def tissue_distances(a: dict, b: dict) -> dict[str, float | None]:
    """Per tissue, :func:`wasserstein` between two :func:`tissue_quantiles` records."""
    return {t: wasserstein(a.get(t), b.get(t)) for t in TISSUES}


def mean_distance(d: dict[str, float | None]) -> float:
    """The mean over the tissues that have a figure (nan when none has)."""
    values = [v for v in d.values() if v is not None]
    return float(np.mean(values)) if values else float("nan")
