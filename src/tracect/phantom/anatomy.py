"""Phantom anatomy: a parametric adult torso rasterised to a `total` label mask and a tissue map.

Every shape is defined in millimetres in a body frame whose axes follow the canonical array axes
``(Z, Y, X)``: ``t`` runs along the torso toward inferior (0 = top of the T1 vertebral body), ``y``
toward posterior and ``x`` toward the patient's left, both measured from the body centre. Shapes are
evaluated at the voxel centres of the case grid, so another spacing gives the same anatomy at
another resolution. The label mask holds TotalSegmentator ``total`` ids; the tissue map
(:class:`Tissue`) also separates what the mask does not (fat, gas, cortex, kidney cortex...), and
:mod:`tracect.phantom.intensity` turns it into Hounsfield units.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy import ndimage

from tracect.labels.vocabulary import total

LEVELS = ("C7",) + tuple(f"T{i}" for i in range(1, 13)) + tuple(f"L{i}" for i in range(1, 6))
_HEIGHT = np.array([18, 20, 21, 22, 22, 23, 24, 25, 25, 26, 27, 28, 29, 31, 33, 34, 34, 33], float)


# tissue classes of the image: several share one label, some (fat, gas, cortex) have none
Tissue = IntEnum("Tissue", [
    "AIR", "FAT", "MUSCLE", "SOFT", "LUNG", "AIRWAY", "GAS", "CANCELLOUS", "CORTICAL", "DISC", "CSF", "CORD",
    "CARTILAGE", "LIVER", "SPLEEN", "KIDNEY_CORTEX", "KIDNEY_MEDULLA", "PANCREAS", "ARTERY", "VEIN", "PORTAL",
    "HEART_LEFT", "HEART_RIGHT", "MYOCARDIUM", "BOWEL_WALL", "BOWEL_FLUID", "STOOL", "STOMACH", "BILE", "URINE",
], start=0)
BOWEL_TISSUE = (Tissue.BOWEL_WALL, Tissue.BOWEL_FLUID, Tissue.STOOL, Tissue.GAS)
_IDS = {name: i for i, name in total().labels.items()}


def label_id(name: str) -> int:
    """Id of a `total` label name."""
    return _IDS[name]


@dataclass
class Body:
    """Random habitus, all mm: vertebral levels along ``t``, envelope semi-axes at knots, fat layers."""
    top: np.ndarray            # (18,) t of the top of C7..L5
    bot: np.ndarray            # (18,) t of their bottom (the next top)
    s: float                   # length scale (stature)
    knots: np.ndarray          # t of the envelope knots
    a: np.ndarray              # lateral semi-axis at the knots
    b: np.ndarray              # anterior semi-axis
    bp: np.ndarray             # posterior semi-axis (the back is flatter)
    fat: tuple                 # subcutaneous fat: lateral, anterior, posterior
    wall: float                # muscle layer under the fat
    rib: float                 # rib layer (intercostal space) above the pleura
    spine_t: np.ndarray        # knots (t) of the spine's depth and size profiles
    spine_d: np.ndarray        # depth of the vertebral body centre under the back skin at spine_t
    vert_t: np.ndarray         # knots (t) of the vertebral size profile (see :meth:`vert`)
    cx: float = 0.0            # body centre offset in the field of view (left, posterior)
    cy: float = 0.0

    def lv(self, name: str, frac: float = 0.0) -> float:
        """t of a point ``frac`` of the way down vertebral level ``name`` (or 'S' = sacrum)."""
        if name == "S":
            return float(self.bot[-1] + frac * 105 * self.s)
        i = LEVELS.index(name)
        return float(self.top[i] + frac * (self.bot[i] - self.top[i]))

    @property
    def t_min(self) -> float:  # a scan starts no higher than C7 (there is no neck above it)
        return float(self.top[0] + 2)

    @property
    def t_end(self) -> float:
        return float(self.bot[-1] + 180 * self.s)

    @property
    def t_acet(self) -> float:  # femoral head centre
        return float(self.bot[-1] + 118 * self.s)

    def semi(self, t):
        """Envelope semi-axes (lateral, anterior, posterior) at ``t``."""
        return (np.interp(t, self.knots, self.a), np.interp(t, self.knots, self.b),
                np.interp(t, self.knots, self.bp))

    def fat_scale(self, t):
        """Subcutaneous fat is thinner over the chest than over the abdomen and hips."""
        return np.interp(t, [self.lv("T1"), self.lv("T8"), self.lv("L1"), self.lv("S")], [0.45, 0.55, 1.0, 1.1])

    def inner(self, t):
        """Semi-axes of the body cavity (inside fat, muscle and ribs) at ``t``."""
        a, b, bp = self.semi(t)
        d, k = self.wall + self.rib, self.fat_scale(t)
        return a - k * self.fat[0] - d, b - k * self.fat[1] - d, bp - k * self.fat[2] - d

    def spine_y(self, t):
        """y of the vertebral body centre: a fixed depth under the skin of the back."""
        depth = np.interp(t, self.spine_t, self.spine_d)
        return self.semi(t)[2] - self.fat_scale(t) * self.fat[2] - depth

    def vert(self, t):
        """Vertebral body half width, half depth and canal radius at ``t`` (mm)."""
        return tuple(np.interp(t, self.vert_t, v) * self.s for v in ((16, 16, 17.5, 21, 25, 26.5),
                                                           (9, 10, 12.5, 14, 16, 17), (9, 8, 7, 8, 9.5, 9)))

    def extent(self) -> tuple[float, float]:
        """Largest half width (x) and half depth (y) of the body from the field-of-view centre."""
        return float(self.a.max() + abs(self.cx)), float(max(self.b.max(), self.bp.max()) + abs(self.cy))

    def shrink(self, f: float) -> None:
        """Scale the cross-section by ``f`` (< 1) so that the body fits the field of view."""
        self.a, self.b, self.bp = self.a * f, self.b * f, self.bp * f
        self.fat = tuple(v * f for v in self.fat)
        self.spine_d = self.spine_d * f
        self.cx, self.cy = self.cx * f, self.cy * f


def sample_body(rng: np.random.Generator) -> Body:
    """A random adult: stature, vertebral heights, chest/abdomen/pelvis cross-sections, fat."""
    s = rng.uniform(0.9, 1.1)
    h = _HEIGHT * s * rng.uniform(0.95, 1.05, len(_HEIGHT))
    top = np.concatenate([[-h[0]], np.cumsum(h[1:]) - h[1:]])
    bot = top + h
    a_c, b_c = rng.uniform(130, 172), rng.uniform(100, 130)
    a_ab, b_ab = np.clip(a_c * rng.uniform(0.9, 1.12), 130, 190), rng.uniform(90, 140)
    a_pe, b_pe = np.clip(a_ab * rng.uniform(1.0, 1.12), 130, 190), np.clip(b_ab * rng.uniform(0.85, 1.0), 90, 140)
    L = lambda n, f=0.5: top[LEVELS.index(n)] + f * h[LEVELS.index(n)]  # noqa: E731
    knots = np.array([top[0] - 80, 0, L("T5"), L("T10"), L("L2"), bot[-1], bot[-1] + 118 * s, bot[-1] + 260 * s])
    a = np.array([0.62 * a_c, 0.9 * a_c, a_c, (a_c + a_ab) / 2, a_ab, a_pe, a_pe, 0.95 * a_pe])
    b = np.array([0.62 * b_c, 0.85 * b_c, b_c, (b_c + b_ab) / 2, b_ab, b_pe, 0.95 * b_pe, 0.9 * b_pe])
    bp = b * rng.uniform(0.9, 1.0)
    obese = (a_ab - 130) / 60 + (b_ab - 90) / 50  # 0 (lean) .. 2 (large)
    fat = tuple(float(v) for v in 8 + 9 * obese * rng.uniform(0.6, 1.4, 3) + rng.uniform(0, 6, 3))
    # the vertebral body centre lies deeper under the back in the lumbar lordosis than in the chest
    spine_t = np.array([top[0], 0, L("T7"), L("L3"), bot[-1] + 30 * s])
    spine_d = np.array([58, 66, 80, 95, 95]) * s * rng.uniform(0.92, 1.08)
    vert_t = np.array([L("C7"), L("T1"), L("T6"), L("T12"), L("L3"), L("L5")])
    body = Body(top, bot, s, knots, a, b, bp, fat, wall=rng.uniform(8, 14), rib=rng.uniform(9, 12),
                spine_t=spine_t, spine_d=spine_d, vert_t=vert_t, cx=rng.uniform(-10, 10), cy=rng.uniform(-12, 12))
    return body


@dataclass(frozen=True)
class Grid:
    """Voxel centres of the case grid in the body frame: ``t`` (Z,), ``y`` (Y,), ``x`` (X,), mm."""
    t: np.ndarray
    y: np.ndarray
    x: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.t), len(self.y), len(self.x)

    def zs(self, t0: float, t1: float) -> slice:
        """Slices whose centre lies in ``[t0, t1]`` (t increases with the slice index)."""
        return slice(int(np.searchsorted(self.t, t0)), int(np.searchsorted(self.t, t1, side="right")))


class Canvas:
    """The label and tissue arrays being painted; later paint wins, so order encodes priority."""

    def __init__(self, grid: Grid, body: Body):
        self.grid, self.body = grid, body
        self.labels = np.zeros(grid.shape, np.uint8)
        self.tissue = np.zeros(grid.shape, np.uint8)
        self.T = grid.t[:, None, None]
        self.Y = grid.y[None, :, None]
        self.X = grid.x[None, None, :]
        self._depth()

    def _depth(self) -> None:
        """Depth under the skin along the ray from the body centre (mm) and angle from the back."""
        a, b, bp = (v.astype(np.float32)[:, None, None] for v in self.body.semi(self.grid.t))
        y, x = self.Y.astype(np.float32), self.X.astype(np.float32)
        by = np.where(y < 0, b, bp)
        n = np.where(y < 0, np.float32(2.3), np.float32(3.0))  # squarer back: patients lie on it
        rho = ((np.abs(x) / a) ** n + (np.abs(y) / by) ** n) ** (1 / n)
        r = np.hypot(x, y)
        self.depth = r / np.maximum(rho, 1e-3) - r                                # >0 inside the body
        self.theta = np.arctan2(np.abs(x) / a, y / by).astype(np.float32)        # 0 back .. pi front
        fl, fa, fp = self.body.fat
        c = y / np.maximum(r, 1e-3)
        fat = fl + (fa - fl) * np.clip(-c, 0, 1) ** 2 + (fp - fl) * np.clip(c, 0, 1) ** 2
        self.fat = fat * self.body.fat_scale(self.grid.t).astype(np.float32)[:, None, None]
        # near the spine the cavity stops at the paraspinal muscles, not at the back wall
        self.cavity_depth = self.fat + self.body.wall + self.body.rib + 40 * np.clip(1 - self.theta / 0.75, 0, 1)

    def at(self, t0: float, t1: float):
        """A slab: its z slice and the broadcast coordinates ``T, Y, X`` there."""
        zs = self.grid.zs(t0, t1)
        return zs, self.T[zs], self.Y, self.X

    def paint(self, zs: slice, region: np.ndarray, label: str | None, tissue: int | None) -> None:
        lab, tis = self.labels[zs], self.tissue[zs]
        region = np.broadcast_to(region, lab.shape)
        if label is not None:
            lab[region] = _IDS[label] if label else 0
        if tissue is not None:
            tis[region] = tissue

    def cavity(self, zs: slice) -> np.ndarray:
        return self.depth[zs] > self.cavity_depth[zs]


def ellipsoid(T, Y, X, c, r, yaw: float = 0.0):
    """Normalised squared radius of an ellipsoid, centre ``c`` and semi-axes ``r`` as (t, y, x),
    turned by ``yaw`` radians in the axial plane (<= 1 inside)."""
    dy, dx = Y - c[1], X - c[2]
    cs, sn = np.cos(yaw), np.sin(yaw)
    u, v = cs * dy - sn * dx, sn * dy + cs * dx
    return ((T - c[0]) / r[0]) ** 2 + (u / r[1]) ** 2 + (v / r[2]) ** 2


def tube(cv: Canvas, pts, radii, label: str | None, tissue: int | None, grow: float = 0.0,
         paint: bool = True) -> tuple[slice, np.ndarray]:
    """A tube along a polyline of (t, y, x) points with radii interpolated along it; returns the
    slab and the signed distance (mm, < 0 inside) there, and paints ``label``/``tissue`` unless told not."""
    pts, radii = np.asarray(pts, float), np.asarray(radii, float) + grow
    zs, T, Y, X = cv.at(pts[:, 0].min() - radii.max(), pts[:, 0].max() + radii.max())
    sd = np.full((len(T),) + cv.grid.shape[1:], np.inf, np.float32)
    for p, q, rp, rq in zip(pts[:-1], pts[1:], radii[:-1], radii[1:]):
        d = q - p
        u = ((T - p[0]) * d[0] + (Y - p[1]) * d[1] + (X - p[2]) * d[2]) / max(d @ d, 1e-6)
        u = np.clip(u, 0, 1)
        dist = np.sqrt((T - p[0] - u * d[0]) ** 2 + (Y - p[1] - u * d[1]) ** 2 + (X - p[2] - u * d[2]) ** 2)
        np.minimum(sd, dist - (rp + u * (rq - rp)), out=sd)
    if paint:
        cv.paint(zs, sd < 0, label, tissue)
    return zs, sd


def waves(rng: np.random.Generator, n: int, wavelength: tuple[float, float]):
    """Parameters of a smooth random field: ``n`` plane waves of random direction and phase."""
    k = rng.normal(size=(n, 3))
    k *= (2 * np.pi / rng.uniform(*wavelength, n) / np.linalg.norm(k, axis=1))[:, None]
    return k, rng.uniform(0, 2 * np.pi, n)


def wave_field(params, T, Y, X) -> np.ndarray:
    """Evaluate :func:`waves` at world points: zero mean, unit variance, defined in mm."""
    k, ph = params
    f = sum(np.cos(k[i, 0] * T + k[i, 1] * Y + k[i, 2] * X + ph[i]) for i in range(len(ph)))
    return (f * np.sqrt(2 / len(ph))).astype(np.float32)


def _at(bd: Body, t: float) -> dict:
    """Scalars of the cross-section at ``t``: cavity semi-axes, spine position and size (mm)."""
    ai, bi, bpi = (float(v) for v in bd.inner(t))
    wb, hb, rc = (float(v) for v in bd.vert(t))
    ps = float(bd.spine_y(t))
    return dict(ai=ai, bi=bi, bpi=bpi, wb=wb, hb=hb, rc=rc, ps=ps, pf=ps - hb)


def diaphragm(info: dict, Y, X) -> np.ndarray:
    """t of the diaphragm under (y, x): the lower envelope of two domes, deepest at the back."""
    out = None
    for t0, y0, x0 in info["domes"]:
        dy = (Y - y0) * np.where(Y > y0, 1.3, 0.8)
        d = t0 + info["dome_k"] * ((1.4 * (X - x0)) ** 2 + dy ** 2)
        out = d if out is None else np.minimum(out, d)
    return out


def _envelope(cv: Canvas, info: dict, rng) -> None:
    """Skin and subcutaneous fat, the muscle wall, visceral/mediastinal fat inside."""
    d = cv.depth
    cv.tissue[d > 0] = Tissue.FAT
    cv.tissue[(d > cv.fat) & (d <= cv.fat + cv.body.wall + cv.body.rib)] = Tissue.MUSCLE
    # the cavity's posterior limit near the spine is muscle (paraspinal, quadratus, crura)
    cv.tissue[(d > cv.fat + cv.body.wall + cv.body.rib) & (d <= cv.cavity_depth)] = Tissue.MUSCLE


def _landmarks(cv: Canvas, info: dict, rng) -> None:
    """Diaphragm domes, heart and great vessels: shared by the thorax and abdomen painters."""
    bd, s = cv.body, cv.body.s
    t_rd = bd.lv("T10") + rng.uniform(-15, 10) * s
    t_ld = t_rd + rng.uniform(8, 20)
    g = _at(bd, t_rd + 40)
    info.update(t_rd=t_rd, t_ld=t_ld, dome_k=rng.uniform(0.0045, 0.006),
                domes=[(t_rd, -0.05 * g["bi"], -0.45 * g["ai"]), (t_ld, 0.0, 0.45 * g["ai"])],
                t_apex=rng.uniform(-22, -6) * s)
    rt = rng.uniform(45, 58) * s
    th = t_rd + 15 - rt
    h = _at(bd, th)
    ry = min(rng.uniform(40, 50) * s, 0.5 * (h["pf"] - 10 + h["bi"]))
    rx = rng.uniform(55, 68) * s * min(1.0, h["ai"] / 115)
    info["heart"] = dict(c=(th, h["pf"] - 10 - ry, rng.uniform(12, 28)), r=(rt, ry, rx),
                         yaw=-rng.uniform(0.5, 0.75))
    info["aorta"] = _aorta_path(bd, info, rng.uniform(0.9, 1.15))
    carina = bd.lv("T4", 1.0)
    g1, g5 = _at(bd, 0), _at(bd, carina)
    info["trachea"] = ([(bd.t_min - 10, g1["pf"] - 20, 0), (carina, g5["pf"] - 25, 3)], [9 * s, 8.5 * s])
    info["carina"] = (carina, g5["pf"] - 25, 3)


def _aorta_path(bd: Body, info: dict, k: float) -> tuple[list, list]:
    """Centre line (t, y, x) and radii of the aorta: root in the heart, ascending aorta and arch in
    front of the trachea, then down the left front of the spine to the bifurcation at L4."""
    hc = info["heart"]["c"]
    pts, rad = [(hc[0] - 10, hc[1], hc[2] - 20)], [15 * k]
    for lv, f, x, r in (("T4", 0.5, -8, 15), ("T3", 0.5, 0, 13)):
        g = _at(bd, bd.lv(lv, f))
        pts.append((bd.lv(lv, f), g["pf"] - (55 if x < 0 else 30), x))
        rad.append(r * k)
    for lv, f, r in (("T4", 0.3, 12), ("T8", 0.5, 12), ("T12", 0.5, 11), ("L2", 0.5, 10), ("L4", 0.5, 9)):
        t, g = bd.lv(lv, f), _at(bd, bd.lv(lv, f))
        chest = t < info["t_rd"]  # beside the vertebral body in the chest, in front of it below
        y = g["pf"] - r * k * (0.5 if chest else 1.0) - 2
        x = (0.55 if chest else 0.3) * g["wb"] + 0.6 * r * k if lv != "L4" else 3.0
        pts.append((t, y, x))
        rad.append(r * k)
    return pts, rad


def _bowel(cv: Canvas, info: dict, rng) -> None:
    """Small bowel loops (a folded random sheet) in the lower abdomen, then the colon frame."""
    bd, s = cv.body, cv.body.s
    f1, f2, f3 = waves(rng, 10, (80, 130)), waves(rng, 8, (25, 45)), waves(rng, 8, (15, 30))
    gas_sb, gas_colon = rng.uniform(1.3, 2.2), rng.uniform(0.0, 1.2)
    zs, T, Y, X = cv.at(bd.lv("L1", 0.8), bd.t_acet - 5)
    if len(T):
        ai, bi, bpi = (v[:, None, None] for v in bd.inner(T[:, 0, 0]))
        pf = (bd.spine_y(T) - bd.vert(T)[1])
        region = cv.cavity(zs) & (Y < pf - 5) & (np.abs(X) < 0.85 * ai)
        f = np.abs(wave_field(f1, T, Y, X))
        loops = region & (f < 0.45)
        cv.paint(zs, loops, "small_bowel", Tissue.BOWEL_WALL)
        lumen = loops & (f < 0.25)
        cv.paint(zs, lumen, None, Tissue.BOWEL_FLUID)
        cv.paint(zs, lumen & (wave_field(f2, T, Y, X) > gas_sb), None, Tissue.GAS)
    pts, rad = [], []
    for lv, fy, fx, r in [("L5", -0.15, -0.62, 25), ("L2", 0.05, -0.68, 22), ("L1", -0.2, -0.6, 21),
                          ("L2", -0.6, -0.3, 20), ("L3", -0.72, 0.0, 20), ("L2", -0.6, 0.35, 19),
                          ("T12", 0.0, 0.7, 19), ("L3", 0.25, 0.72, 17), ("L5", 0.1, 0.68, 17),
                          ("S3", -0.35, 0.4, 16), ("S5", -0.2, -0.05, 16), ("S8", None, 0.0, 18),
                          ("S12", None, 0.0, 17)]:
        t = bd.lv("S", int(lv[1:]) / 10) if lv[0] == "S" else bd.lv(lv, 0.5)
        g = _at(bd, t)
        y = fy * (g["bi"] if fy < 0 else g["bpi"]) if fy is not None else _sacrum_front(bd, t) - 25
        pts.append((t, y, fx * g["ai"]))
        rad.append(r * s * rng.uniform(0.85, 1.15))
    zs, sd = tube(cv, pts, rad, "colon", Tissue.STOOL)
    T, Y, X = cv.T[zs], cv.Y, cv.X
    inside = (sd < -4) & (wave_field(f3, T, Y, X) > gas_colon)
    cv.paint(zs, (sd < 0) & (sd >= -3.5), None, Tissue.BOWEL_WALL)
    cv.paint(zs, inside, None, Tissue.GAS)
    info["colon"] = (pts, rad)


def _sacrum_front(bd: Body, t):
    """y of the anterior surface of the sacrum (mm), curving backward as it descends."""
    v = np.clip((t - bd.bot[-1]) / (105 * bd.s), 0, 1.3)
    return bd.spine_y(bd.bot[-1]) + 45 * bd.s * v - (20 - 10 * v) * bd.s


def _organ(cv: Canvas, zs, T, Y, X, cav, parts, label: str, tissue: int, margin: float) -> np.ndarray:
    """Paint a union of ellipsoids ``(centre, semi-axes, yaw)`` inside ``cav``; a visceral fat
    margin around it first pushes the bowel away (organs are outlined by fat planes)."""
    grown = np.any([ellipsoid(T, Y, X, c, tuple(v + margin for v in r), yaw) < 1 for c, r, yaw in parts], axis=0)
    cv.paint(zs, grown & cav & np.isin(cv.tissue[zs], BOWEL_TISSUE), "", Tissue.FAT)
    region = cav & np.any([ellipsoid(T, Y, X, c, r, yaw) < 1 for c, r, yaw in parts], axis=0)
    cv.paint(zs, region, label, tissue)
    return region


def _tube_organ(cv: Canvas, pts, radii, label: str, tissue: int, margin: float) -> None:
    """:func:`tube` with the visceral fat margin of :func:`_organ`."""
    zs, sd = tube(cv, pts, radii, None, None, grow=margin, paint=False)
    cv.paint(zs, (sd < 0) & np.isin(cv.tissue[zs], BOWEL_TISSUE), "", Tissue.FAT)
    cv.paint(zs, sd < -margin, label, tissue)


def _abdomen(cv: Canvas, info: dict, rng) -> None:
    """Bladder, liver, gallbladder, stomach (with gas), spleen, pancreas, portal/splenic vein."""
    bd, s = cv.body, cv.body.s
    t_rd, t_ld = info["t_rd"], info["t_ld"]
    m = info["vfat"] = float(np.clip(0.3 * np.mean(bd.fat) + rng.uniform(0, 5), 3, 14))
    g = _at(bd, t_acet := bd.t_acet)
    c = (t_acet - rng.uniform(5, 20), -0.45 * g["bi"], 0.0)
    info["bladder"] = (c, (rng.uniform(28, 45), rng.uniform(25, 38), rng.uniform(35, 50)))
    zs, T, Y, X = cv.at(c[0] - 65, c[0] + 65)
    _organ(cv, zs, T, Y, X, cv.cavity(zs), [(*info["bladder"], 0)], "urinary_bladder", Tissue.URINE, m)

    zs, T, Y, X = cv.at(t_rd - 10, t_rd + 230 * s)
    cav = cv.cavity(zs) & (T > diaphragm(info, Y, X) + 5)
    g = _at(bd, t_rd + 60)
    k = rng.uniform(0.9, 1.1)
    big = ((t_rd + 50 * s, -0.05 * g["bi"], -0.38 * g["ai"]),
           (rng.uniform(85, 105) * s * k, 0.45 * (g["bi"] + g["bpi"]), 0.62 * g["ai"] * k), 0)
    left = ((t_rd + 40 * s, -0.45 * g["bi"], 0.1 * g["ai"]),
            (rng.uniform(35, 50) * s, 0.4 * g["bi"], rng.uniform(0.3, 0.45) * g["ai"]), 0)
    _organ(cv, zs, T, Y, X, cav, [big, left], "liver", Tissue.LIVER, m)
    info["liver"] = dict(c=big[0], r=big[1])
    info["gallbladder"] = bool(rng.uniform() < 0.85)
    gb = ((t_rd + rng.uniform(95, 115) * s, -0.5 * g["bi"], -0.25 * g["ai"]),
          (rng.uniform(25, 38), rng.uniform(12, 17), rng.uniform(13, 18)), 0.4)
    info["gallbladder_c"] = gb[0]
    if info["gallbladder"]:
        _organ(cv, zs, T, Y, X, cav, [gb], "gallbladder", Tissue.BILE, m)

    g = _at(bd, t_ld + 50)
    parts = [((t_ld + rng.uniform(30, 45) * s, 0.05 * g["bpi"], 0.45 * g["ai"]),
              (rng.uniform(35, 50) * s, 0.33 * g["bi"], 0.28 * g["ai"]), 0),
             ((t_ld + 60 * s, -0.25 * g["bi"], 0.35 * g["ai"]), (35 * s, 0.28 * g["bi"], 0.25 * g["ai"]), 0),
             ((t_ld + rng.uniform(80, 100) * s, -0.5 * g["bi"], 0.12 * g["ai"]),
              (rng.uniform(25, 35) * s, 0.22 * g["bi"], 0.38 * g["ai"]), 0)]
    stomach = _organ(cv, zs, T, Y, X, cav, parts, "stomach", Tissue.STOMACH, m)
    info["stomach"] = parts[0][0]
    if stomach.any():  # gas rises anteriorly (the patient is supine): an air-fluid level
        level = np.quantile(np.broadcast_to(Y, stomach.shape)[stomach], rng.uniform(0.05, 0.35))
        cv.paint(zs, stomach & (Y < level), None, Tissue.GAS)
        rim = stomach & ~ndimage.binary_erosion(stomach, np.ones((1, 3, 3), bool))
        cv.paint(zs, rim, None, Tissue.BOWEL_WALL)

    sc = (t_ld + rng.uniform(35, 55) * s, 0.45 * g["bpi"], 0.68 * g["ai"])
    sr = (rng.uniform(40, 55) * s, rng.uniform(40, 55), rng.uniform(18, 26))
    _organ(cv, zs, T, Y, X, cav, [(sc, sr, rng.uniform(0.5, 0.8))], "spleen", Tissue.SPLEEN, m)
    info["spleen"] = dict(c=sc, r=sr)

    l1, l2, t12 = _at(bd, bd.lv("L1", 0.5)), _at(bd, bd.lv("L2", 0.3)), _at(bd, bd.lv("T12", 0.5))
    pk = rng.uniform(0.8, 1.1)
    _tube_organ(cv, [(sc[0] + 10, sc[1] - 25, sc[2] - 25), (bd.lv("L1", 0.3), l1["pf"] - 28, 0.25 * l1["ai"]),
                     (bd.lv("L1", 0.6), l1["pf"] - 35, 0), (bd.lv("L2", 0.2), l2["pf"] - 25, -0.2 * l2["ai"]),
                     (bd.lv("L2", 0.6), l2["pf"] - 12, -0.12 * l2["ai"])],
                np.array([10, 11, 10, 16, 12]) * pk * s, "pancreas", Tissue.PANCREAS, m)
    tube(cv, [(sc[0] + 10, sc[1] - 12, sc[2] - 35), (bd.lv("L1", 0.3), l1["pf"] - 16, 0.2 * l1["ai"]),
              (bd.lv("L1", 0.6), l1["pf"] - 24, -5), (bd.lv("T12", 0.5), t12["pf"] - 25, -0.3 * t12["ai"]),
              (bd.lv("T11", 0.9), t12["pf"] - 20, -0.42 * t12["ai"])],
         np.array([5, 5.5, 7, 7.5, 6]) * s, "portal_vein_and_splenic_vein", Tissue.PORTAL)


def _kidneys(cv: Canvas, info: dict, rng) -> None:
    """Bean-shaped kidneys beside the spine: cortex rim, medulla, a fatty sinus at the hilum."""
    bd, s = cv.body, cv.body.s
    for name, sign in (("kidney_left", 1), ("kidney_right", -1)):
        t0 = bd.lv("L1", 0.7) + (rng.uniform(8, 22) if sign < 0 else 0) + rng.uniform(-10, 10)
        g = _at(bd, t0)
        c = (t0, g["ps"] + rng.uniform(-5, 10), sign * (g["wb"] + rng.uniform(38, 50) * s))
        r = (rng.uniform(50, 58) * s, rng.uniform(22, 27), rng.uniform(27, 32))
        zs, T, Y, X = cv.at(t0 - r[0] - 5, t0 + r[0] + 5)
        Xt = X - sign * 0.25 * (T - t0)  # coronal tilt: upper poles lean toward the spine
        yaw = sign * rng.uniform(0.4, 0.6)
        e = ellipsoid(T, Y, Xt, c, r, yaw)
        kidney = (e < 1) & cv.cavity(zs) & (T > diaphragm(info, Y, X) + 3)
        # perirenal fat: bowel never reaches the kidney
        peri = (ellipsoid(T, Y, Xt, c, tuple(v + 4 + info["vfat"] for v in r), yaw) < 1) & cv.cavity(zs)
        peri &= (cv.labels[zs] == 0) | np.isin(cv.tissue[zs], BOWEL_TISSUE)
        cv.paint(zs, peri, "", Tissue.FAT)
        sinus = kidney & (e < 0.3) & (sign * (Xt - c[2]) < -0.25 * r[2])
        cv.paint(zs, kidney & (e >= 0.55), name, Tissue.KIDNEY_CORTEX)
        cv.paint(zs, kidney & (e < 0.55), name, Tissue.KIDNEY_MEDULLA)
        cv.paint(zs, sinus, "", Tissue.FAT)
        info[name] = dict(c=c, r=r)


def _thorax(cv: Canvas, info: dict, rng) -> None:
    """Lungs (five lobes between apex, mediastinum and diaphragm) and the heart."""
    bd, s = cv.body, cv.body.s
    hc, hr, yaw = info["heart"]["c"], info["heart"]["r"], info["heart"]["yaw"]
    zs, T, Y, X = cv.at(info["t_apex"] - 5, info["t_ld"] + 120 * s)
    if len(T) == 0:
        return
    keep = np.zeros((len(T),) + cv.grid.shape[1:], bool)  # mediastinum: no lung there
    for key, grow in (("aorta", 5), ("trachea", 4), ("svc", 4), ("esophagus", 4)):
        if key in info:
            z2, sd = tube(cv, *info[key], None, None, grow=grow, paint=False)
            a, b = max(z2.start, zs.start), min(z2.stop, zs.stop)
            if a < b:
                keep[a - zs.start:b - zs.start] |= sd[a - z2.start:b - z2.start] < 0
    heart_e = ellipsoid(T, Y, X, hc, hr, yaw)
    keep |= ellipsoid(T, Y, X, hc, tuple(v + 6 for v in hr), yaw) < 1
    pf = (bd.spine_y(T) - bd.vert(T)[1])
    wb = bd.vert(T)[0]
    keep |= (np.abs(X - 3) < info["med_w"]) | ((Y > pf - 12) & (np.abs(X) < wb + 14))
    g = _at(bd, info["t_apex"] + 40)
    top = info["t_apex"] + 0.01 * ((np.abs(X) - 0.45 * g["ai"]) ** 2 + (Y - 0.1 * g["bpi"]) ** 2)
    lung = cv.cavity(zs) & (T > top) & (T < diaphragm(info, Y, X)) & ~keep
    # oblique fissures: from the back at T4-T5 down to the front of the diaphragm
    yb, yf = g["bpi"], -_at(bd, info["t_rd"])["bi"]
    frac = (yb - Y) / (yb - yf)
    t_post, t_ant = bd.lv("T4", 0.5) + rng.uniform(-10, 10), info["t_rd"] + 25
    lower_r = T > t_post + (t_ant - t_post) * frac
    lower_l = T > t_post + 10 + (t_ant - t_post - 10) * frac
    t_h = bd.lv("T6", 0.5) + rng.uniform(-10, 10) * s  # horizontal fissure (right)
    left = X > 3
    for name, region in (("lung_upper_lobe_left", left & ~lower_l), ("lung_lower_lobe_left", left & lower_l),
                         ("lung_upper_lobe_right", ~left & ~lower_r & (T <= t_h)),
                         ("lung_middle_lobe_right", ~left & ~lower_r & (T > t_h)),
                         ("lung_lower_lobe_right", ~left & lower_r)):
        cv.paint(zs, lung & region, name, Tissue.LUNG)
    heart = heart_e < 1
    cs, sn = np.cos(yaw), np.sin(yaw)
    u = cs * (Y - hc[1]) - sn * (X - hc[2])  # across the septum: posterior side = left heart
    cv.paint(zs, heart, "heart", Tissue.MYOCARDIUM)
    pool = heart & (heart_e < (1 - 10 / min(hr)) ** 2) & (np.abs(u) > 3.5)
    cv.paint(zs, pool & (u > 0), None, Tissue.HEART_LEFT)
    cv.paint(zs, pool & (u <= 0), None, Tissue.HEART_RIGHT)


def _vessels(cv: Canvas, info: dict, rng) -> None:
    """Aorta and iliac arteries, venae cavae and iliac veins, trachea, main bronchi, esophagus."""
    bd, s = cv.body, cv.body.s
    tube(cv, *info["aorta"], "aorta", Tissue.ARTERY)
    bif = info["aorta"][0][-1]
    gp = _at(bd, bd.t_acet)
    xf = info["x_femur"]
    for side, sign in (("left", 1), ("right", -1)):
        g = _at(bd, bd.lv("S", 0.3))
        tube(cv, [bif, (bd.lv("S", 0.3), g["pf"] + 5, sign * 40),
                  (bd.t_acet - 15, -0.3 * gp["bi"], sign * (xf - 10)), (bd.t_end, -0.35 * gp["bi"], sign * (xf + 5))],
             [8, 6.5, 6, 5.5], f"iliac_artery_{side}", Tissue.ARTERY)
    pts = []
    for t, dy, fx in [(info["t_rd"] - 5, -30, None), (bd.lv("T12", 0.5), -18, -0.9),
                      (bd.lv("L2", 0.5), -14, -1.0), (bd.lv("L4", 0.8), -12, -0.9), (bd.lv("L5", 0.6), -10, None)]:
        g = _at(bd, t)
        pts.append((t, g["pf"] + dy, (fx * g["wb"] - 6) if fx else (-25 if t < info["t_rd"] else -12)))
    ri = rng.uniform(9, 12) * s
    tube(cv, pts, [ri] * len(pts), "inferior_vena_cava", Tissue.VEIN)
    for side, sign in (("left", 1), ("right", -1)):
        g = _at(bd, bd.lv("S", 0.4))
        tube(cv, [pts[-1], (bd.lv("S", 0.4), g["pf"] + 12, sign * 36),
                  (bd.t_acet - 10, -0.22 * gp["bi"], sign * (xf - 22)), (bd.t_end, -0.27 * gp["bi"], sign * (xf - 8))],
             [9, 8, 7.5, 7], f"iliac_vena_{side}", Tissue.VEIN)
    tube(cv, *info["svc"], "superior_vena_cava", Tissue.VEIN)
    tube(cv, *info["trachea"], "trachea", Tissue.AIRWAY)
    c = info["carina"]
    for sign in (1, -1):  # main bronchi: air in the image, lung (or nothing) in the mask
        tube(cv, [c, (c[0] + 20 * s, c[1] + 5, c[2] + sign * 35), (c[0] + 45 * s, c[1] + 15, c[2] + sign * 60)],
             [6.5 * s, 5 * s, 3.5 * s], None, Tissue.AIRWAY)
    tube(cv, *info["esophagus"], "esophagus", Tissue.SOFT)


def _paths(cv: Canvas, info: dict, rng) -> None:
    """Paths of the SVC and esophagus, mediastinal width, femoral head spacing: needed by the lungs,
    vessels and muscles before those are painted."""
    bd, s = cv.body, cv.body.s
    g1, g5, g8 = _at(bd, 0), _at(bd, bd.lv("T5")), _at(bd, bd.lv("T8", 0.5))
    hc, hr = info["heart"]["c"], info["heart"]["r"]
    info["svc"] = ([(bd.t_min - 10, g1["pf"] - 45, -28), (hc[0] - 0.6 * hr[0], g5["pf"] - 55, -30)], [9 * s, 10 * s])
    st = info["stomach"]
    gd = _at(bd, info["t_ld"])
    info["esophagus"] = ([(bd.t_min - 10, g1["pf"] - 8, 4), (bd.lv("T4"), g5["pf"] - 9, 5),
                          (bd.lv("T8", 0.5), g8["pf"] - 10, -2), (info["t_ld"] - 5, gd["pf"] - 22, 12),
                          (info["t_ld"] + 25 * s, st[1] - 10, st[2] - 25)], [7.5 * s] * 5)
    info["med_w"] = rng.uniform(12, 20)
    info["x_femur"] = float(np.clip(0.8 * _at(bd, bd.t_acet)["ai"], 68, 100))


def _column(cv: Canvas, t0: float, t1: float, knots, cy, cx, ry, rx):
    """An elliptic column whose centre (y, x) and semi-axes follow ``t`` (values at ``knots``)."""
    zs, T, Y, X = cv.at(t0, t1)
    f = [np.interp(T, knots, v) for v in (cy, cx, ry, rx)]
    return zs, ((Y - f[0]) / f[2]) ** 2 + ((X - f[1]) / f[3]) ** 2 < 1


def _muscles(cv: Canvas, info: dict, rng) -> None:
    """Paraspinal (autochthon) columns and the iliopsoas from T12 into the pelvis."""
    bd, s = cv.body, cv.body.s
    kt = [bd.lv("T1"), bd.lv("T8"), bd.lv("L3"), bd.lv("S"), bd.lv("S", 0.6)]
    rx = np.array([14, 18, 27, 22, 12]) * s * rng.uniform(0.9, 1.15)
    ry = np.array([14, 17, 26, 20, 8]) * s * rng.uniform(0.9, 1.15)
    g = [_at(bd, t) for t in kt]
    yc = [gi["ps"] + gi["hb"] + 2 * gi["rc"] + 4 + 0.8 * r for gi, r in zip(g, ry)]
    for name, sign in (("autochthon_left", 1), ("autochthon_right", -1)):
        xc = [sign * (gi["rc"] + 4 + r) for gi, r in zip(g, rx)]
        zs, region = _column(cv, kt[0], kt[-1], kt, yc, xc, ry, rx)
        cv.paint(zs, region & (cv.depth[zs] > cv.fat[zs]), name, Tissue.MUSCLE)
    ta, xf = bd.t_acet, info["x_femur"]
    gp = _at(bd, ta)
    for name, sign in (("iliopsoas_left", 1), ("iliopsoas_right", -1)):
        pts, rad = [], []
        for t, r in ((bd.lv("T12", 0.5), 5), (bd.lv("L2", 0.5), 13), (bd.lv("L4", 0.5), 19), (bd.lv("S", 0.3), 20)):
            gi = _at(bd, t)
            pts.append((t, gi["ps"] - 0.3 * gi["hb"], sign * (gi["wb"] + 0.8 * r * s)))
            rad.append(r * s)
        pts += [(ta - 15, -0.35 * gp["bi"], sign * (xf - 12)), (bd.t_end, -0.45 * gp["bi"], sign * (xf - 5))]
        rad += [16 * s, 15 * s]
        tube(cv, pts, rad, name, Tissue.MUSCLE)
        gi = _at(bd, bd.lv("L5"))
        tube(cv, [(bd.lv("L5"), 0.25 * gi["bpi"], sign * 0.75 * gi["ai"]),
                  (bd.lv("S", 0.5), -0.1 * gi["bi"], sign * 0.65 * gi["ai"]), pts[-2]],
             [10 * s, 16 * s, 14 * s], name, Tissue.MUSCLE)  # iliacus, inside the iliac wing


def _spine(cv: Canvas, info: dict, rng) -> None:
    """Vertebrae C7-L5 (body, disc, arch, spinous and transverse processes), canal, cord, sacrum."""
    bd, s = cv.body, cv.body.s
    zs, T, Y, X = cv.at(bd.t_min - 5, bd.bot[-1])
    if len(T):
        t = T[:, 0, 0]
        idx = np.clip(np.searchsorted(bd.top, t, side="right") - 1, 0, len(LEVELS) - 1)
        u = ((t - bd.top[idx]) / (bd.bot[idx] - bd.top[idx]))[:, None, None]
        wb, hb, rc = (v[:, None, None] for v in bd.vert(t))
        ps = bd.spine_y(t)[:, None, None]
        yc = ps + hb + rc + 2
        body = (X / wb) ** 2 + ((Y - ps) / hb) ** 2 < 1
        r = np.hypot(X, Y - yc)
        kt = bd.vert_t
        lsp = np.interp(t, kt, [40, 36, 32, 30, 28, 26])[:, None, None] * s
        ltp = np.interp(t, kt, [28, 32, 28, 18, 35, 30])[:, None, None] * s
        arch = (r >= rc) & (r < rc + 5.5 * s) & (Y > ps + 0.5 * hb) & (u > 0.08)
        spinous = (np.abs(X) < 3.5 * s) & (Y >= yc + rc) & (Y < yc + rc + lsp) & (u > 0.3)
        transverse = (np.abs(Y - yc + 2) < 5 * s) & (np.abs(X) < rc + ltp) & (u > 0.15) & (u < 0.6)
        bone = (body & (u >= 0.16)) | arch | spinous | transverse
        lut = np.array([_IDS[f"vertebrae_{n}"] for n in LEVELS], np.uint8)
        lab = np.broadcast_to(lut[idx][:, None, None], bone.shape)
        cv.labels[zs][bone] = lab[bone]
        cv.paint(zs, bone, None, Tissue.CANCELLOUS)
        cv.paint(zs, body & (u < 0.16), "", Tissue.DISC)
        cv.paint(zs, r < rc, "", Tissue.CSF)
        cv.paint(zs, (r < 0.5 * rc) & (T < bd.lv("L1", 1.0)), "spinal_cord", Tissue.CORD)
    # sacrum: a wedge that narrows and curves backward, with a small canal
    H = 105 * s
    zs, T, Y, X = cv.at(bd.bot[-1], bd.bot[-1] + H)
    v = np.clip((T - bd.bot[-1]) / H, 0, 1)
    hy = (20 - 10 * v) * s
    yc = _sacrum_front(bd, T) + hy
    sac = (X / ((50 - 36 * v) * s)) ** 2 + ((Y - yc) / hy) ** 2 < 1
    cv.paint(zs, sac, "sacrum", Tissue.CANCELLOUS)
    cv.paint(zs, sac & (np.hypot(X, Y - yc - 0.45 * hy) < (6 - 4 * v) * s), "", Tissue.CSF)


def _ribs(cv: Canvas, info: dict, rng) -> None:
    """Ribs 1-12 as bands under the chest wall that descend from the spine toward the front, with
    costal cartilages at their anterior ends."""
    bd, s = cv.body, cv.body.s
    drop = np.array([30, 70, 85, 95, 100, 105, 108, 110, 110, 105, 95, 90]) * s * rng.uniform(0.85, 1.15)
    end = np.array([2.85, 2.85, 2.85, 2.85, 2.85, 2.85, 2.8, 2.7, 2.6, 2.45, 1.9, 1.5])
    th0, width = 0.3, rng.uniform(8, 11) * s
    for n in range(12):
        t_head = bd.lv(f"T{n + 1}", 0.35)
        zs, T, Y, X = cv.at(t_head - width, t_head + drop[n] + width)
        th, d, cd = cv.theta[zs], cv.depth[zs], cv.cavity_depth[zs]
        g = np.clip((th - th0) / (np.pi - th0), 0, 1) ** 1.6
        band = (np.abs(T - t_head - drop[n] * g) < width / 2) & (th > th0) & (th < end[n])
        band &= (d > cd - bd.rib + 1.5) & (d < cd - 1.5)
        cart = band & (th > 2.45) & (n < 10)
        for side, sign in (("left", X > 0), ("right", X <= 0)):
            cv.paint(zs, band & ~cart & sign, f"rib_{side}_{n + 1}", Tissue.CANCELLOUS)
        cv.paint(zs, cart, "costal_cartilages", Tissue.CARTILAGE)


def _shoulder(cv: Canvas, info: dict, rng) -> None:
    """Sternum (manubrium to xiphoid, under the anterior wall), scapulae and clavicles."""
    bd, s = cv.body, cv.body.s
    kt = [bd.lv("T2", 0.3), bd.lv("T4"), bd.lv("T9", 1.0)]
    zs, T, Y, X = cv.at(kt[0], kt[-1])
    yc = -(bd.semi(T)[1] - bd.fat_scale(T) * bd.fat[1] - 0.5 * bd.wall - 6 * s)
    stern = ((X / (np.interp(T, kt, [24, 15, 8]) * s)) ** 2 + ((Y - yc) / (6 * s)) ** 2) < 1
    cv.paint(zs, stern, "sternum", Tissue.CANCELLOUS)
    # scapulae: plates on the posterior chest wall, narrowing to the inferior angle at T7
    zs, T, Y, X = cv.at(bd.lv("T1", -0.5), bd.lv("T7", 1.0))
    v = (T - bd.lv("T1", -0.5)) / (bd.lv("T7", 1.0) - bd.lv("T1", -0.5))
    th, d, f = cv.theta[zs], cv.depth[zs], cv.fat[zs]
    plate = (th > 0.5 + 0.35 * v) & (th < 1.5 - 0.6 * v) & (d > f + 0.3 * bd.wall) & (d < f + 0.3 * bd.wall + 6 * s)
    for side, sign in (("left", X > 0), ("right", X <= 0)):
        cv.paint(zs, plate & sign, f"scapula_{side}", Tissue.CANCELLOUS)
    g = _at(bd, bd.lv("T2"))
    a, b, _ = bd.semi(bd.lv("T1"))
    for side, sign in (("left", 1), ("right", -1)):
        tube(cv, [(bd.lv("T2", 0.3), -(g["bi"] + bd.rib) + 4, sign * 18),
                  (bd.lv("T1", -0.3), -0.6 * b, sign * 0.55 * a), (bd.lv("C7"), -0.15 * b, sign * 0.8 * a)],
             [7 * s] * 3, f"clavicula_{side}", Tissue.CANCELLOUS)


def _ilium(cv: Canvas, info: dict, rng) -> None:
    """Iliac wings: arcs that narrow from the crest down to the acetabulum; gluteus medius outside them."""
    bd, s = cv.body, cv.body.s
    ta, xf = bd.t_acet, info["x_femur"]
    kt = [bd.lv("L4", 0.3), bd.lv("S", 0.15), bd.lv("S", 0.6), ta - 10]
    zs, T, Y, X = cv.at(kt[0], kt[-1])
    if len(T):
        ai, bi, bpi = (v[:, None, None] for v in bd.inner(T[:, 0, 0]))
        f = lambda v: np.interp(T, kt, v)  # noqa: E731
        A = np.maximum(f([1.0, 0.98, 0.9, 0.0]) * ai, xf)
        B, yc = f([0.8, 0.75, 0.55, 0.3]) * bi, f([0.15, 0.1, 0.02, 0.0]) * bpi
        th0, th1, thick = f([0.35, 0.4, 0.8, 1.2]), f([2.05, 2.0, 1.9, 1.85]), f([7, 8, 12, 24]) * s
        ax, ay = np.abs(X) / A, (Y - yc) / B
        rho, theta = np.hypot(ax, ay), np.arctan2(ax, ay)
        R = np.hypot(X, Y - yc) / np.maximum(rho, 1e-3)
        dist = (rho - 1) * R
        band = (np.abs(dist) < thick / 2) & (theta > th0) & (theta < th1)
        glut = (dist > thick / 2) & (dist < thick / 2 + 28 * s) & (theta > th0 + 0.4) & (theta < th1 - 0.1)
        glut &= (T > kt[0] + 10) & (cv.depth[zs] > cv.fat[zs])
        for side, sign in (("left", X > 0), ("right", X <= 0)):
            cv.paint(zs, glut & sign, f"gluteus_medius_{side}", Tissue.MUSCLE)
            cv.paint(zs, band & sign, f"hip_{side}", Tissue.CANCELLOUS)


def _gluteus(cv: Canvas, info: dict, rng) -> None:
    """Gluteus maximus: a thick posterior muscle layer under the buttock fat, thickening downward."""
    bd, s = cv.body, cv.body.s
    zs, T, Y, X = cv.at(bd.lv("S", 0.2), bd.t_end)
    v = np.clip((T - bd.lv("S", 0.2)) / (bd.t_end - bd.lv("S", 0.2)), 0, 1)
    d, fat = cv.depth[zs], cv.fat[zs]
    gmax = (d > fat) & (d < fat + (18 + 30 * v) * s) & (cv.theta[zs] < 1.45) & (np.abs(X) > 12 + 20 * (1 - v))
    for side, sign in (("left", X > 0), ("right", X <= 0)):
        cv.paint(zs, gmax & sign, f"gluteus_maximus_{side}", Tissue.MUSCLE)


def _hips(cv: Canvas, info: dict, rng) -> None:
    """Acetabula, pubic and ischial rami, femoral heads, necks and shafts."""
    bd, s = cv.body, cv.body.s
    ta, xf = bd.t_acet, info["x_femur"]
    gp = _at(bd, ta)
    rh = rng.uniform(21, 25) * s
    yf = -0.1 * gp["bi"]
    for side, sign in (("left", 1), ("right", -1)):
        head = (ta, yf, sign * xf)
        zs, T, Y, X = cv.at(ta - rh - 15, ta + rh + 15)
        r = np.sqrt((T - ta) ** 2 + (Y - yf) ** 2 + (X - head[2]) ** 2)
        cup = (r > rh + 1.5) & (r < rh + 12 * s) & (np.abs(X) < xf + 0.3 * rh) & (T < ta + 0.6 * rh)
        cv.paint(zs, cup, f"hip_{side}", Tissue.CANCELLOUS)
        ys = min(-gp["bi"] + 12, yf - 45)  # symphysis
        hip = [([(ta - 5, yf - 0.7 * rh, sign * (xf - 5)), (ta + 12, ys, sign * 9)], [7, 6.5]),  # superior ramus
               ([(ta + 8, ys, sign * 7), (ta + 40, ys + 8, sign * 7)], [7, 6]),  # pubic body
               ([(ta + 40, ys + 8, sign * 10), (ta + 55, yf + 10, sign * (xf - 30))], [5.5, 5.5]),  # inferior
               ([(ta, yf + rh, sign * (xf - 10)), (ta + 55, yf + 25, sign * (xf - 25))], [10, 11])]  # ischium
        for pts, rad in hip:
            tube(cv, pts, np.array(rad) * s, f"hip_{side}", Tissue.CANCELLOUS)
        troch = (ta + 20 * s, yf + 10, sign * (xf + 42 * s))
        cv.paint(zs, r < rh, f"femur_{side}", Tissue.CANCELLOUS)
        tube(cv, [head, troch, (bd.t_end + 60, yf + 15, sign * (xf + 30 * s))], np.array([14, 16, 13]) * s,
             f"femur_{side}", Tissue.CANCELLOUS)


@dataclass
class Anatomy:
    """A rasterised phantom: ``labels`` (Z, Y, X) uint8 `total` ids, ``tissue`` (Z, Y, X) uint8
    :class:`Tissue`, the body-frame ``grid`` (mm) and ``info`` (landmarks and organ shapes, mm)."""
    labels: np.ndarray
    tissue: np.ndarray
    grid: Grid
    body: Body
    info: dict


def build(grid: Grid, body: Body, rng: np.random.Generator) -> Anatomy:
    """Paint the whole torso on ``grid``; the order of the steps is the painting priority."""
    cv = Canvas(grid, body)
    info: dict = {}
    for step in (_envelope, _landmarks, _bowel, _abdomen, _kidneys, _paths, _thorax, _vessels,
                 _muscles, _spine, _ribs, _shoulder, _ilium, _gluteus, _hips):
        step(cv, info, rng)
    return Anatomy(cv.labels, cv.tissue, grid, body, info)
