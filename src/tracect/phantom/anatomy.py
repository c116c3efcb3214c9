"""Phantom anatomy: a parametric adult torso rasterised to a `total` label mask and a tissue map.

Every shape is defined in millimetres in a body frame whose axes follow the canonical array axes
``(Z, Y, X)``: ``t`` runs along the torso toward inferior (0 = top of the T1 vertebral body), ``y``
toward posterior and ``x`` toward the patient's left, both measured from the body centre. Shapes are
evaluated at the voxel centres of the case grid, so another spacing gives the same anatomy at
another resolution. The label mask holds TotalSegmentator ``total`` ids; the tissue map
(:class:`Tissue`) also separates what the mask does not (fat, gas, cortex, kidney cortex...), and
:mod:`tracect.phantom.intensity` turns it into Hounsfield units.

The body frame, grid, canvas and shape primitives live in :mod:`tracect.phantom.geometry`, bones and
muscles in :mod:`tracect.phantom.skeleton`; this module paints the organs and vessels and runs :func:`build`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tracect.phantom.geometry import (BOWEL_TISSUE, Body, Canvas, Grid, Tissue, _at, diaphragm, ellipsoid, tube,
                                      wave_field, waves)
from tracect.phantom.skeleton import (_gluteus, _hips, _ilium, _muscles, _ribs, _sacrum_front, _shoulder,
                                      _spine)


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
