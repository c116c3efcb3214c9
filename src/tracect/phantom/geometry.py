"""Shared geometry of the phantom: body habitus, case grid, paint canvas, shape primitives and level tables."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

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
