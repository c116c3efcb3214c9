"""Phantom image formation: tissue map -> CT in Hounsfield units (contrast, texture, lesions, blur, noise).

The steps follow what a scanner does to real anatomy: each tissue gets a base HU for the contrast
phase, low-frequency texture varies it inside organs, image-only structures are mixed in (pulmonary
vessels, focal lesions, cortical bone rims), a Gaussian point-spread function blurs it (partial
volume), and quantum noise is added. All arrays are canonical ``(Z, Y, X)``; HU throughout.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tracect.phantom.anatomy import Anatomy
from tracect.phantom.geometry import Tissue, label_id

T = Tissue
# base HU ranges of a non-contrast scan; one value per case is drawn from each range
NON_CONTRAST = {
    T.AIR: (-1000, -1000), T.FAT: (-110, -90), T.MUSCLE: (45, 55), T.SOFT: (30, 50),
    T.LUNG: (-870, -840), T.AIRWAY: (-1000, -990), T.GAS: (-1000, -990), T.CANCELLOUS: (200, 350),
    T.CORTICAL: (700, 1000), T.DISC: (70, 100), T.CSF: (5, 15), T.CORD: (25, 35), T.CARTILAGE: (90, 140),
    T.LIVER: (55, 65), T.SPLEEN: (45, 50), T.KIDNEY_CORTEX: (30, 35), T.KIDNEY_MEDULLA: (30, 35),
    T.PANCREAS: (35, 45), T.ARTERY: (35, 45), T.VEIN: (35, 45), T.PORTAL: (35, 45),
    T.HEART_LEFT: (35, 45), T.HEART_RIGHT: (35, 45), T.MYOCARDIUM: (40, 50), T.BOWEL_WALL: (35, 45),
    T.BOWEL_FLUID: (5, 20), T.STOOL: (-120, -40), T.STOMACH: (10, 30), T.BILE: (0, 20), T.URINE: (5, 15),
}
# arterial phase: absolute values for the contrast-filled blood, increments for enhancing tissue
ARTERIAL_ABS = {T.ARTERY: (250, 350), T.HEART_LEFT: (230, 330), T.HEART_RIGHT: (140, 220),
                T.VEIN: (80, 120), T.PORTAL: (90, 130)}
ARTERIAL_ADD = {T.KIDNEY_CORTEX: (100, 150), T.KIDNEY_MEDULLA: (20, 40), T.SPLEEN: (10, 20),
                T.LIVER: (10, 20), T.PANCREAS: (40, 70), T.MYOCARDIUM: (50, 80), T.BOWEL_WALL: (15, 30),
                T.MUSCLE: (3, 8), T.SOFT: (5, 15)}
# amplitude (HU, 1 sd) of the low-frequency texture inside each tissue
TEXTURE = {T.FAT: 6, T.MUSCLE: 5, T.SOFT: 6, T.LUNG: 18, T.CANCELLOUS: 40, T.CORTICAL: 80,
           T.LIVER: 5, T.SPLEEN: 4, T.KIDNEY_CORTEX: 5, T.KIDNEY_MEDULLA: 5, T.PANCREAS: 8,
           T.BOWEL_WALL: 6, T.BOWEL_FLUID: 6, T.STOOL: 90, T.STOMACH: 8, T.DISC: 8}


def sample_hu(rng: np.random.Generator, phase: str, fatty_liver: bool) -> np.ndarray:
    """A lookup table tissue code -> base HU for one case (float32, one entry per :class:`Tissue`)."""
    lut = np.zeros(len(Tissue) + 1, np.float32)  # last entry: pulmonary vessel blood
    for tissue, (lo, hi) in NON_CONTRAST.items():
        lut[tissue] = rng.uniform(lo, hi)
    lut[T.KIDNEY_MEDULLA] = lut[T.KIDNEY_CORTEX]
    lut[[T.VEIN, T.PORTAL, T.HEART_LEFT, T.HEART_RIGHT]] = lut[T.ARTERY]  # one blood pool
    lut[-1] = lut[T.ARTERY]
    if phase == "arterial":
        for tissue, (lo, hi) in ARTERIAL_ABS.items():
            lut[tissue] = rng.uniform(lo, hi)
        for tissue, (lo, hi) in ARTERIAL_ADD.items():
            lut[tissue] += rng.uniform(lo, hi)
        lut[-1] = rng.uniform(150, 250)  # pulmonary arteries and veins both opacified
    if fatty_liver:  # steatosis: fat lowers the attenuation of the parenchyma
        lut[T.LIVER] -= rng.uniform(30, 60)
    return lut


def lung_vessels(anat: Anatomy, rng: np.random.Generator, n_targets: int = 400) -> np.ndarray:
    """Pulmonary vessel trees from each hilum toward points spread through the lung, rasterised as
    the fraction of each voxel they fill -> float32 ``(Z, Y, X)`` in [0, 1], zero outside the lungs."""
    lung = np.isin(anat.labels, [label_id(n) for n in LUNG_LOBES])
    out = np.zeros(anat.labels.shape, np.float32)
    if not lung.any():
        return out
    g = anat.grid
    step = np.array([abs(g.t[1] - g.t[0]) if len(g.t) > 1 else 5.0, abs(g.y[1] - g.y[0]), abs(g.x[1] - g.x[0])])
    c = anat.info["carina"]
    for sign in (1, -1):
        vox = np.argwhere(lung & ((g.x[None, None, :] > 3) == (sign > 0)))
        if len(vox) < 10:
            continue
        pick = vox[rng.choice(len(vox), min(n_targets, len(vox)), replace=False)]
        pts = np.stack([g.t[pick[:, 0]], g.y[pick[:, 1]], g.x[pick[:, 2]]], 1)
        pts += rng.uniform(-0.5, 0.5, pick.shape) * step  # off the voxel centres
        root = np.array([c[0] + 25 * anat.body.s, c[1] + 10, c[2] + sign * 40])
        segs: list = []
        _branch(root, pts, 8.0 * anat.body.s, 0, rng, segs)
        _splat(out, segs, g, step)
    return np.minimum(out, 1) * lung


def _branch(p, pts, r, depth, rng, segs) -> None:
    """Grow one branch toward the centroid of its target points, then split them in two."""
    if len(pts) <= 2 or depth > 9:
        for q in pts:
            segs.append((p, q, r * 0.8))
        return
    c = pts.mean(0)
    q = p + (c - p) * rng.uniform(0.35, 0.55)
    segs.append((p, q, r))
    axis = np.linalg.svd(pts - c, full_matrices=False)[2][0]  # split across the longest extent
    proj = (pts - c) @ axis
    order = np.argsort(proj)
    half = len(pts) // 2
    for part in (pts[order[:half]], pts[order[half:]]):
        _branch(q, part, r * 0.82, depth + 1, rng, segs)


def _splat(out, segs, g, step) -> None:
    """Add each segment's volume (pi r^2 per mm of length) to the voxels it crosses."""
    h = 0.4 * step.min()
    origin = np.array([g.t[0], g.y[0], g.x[0]])
    sgn = np.array([np.sign(g.t[-1] - g.t[0]) or 1, np.sign(g.y[-1] - g.y[0]), np.sign(g.x[-1] - g.x[0])])
    for p, q, r in segs:
        n = max(2, int(np.linalg.norm(q - p) / h))
        s = np.linspace(p, q, n)
        idx = np.rint((s - origin) * sgn / step).astype(int)
        ok = np.all((idx >= 0) & (idx < out.shape), axis=1)
        vol = np.pi * r * r * (np.linalg.norm(q - p) / n) / step.prod()
        np.add.at(out, tuple(idx[ok].T), vol)


LUNG_LOBES = ("lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right",
              "lung_middle_lobe_right", "lung_lower_lobe_right")


def cortical_rim(tissue: np.ndarray) -> np.ndarray:
    """Tissue map with the outer voxel rim of each bone (in-plane, as slices are read) cortical."""
    bone = tissue == T.CANCELLOUS
    inner = ndimage.binary_erosion(bone, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool))
    out = tissue.copy()
    out[bone & ~inner] = T.CORTICAL
    return out


def smooth_noise(rng: np.random.Generator, shape, sigma) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation (float32)."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return f / max(float(f.std()), 1e-6)


MIN_CONTRAST = 25.0  # HU between a lesion and its organ (at least), so that it can be seen
LESION_ORGANS = {"liver": 0.5, "kidney_left": 0.15, "kidney_right": 0.15, "spleen": 0.2}


def place_lesions(rng: np.random.Generator, anat: Anatomy, spacing, phase: str, lut: np.ndarray, n: int,
                  diameter: tuple[float, float], noise_std: float = 0.0) -> list[dict]:
    """Up to ``n`` focal lesions, each wholly inside one organ of the mask (never drawn in it).

    ``spacing`` is the voxel size (dz, dy, dx) in mm. What the report describes must be visible: a
    lesion is at least 2.5 pixels across and differs from its organ by at least
    max(:data:`MIN_CONTRAST`, 2 x ``noise_std``) HU. Returns dicts with organ, location, kind,
    diameter_mm, hu, center_zyx (voxel) and the semi-axes (mm, t/y/x) used to draw it.
    """
    min_contrast = max(MIN_CONTRAST, 2.0 * noise_std)
    organs = [o for o in LESION_ORGANS if (anat.labels == label_id(o)).sum() >= 8]
    out: list[dict] = []
    for _ in range(4 * n):  # a few tries: some organ/kind pairs would not be visible
        if not organs or len(out) == n:
            break
        p = np.array([LESION_ORGANS[o] for o in organs])
        organ = str(rng.choice(organs, p=p / p.sum()))
        kinds = ["cyst", "hypodense"] + (["hyperenhancing"] if phase == "arterial" else [])
        kind = str(rng.choice(kinds, p=[0.5, 0.3, 0.2] if len(kinds) == 3 else [0.6, 0.4]))
        tissues = {"liver": [T.LIVER], "spleen": [T.SPLEEN]}.get(organ, [T.KIDNEY_CORTEX, T.KIDNEY_MEDULLA])
        lo, hi = min(lut[t] for t in tissues), max(lut[t] for t in tissues)  # kidney: medulla .. cortex
        hu = {"cyst": rng.uniform(0, 10), "hypodense": max(5.0, lo - rng.uniform(35, 55)),
              "hyperenhancing": hi + rng.uniform(max(50, min_contrast), 90)}[kind]
        if kind != "hyperenhancing" and lo - hu < min_contrast:
            continue  # e.g. a cyst in a steatotic liver: invisible, and radiologists would not report it
        lesion = _fit(rng, anat, spacing, organ, diameter, out)
        if lesion is None:
            organs.remove(organ)  # no room left in this organ
            continue
        lesion.update(organ=organ, kind=kind, hu=round(float(hu), 1),
                      location=_location(anat, organ, lesion["center_zyx"]))
        out.append(lesion)
    return out


def _fit(rng, anat: Anatomy, spacing, organ: str, diameter, placed) -> dict | None:
    """Draw a size and a centre deep enough in the organ for the whole lesion (shrinking if needed)."""
    mask = anat.labels == label_id(organ)
    depth = ndimage.distance_transform_edt(mask, sampling=spacing)
    lo = max(diameter[0], 2.5 * max(spacing[1:]))
    d = rng.uniform(lo, max(lo, diameter[1]))
    while d >= lo:
        ok = depth >= d / 2 + 0.5 * max(spacing)  # clear of the organ border by half a voxel
        for q in placed:  # no overlap with an earlier lesion
            zz, yy, xx = np.ogrid[:mask.shape[0], :mask.shape[1], :mask.shape[2]]
            dist = np.sqrt(((zz - q["center_zyx"][0]) * spacing[0]) ** 2 + ((yy - q["center_zyx"][1]) * spacing[1]) ** 2
                           + ((xx - q["center_zyx"][2]) * spacing[2]) ** 2)
            ok &= dist > (d + q["diameter_mm"]) / 2 + 2
        cand = np.argwhere(ok)
        if len(cand):
            c = cand[rng.integers(len(cand))]
            semi = d / 2 * np.array([1.0, rng.uniform(0.8, 1.0), rng.uniform(0.8, 1.0)])
            return {"diameter_mm": float(round(d)), "center_zyx": [int(v) for v in c], "semi_mm": semi.tolist()}
        d *= 0.85
    return None


def _location(anat: Anatomy, organ: str, c) -> str:
    """Radiological location words for a lesion centre: hepatic lobe, or pole of kidney/spleen."""
    g, info = anat.grid, anat.info
    t, x = g.t[c[0]], g.x[c[2]]
    if organ == "liver":  # Cantlie's line runs through the gallbladder fossa
        return "right hepatic lobe" if x < info["gallbladder_c"][2] + 15 else "left hepatic lobe"
    z = np.nonzero((anat.labels == label_id(organ)).any(axis=(1, 2)))[0]
    frac = (t - g.t[z.min()]) / max(g.t[z.max()] - g.t[z.min()], 1e-6)
    part = "upper pole" if frac < 1 / 3 else "lower pole" if frac > 2 / 3 else "interpolar region"
    if organ == "spleen":
        return "spleen" if part == "interpolar region" else f"{part} of the spleen"
    return f"{part} of the {organ.split('_')[1]} kidney"


def render(rng: np.random.Generator, anat: Anatomy, lut: np.ndarray, lesions: list[dict], spacing,
           noise_std: float) -> np.ndarray:
    """The CT of an anatomy -> int16 HU ``(Z, Y, X)``, clipped to [-1024, 3071].

    ``spacing`` (dz, dy, dx) mm scales the texture, the point-spread function and lesion edges.
    """
    spacing = np.asarray(spacing, float)
    hu = _object(rng, anat, lut, lesions, spacing)
    # point-spread function (voxels): ~4 mm wide in-plane, a fraction of a slice along z
    sigma = (float(np.clip(1.5 / spacing[0], 0.3, 0.6)),) + tuple(float(np.clip(4 / s, 0.5, 0.8)) for s in spacing[1:])
    hu = ndimage.gaussian_filter(hu, sigma)
    # quantum noise, slightly correlated in-plane as reconstruction kernels make it (unit sd overall)
    noise = smooth_noise(rng, hu.shape, (0, 0.5, 0.5)) * 0.5
    noise += rng.standard_normal(hu.shape, dtype=np.float32) * 0.87
    hu += noise_std * noise
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)


def _object(rng, anat: Anatomy, lut: np.ndarray, lesions: list[dict], spacing: np.ndarray) -> np.ndarray:
    """The attenuation of the patient before the scanner blurs and adds noise (float32 HU)."""
    tissue = cortical_rim(anat.tissue)
    lut = lut.copy()  # a ~1.5 mm cortex fills only part of a rim voxel: partial volume
    lut[T.CORTICAL] = lut[T.CANCELLOUS] + (lut[T.CORTICAL] - lut[T.CANCELLOUS]) * np.clip(4.0 / spacing[1], 0.5, 1)
    hu = lut[tissue]
    amp = np.zeros(len(lut), np.float32)
    for k, v in TEXTURE.items():
        amp[k] = v
    tex = smooth_noise(rng, tissue.shape, 6.0 / spacing)  # ~6 mm blobs of parenchymal texture
    hu += amp[tissue] * tex
    lung = tissue == T.LUNG  # dependent (posterior) lung is denser in a supine patient
    post = np.clip((anat.grid.y[None, :, None] + 60) / 160, 0, 1)
    hu += lung * (rng.uniform(30, 70) * post).astype(np.float32)
    f = lung_vessels(anat, rng)
    hu += f * (lut[-1] - hu)
    for les in lesions:
        w = _lesion_weight(anat, les, spacing) * (anat.labels == label_id(les["organ"]))
        hu += w * (les["hu"] + 4 * tex - hu)
    return hu


def _lesion_weight(anat: Anatomy, les: dict, spacing) -> np.ndarray:
    """Soft-edged ellipsoid: the fraction of each voxel inside the lesion (approximately)."""
    c = les["center_zyx"]
    g = anat.grid
    dt = g.t[:, None, None] - g.t[c[0]]
    dy = g.y[None, :, None] - g.y[c[1]]
    dx = g.x[None, None, :] - g.x[c[2]]
    a = np.asarray(les["semi_mm"])
    rho = np.sqrt((dt / a[0]) ** 2 + (dy / a[1]) ** 2 + (dx / a[2]) ** 2)
    edge = 0.5 * float(np.mean(spacing))  # half a voxel of partial volume at the boundary
    return np.clip(0.5 + (1 - rho) * a.min() / edge, 0, 1).astype(np.float32)
