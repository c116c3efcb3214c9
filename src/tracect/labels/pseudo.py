"""Coarse anatomy from Hounsfield units alone: pseudo-labels for CT that has no mask.

Most real CT collections come without organ masks. What HU can tell apart is the tissue, not the organ:
the :data:`TISSUE` vocabulary. Each step is a threshold with a connectivity or shape rule after it, all
in millimetres so that a 0.6 mm and a 6 mm pixel give the same anatomy:

1. **body**: voxels above ``air_hu``, opened in-plane by ``open_mm`` (cuts the scanner table, blankets
   and tubes where they touch the skin), the largest 3D component kept, what the opening shaved off the
   skin given back within ``open_mm``, holes filled slice by slice. The circular field-of-view padding
   that some scanners store (-3024 HU in the CRLM cases) reads as air.
2. **lung**: air (below ``lung_hu``) inside the body, in 3D components; a component is lung when it
   holds at least ``lung_min_ml``, its voxels are not mostly pure gas (lung parenchyma with its
   vessels averages -700 to -900 HU; gas in bowel or stomach is near -1000 HU), and it lies where the
   lungs are: a component of ``lung_seed_ml`` or more, or one whose centre lies above the lowest tenth of
   those, or, in a scan with no such component, one that
   reaches the top slice (the lung bases of an abdominal scan); the trachea and main
   bronchi join the lungs' component and count as lung, as in the ``tracect`` vocabulary. Vessels and
   airway walls inside the lung (holes up to ``lung_hole_mm2`` per slice) are lung.
3. **gas**: any other air inside the body (bowel, stomach, airway outside the lungs).
4. **bone**: components above ``bone_hu`` with cortical bone: at least ``cortex_share`` of the
   component at or above ``cortical_hu`` (an enhancing kidney reaches it in a few voxels only, the
   spine of a real CT in about a tenth of its component), or some voxel there and a mean of at least
   ``cancellous_hu`` (dense cancellous bone behind a thin or blurred cortex); contrast-filled vessels rarely reach
   ``cortical_hu``, though a vessel that touches a bone joins its component),
   marrow filled: holes up to ``marrow_hole_mm2`` per slice (a vertebral body's, not the pelvic
   inlet's) whose mean is fatty (below ``fat_hu``) or cancellous (above ``marrow_hu``), not the
   spinal canal's fluid and cord. At pixels much coarser than the cortex (over about 3 mm) partial
   volume lowers the cortex below ``cortical_hu`` and thin bones are missed.
5. **vessel**: enhancing tissue above ``vessel_hu`` that is not bone: contrast-filled vessels in
   contrast phases, and also whatever else contrast fills (enhancing kidneys, oral contrast in bowel).
6. **fat** below ``fat_hu``, **soft_tissue** above it: the rest of the body (organs, muscle, skin).

Deterministic, no learned weights; a 512 x 512 x 300 CT takes seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from tracect.data.body import bbox
from tracect.data.grid import replace_padding
from tracect.labels.vocabulary import tissue

TISSUE = tissue()  # the pseudo-labels' vocabulary; the body is every labelled voxel


@dataclass(frozen=True)
class PseudoLabelConfig:
    """Thresholds (HU) and sizes (mm, mm², mL) of :func:`pseudo_labels`."""

    air_hu: float = -500.0  # body: above it
    open_mm: float = 4.0  # body: in-plane opening radius that parts the table from the skin
    lung_hu: float = -400.0  # lung and gas: below it
    lung_min_ml: float = 5.0
    lung_seed_ml: float = 100.0  # a lung for sure; smaller pieces are lung at its levels
    gas_hu: float = -950.0  # pure gas; a lung component has under gas_share of its voxels below it
    gas_share: float = 0.6
    lung_hole_mm2: float = 150.0
    bone_hu: float = 180.0
    cortical_hu: float = 500.0
    cortex_share: float = 0.03  # bone: share of a component at or above cortical_hu ...
    cancellous_hu: float = 250.0  # ... or its mean HU (with some voxel at cortical_hu)
    bone_min_ml: float = 0.05  # a bone component smaller than this (noise, calcification) is not bone
    marrow_hole_mm2: float = 1800.0
    marrow_hu: float = 80.0
    soft_hu: float = 50.0  # soft tissue around bone, for the half-height edge
    vessel_hu: float = 150.0
    vessel_min_ml: float = 0.2
    fat_hu: float = -30.0
    smooth_mm: float = 0.8  # in-plane Gaussian before the tissue thresholds (noise of sharp kernels)

    def to_json(self) -> dict:
        return asdict(self)


def _disk(radius_px: int) -> np.ndarray:
    r = max(int(radius_px), 0)
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    return (x * x + y * y <= r * r).astype(np.uint8)


def _per_slice(op, mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:

    out = np.empty_like(mask)
    for z in range(mask.shape[0]):
        out[z] = op(mask[z].view(np.uint8), kernel).view(bool)
    return out


_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)  # 2D connectivity within each axial slice


def _components(mask: np.ndarray, structure=None) -> tuple[np.ndarray, int, np.ndarray]:
    """Connected components of ``mask``: (ids ``(Z, Y, X)`` int32, their number, voxels of each id
    ``(n + 1,)`` with 0 for the background)."""
    ids, n = ndimage.label(mask, structure=structure)
    sizes = np.bincount(ids.ravel(), minlength=n + 1)
    sizes[0] = 0
    return ids, n, sizes


def _largest_component(mask: np.ndarray) -> np.ndarray:
    ids, n, sizes = _components(mask)
    return ids == int(np.argmax(sizes)) if n else mask.copy()


def _holes(mask: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """The holes of each axial slice of ``mask`` (background regions that do not reach the slice's
    edge) as components: (ids, number, sizes) as :func:`_components`."""
    ids, n, sizes = _components(~mask, _IN_PLANE)
    edge = np.unique(np.concatenate([ids[:, 0].ravel(), ids[:, -1].ravel(), ids[:, :, 0].ravel(), ids[:, :, -1].ravel()]))
    sizes[edge] = 0
    return ids, n, sizes


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` ``(Z, Y, X)`` bool with every hole of each axial slice filled."""
    ids, n, sizes = _holes(mask)
    return mask | (sizes > 0)[ids]


def fill_small_holes(mask: np.ndarray, max_px: float, hu: np.ndarray | None = None,
                     keep_between: tuple[float, float] | None = None) -> np.ndarray:
    """``mask`` ``(Z, Y, X)`` bool with the holes of each axial slice up to ``max_px`` pixels filled;
    with ``hu`` and ``keep_between``, a hole whose mean HU lies in that range stays open."""
    ids, n, sizes = _holes(mask)
    fill = (sizes > 0) & (sizes <= max_px)
    if keep_between is not None and fill.any():
        inside = fill[ids]
        mean = np.bincount(ids[inside], weights=hu[inside], minlength=n + 1) / np.maximum(sizes, 1)
        fill &= ~((mean >= keep_between[0]) & (mean <= keep_between[1]))
    return mask | fill[ids]


def body_mask(hu: np.ndarray, spacing: tuple[float, float, float], config: PseudoLabelConfig = PseudoLabelConfig()) -> np.ndarray:
    """The body of a canonical CT ``(Z, Y, X)`` in HU with ``spacing`` (z, y, x) mm -> bool ``(Z, Y, X)``."""
    import cv2

    fg = hu > config.air_hu
    r = max(1, round(config.open_mm / float(spacing[1])))
    kernel = _disk(r)
    opened = _per_slice(lambda m, k: cv2.morphologyEx(m, cv2.MORPH_OPEN, k), fg, kernel)
    core = _largest_component(opened)
    if not core.any():
        return core
    # give back the skin the opening shaved off, not what lies beyond it (the table)
    grown = fg & _per_slice(lambda m, k: cv2.dilate(m, k), core, _disk(r + 1))
    return fill_holes(_largest_component(grown))


def pseudo_labels(hu: np.ndarray, spacing: tuple[float, float, float],
                  config: PseudoLabelConfig = PseudoLabelConfig()) -> tuple[np.ndarray, dict]:
    """Tissue labels of a canonical CT ``(Z, Y, X)`` in HU -> (uint8 ``(Z, Y, X)`` ids of :data:`TISSUE`,
    a record: the body and each class's volume in mL, the lung and gas components found)."""
    import cv2

    c = config
    hu = np.asarray(hu, dtype=np.float32)
    dz, dy, dx = (float(s) for s in spacing)
    voxel_ml = dz * dy * dx / 1000.0
    pixel_mm2 = dy * dx
    hu, _ = replace_padding(hu)  # a scanner's padding outside its field of view is air
    full = hu.shape
    body = body_mask(hu, spacing, c)
    box = bbox(body)
    if box is None:
        return np.zeros(full, np.uint8), {"air_components": [], "ml": {"body": 0.0, **{n: 0.0 for n in TISSUE.labels.values()}}}
    # the rest works inside the body's bounding box (one voxel of margin keeps holes enclosed)
    lo, hi = np.maximum(box[0] - 1, 0), np.minimum(box[1] + 1, full)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    hu, body = hu[crop], body[crop]
    sigma = c.smooth_mm / dy
    smooth = np.stack([cv2.GaussianBlur(s, (0, 0), sigma) for s in hu]) if sigma >= 0.3 else hu

    # lung and gas: air components inside the body
    air = body & (smooth < c.lung_hu)
    comps, n, vox = _components(air)
    lung = np.zeros_like(air)
    record = {"air_components": []}
    if n:
        size = vox[1:] * voxel_ml
        inside = comps[air]
        pure = np.bincount(inside, weights=hu[air] < c.gas_hu, minlength=n + 1)[1:] / np.maximum(vox[1:], 1)
        mean = np.bincount(inside, weights=hu[air], minlength=n + 1)[1:] / np.maximum(vox[1:], 1)
        per_slice = np.stack([np.bincount(cz[a], minlength=n + 1)[1:] for cz, a in zip(comps, air)])  # (Z, n)
        zs = np.arange(hu.shape[0], dtype=np.float64)
        z_mid = (per_slice * zs[:, None]).sum(0) / np.maximum(per_slice.sum(0), 1)
        z_top = np.argmax(per_slice > 0, axis=0)
        parenchyma = (pure < c.gas_share) & (size >= c.lung_min_ml)
        seed = parenchyma & (size >= c.lung_seed_ml)
        if seed.any():  # smaller pieces count where the big lungs are (apex, bases), not below them
            weights = per_slice[:, seed].sum(1)
            low = zs[np.searchsorted(np.cumsum(weights), 0.9 * weights.sum())]
            is_lung = seed | (parenchyma & (z_mid <= low))
        else:  # a scan that ends below the lungs' bulk: lung bases reach its top slice
            is_lung = parenchyma & (z_top == 0)
        lung = np.concatenate([[False], is_lung])[comps]
        big = np.argsort(size)[::-1][:6]
        record["air_components"] = [{"ml": round(float(size[i]), 1), "mean_hu": round(float(mean[i]), 1),
                                     "pure_gas_share": round(float(pure[i]), 3), "lung": bool(is_lung[i])} for i in big]
    lung = fill_small_holes(lung, c.lung_hole_mm2 / pixel_mm2) & body
    gas = air & ~lung

    # bone: dense components that hold cortical bone; marrow filled
    dense = body & ~lung & (smooth >= c.bone_hu)
    comps, n, vox = _components(dense)
    bone = np.zeros_like(dense)
    if n:
        # a bone's cortex makes a good share of its component bright; an enhancing kidney or bowel wall
        # reaches cortical_hu only in a few voxels (noise, small vessels)
        n_bright = np.bincount(comps[dense & (smooth >= c.cortical_hu)], minlength=n + 1)
        # ... or, where the cortex is thin or blurred, cancellous bone dense throughout (an enhancing
        # kidney averages about 200 HU, a young vertebra 250-350)
        mean = np.bincount(comps[dense], weights=smooth[dense], minlength=n + 1) / np.maximum(vox, 1)
        keep = ((n_bright > 0) & ((n_bright >= c.cortex_share * vox) | (mean >= c.cancellous_hu))
                & (vox * voxel_ml >= c.bone_min_ml))
        keep[0] = False
        bone = keep[comps]
    # the edge at half height between the bone's neighbourhood peak and soft tissue: a blurred cortex
    # spreads above bone_hu well beyond the bone
    peak_near = np.stack([cv2.dilate(sl, np.ones((3, 3), np.uint8)) for sl in smooth])
    bone &= smooth >= (peak_near + c.soft_hu) / 2
    bone = fill_small_holes(bone, c.marrow_hole_mm2 / pixel_mm2, smooth, (c.fat_hu, c.marrow_hu)) & body & ~lung

    # enhancing tissue that is not bone
    vessel = body & ~lung & ~bone & (smooth >= c.vessel_hu)
    if vessel.any():
        comps, n, vox = _components(vessel)
        keep = vox * voxel_ml >= c.vessel_min_ml
        keep[0] = False
        vessel = keep[comps]

    ids = {name: i for i, name in TISSUE.labels.items()}
    out = np.zeros(hu.shape, np.uint8)  # (the crop)
    out[body] = ids["soft_tissue"]
    out[body & (smooth < c.fat_hu)] = ids["fat"]
    out[vessel] = ids["vessel"]
    out[bone] = ids["bone"]
    out[gas] = ids["gas"]
    out[lung] = ids["lung"]
    counts = np.bincount(out.ravel(), minlength=len(TISSUE.labels) + 1)
    record["ml"] = {"body": round(float(body.sum() * voxel_ml), 1),
                    **{name: round(float(counts[i] * voxel_ml), 1) for i, name in TISSUE.labels.items()}}
    labels = np.zeros(full, np.uint8)
    labels[crop] = out
    return labels, record
