"""The report's lesions placed in the mask: a lesion map on the generation grid.

A mask says where the liver is, not where its cyst is. A frame-pair model generates a volume window
by window, so a lesion left to each window's chance would start in many windows or in none; the
report's lesion is therefore placed once per volume, before sampling, and every window sees its
share as a lesion map beside the mask (what the model learned from the phantom's true lesion maps).

Placement: each lesion of :func:`tracect.data.findings.parse_findings` goes inside its named organ
(kidneys by side where the report names one), in the region it names (right or left hepatic lobe,
upper pole, interpolar region or lower pole of a kidney or the spleen) where that region has room, at
a centre at least half its diameter (plus half a voxel) deep inside the organ, drawn from the
volume's seed; it shrinks (x0.85) until it fits. A lesion whose organ is not in the mask is not drawn
and the plan says so.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tracect.data.findings import DEFAULT_LESION_MM, Findings, organ_group
from tracect.data.lesions import ball, kind_code

MIN_PIXELS_ACROSS = 2.5  # a smaller lesion is not drawn smaller but at this size (below it: invisible)


def _world_of(affine: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """World RAS mm ``(N, 3)`` of voxel indices ``(N, 3)``."""
    A = np.asarray(affine, float)
    return idx @ A[:3, :3].T + A[:3, 3]


def _organ(labels: np.ndarray, names: dict[str, int], organ: str, affine: np.ndarray) -> np.ndarray | None:
    """The voxels of ``organ``; a side-specific kidney from a mask with one ``kidney`` label is the
    kidney voxels on that side of the body's midline (world RAS: +x is the patient's right)."""
    if organ in names:
        return labels == names[organ]
    group = organ_group(organ)
    ids = [i for n, i in names.items() if n == group or n.startswith(group + "_")]
    if not ids:
        return None
    sel = np.isin(labels, ids)
    if organ in ("kidney_left", "kidney_right") and sel.any():
        body = np.argwhere(labels[::2, ::2, ::2] > 0) * 2  # the midline from every 8th labelled voxel
        mid = np.median(_world_of(affine, body)[:, 0])
        idx = np.argwhere(sel)
        x = _world_of(affine, idx)[:, 0]
        keep = (x < mid) if organ == "kidney_left" else (x >= mid)
        sel = np.zeros_like(sel)
        sel[tuple(idx[keep].T)] = True
    return sel


def _region(organ_voxels: np.ndarray, region: str | None, affine: np.ndarray) -> np.ndarray:
    """The part of an organ a report's location words name (the whole organ for None)."""
    if region is None or not organ_voxels.any():
        return organ_voxels
    idx = np.argwhere(organ_voxels)
    world = _world_of(affine, idx)
    if region in ("right lobe", "left lobe"):
        # Cantlie's line: the right lobe is about 60% of the liver's volume, on the patient's right (+x)
        cut = np.quantile(world[:, 0], 0.4)
        keep = (world[:, 0] >= cut) if region == "right lobe" else (world[:, 0] < cut)
    else:
        z = world[:, 2]
        frac = (z.max() - z) / max(z.max() - z.min(), 1e-6)  # 0 at the organ's top (superior), 1 at its bottom
        keep = {"upper pole": frac < 1 / 3, "interpolar": (frac >= 1 / 3) & (frac <= 2 / 3),
                "lower pole": frac > 2 / 3}.get(region, np.ones(len(idx), bool))
    out = np.zeros_like(organ_voxels)
    out[tuple(idx[keep].T)] = True
    return out


def _depth(inside: np.ndarray, spacing) -> np.ndarray:
    """Distance in mm from each voxel of ``inside`` to the nearest voxel outside it (zero outside),
    computed in the organ's bounding box only."""
    out = np.zeros(inside.shape, np.float32)
    idx = np.argwhere(inside)
    if not len(idx):
        return out
    lo, hi = np.maximum(idx.min(0) - 1, 0), idx.max(0) + 2
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    padded = np.pad(inside[box], 1)  # the box's own edge is outside the organ
    out[box] = ndimage.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1]
    return out


def place_lesions(findings: Findings, labels: np.ndarray, affine: np.ndarray, names: dict[str, int],
                  rng: np.random.Generator) -> tuple[np.ndarray, list[dict], list[str]]:
    """Place ``findings.lesions`` in ``labels`` ``(Z, H, W)`` (model ids; ``names``: label name -> id)
    on the grid ``affine`` -> ``(lesion map (Z, H, W) uint8, placed lesions, notes)``."""
    out = np.zeros(labels.shape, np.uint8)
    spacing = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    placed, notes = [], []
    for les in findings.lesions:
        organ = _organ(labels, names, les.organ, affine)
        if organ is None or organ.sum() == 0:
            notes.append(f"the report's {les.kind} lesion in the {les.organ.replace('_', ' ')} is not drawn: "
                         "the mask has no such organ on this grid")
            continue
        free = organ & (out == 0)
        region = _region(free, les.region, affine)
        where = region if region.any() else free
        depth = _depth(free, spacing)
        d = les.diameter_mm or DEFAULT_LESION_MM
        smallest = MIN_PIXELS_ACROSS * float(max(spacing[1:]))
        d = max(d, smallest)
        cand = np.zeros((0, 3), int)
        while True:
            cand = np.argwhere(where & (depth >= d / 2 + 0.5 * float(spacing.max())))
            if len(cand) or d <= smallest:
                break
            d = max(d * 0.85, smallest)
        if not len(cand):  # no room for the smallest visible lesion: the deepest voxel of the organ
            cand = np.argwhere(where & (depth >= depth[where].max()))
        c = cand[int(rng.integers(len(cand)))]
        sel = ball(labels.shape, affine, c, d) & organ
        out[sel] = kind_code(les.kind)
        world = np.asarray(affine, float) @ np.r_[c.astype(float), 1.0]
        placed.append({"organ": les.organ, "kind": les.kind, "diameter_mm": round(float(d), 1),
                       "stated_diameter_mm": les.diameter_mm, "region": les.region,
                       "center_index": [int(v) for v in c], "center_ras_mm": [round(float(v), 1) for v in world[:3]],
                       "voxels": int(sel.sum())})
    return out, placed, notes
