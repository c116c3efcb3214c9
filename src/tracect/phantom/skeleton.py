"""Skeleton and muscles of the phantom: spine, sacrum, ribs, shoulder girdle, pelvis, hips and trunk muscles."""

from __future__ import annotations

import numpy as np

from tracect.phantom.geometry import _IDS, LEVELS, Body, Canvas, Tissue, _at, tube


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


def _sacrum_front(bd: Body, t):
    """y of the anterior surface of the sacrum (mm), curving backward as it descends."""
    v = np.clip((t - bd.bot[-1]) / (105 * bd.s), 0, 1.3)
    return bd.spine_y(bd.bot[-1]) + 45 * bd.s * v - (20 - 10 * v) * bd.s


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
