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

Noise and texture inside one tissue (:func:`tissue_hf_ratio`): the radially averaged power spectrum of
square patches that lie wholly inside the real CT's soft tissue, generated against real at the same
places, and the share of power in the top third of the spatial frequencies: 1 = as fine a texture and
noise as the real CT's, below 1 smoother. Unlike the whole-body figure it is not driven by the edges
between tissues (skin, lung, bone).

Fine texture at the mask's own resolution (:func:`fine_texture_ratio`): the evaluation grid (64² over the
body) cannot hold what makes a 512² slice look like CT, so this figure is taken on the mask's grid, in
physical frequencies: the noise power spectrum in 32 × 32 px patches of the real CT's uniform soft
tissue (:mod:`tracect.generate.grain`'s patches), generated against real at the same places, and the
power between 0.2 and 0.55 cycles per mm (features of 0.9-2.5 mm).
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

    out = {}
    for name in TISSUES:
        values = hu[tissues == TISSUE.id_of(name)]
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


FINE_BAND = (0.2, 0.55)  # cycles per mm: the fine-texture band, below the Nyquist frequency of a 0.9 mm grid
TEXTURE_PATCH = 8  # px: patches of the evaluation grid (about 5 cm at 64 px over a torso)
MIN_PATCHES = 4  # fewer patches inside the tissue give no figure


def tissue_patches(tissues: np.ndarray, tissue: str = "soft_tissue", patch: int = TEXTURE_PATCH) -> list[tuple]:
    """Corners ``(z, y, x)`` of ``patch`` x ``patch`` in-plane patches (stride ``patch // 2``) that lie
    wholly inside ``tissue`` of the tissue map ``tissues`` ``(Z, H, W)``."""
    from numpy.lib.stride_tricks import sliding_window_view

    from tracect.labels.pseudo import TISSUE

    inside = tissues == TISSUE.id_of(tissue)
    if inside.shape[1] < patch or inside.shape[2] < patch:
        return []
    step = max(1, patch // 2)
    full = sliding_window_view(inside, (patch, patch), axis=(1, 2))[:, ::step, ::step].all(axis=(-1, -2))
    return [(int(z), int(y) * step, int(x) * step) for z, y, x in zip(*np.nonzero(full))]


def tissue_hf_ratio(generated: np.ndarray, real: np.ndarray, tissues: np.ndarray, tissue: str = "soft_tissue",
                    patch: int = TEXTURE_PATCH) -> float | None:
    """High-frequency power of ``generated`` over ``real`` (both HU ``(Z, H, W)`` on one grid) in the
    patches of :func:`tissue_patches`; None with fewer than :data:`MIN_PATCHES` patches."""
    from tracect.evaluate.metrics import high_frequency_ratio

    corners = tissue_patches(tissues, tissue, patch)
    if len(corners) < MIN_PATCHES:
        return None

    def cut(v):
        return np.stack([v[z, y:y + patch, x:x + patch] for z, y, x in corners]).astype(np.float32)

    return high_frequency_ratio(cut(generated), cut(real))


def band_power(freq: np.ndarray, nps: np.ndarray, lo: float, hi: float) -> float:
    """∫ NPS(f) 2πf df over ``[lo, hi]`` cycles per mm of a radial NPS (HU² mm²): the variance (HU²) that
    the band carries."""
    grid = np.linspace(lo, hi, 200)
    return float(np.trapezoid(np.interp(grid, freq, nps) * 2 * np.pi * grid, grid))


def resolves(spacing_yx, band=FINE_BAND) -> bool:
    """Whether a grid of in-plane ``spacing_yx`` mm holds ``band`` (its Nyquist frequency reaches the
    band's top)."""
    return 0.5 / max(float(s) for s in spacing_yx) >= band[1]


def fine_texture_ratio(generated: np.ndarray, reference: np.ndarray, spacing_yx, band=FINE_BAND,
                       min_patches: int = MIN_PATCHES) -> float | None:
    """Power in ``band`` (cycles per mm) of the noise power spectrum of ``generated`` over ``reference``
    (HU ``(Z, Y, X)`` on one grid of in-plane ``spacing_yx`` mm), both in the reference's patches of
    uniform soft tissue. None where the grid cannot resolve the band (its Nyquist frequency below the
    band's top: a 3 mm grid) or with fewer than ``min_patches`` patches."""
    from tracect.generate.grain import cut_patches, patch_spectrum, soft_tissue_corners

    if not resolves(spacing_yx, band):
        return None
    corners = soft_tissue_corners(np.asarray(reference))
    if len(corners) < min_patches:
        return None

    def power(v):
        return band_power(*patch_spectrum(cut_patches(np.asarray(v), corners), spacing_yx), *band)

    real = power(reference)
    return power(generated) / real if real > 0 else None
