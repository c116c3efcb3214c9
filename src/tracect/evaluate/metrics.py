"""Evaluation metrics on canonical arrays. Every function is pure; definitions are in docs/evaluation.md.

Conventions: volumes are ``(Z, H, W)`` on one grid (canonical layout, z toward inferior); ``unit``
intensities are HU mapped to [-1, 1] by the cache's window; ``body`` is a boolean ``(Z, H, W)``;
``spacing`` is ``(z, y, x)`` in mm. A figure that cannot be computed is ``nan`` (never 0), and the
caller records why.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from tracect.data.flow import slice_flows, warp


def mean_or_nan(v) -> float:
    """The mean of ``v``, NaN when it is empty."""
    return float(np.mean(v)) if len(v) else float("nan")


def json_number(x):
    """JSON has no NaN: an undefined figure (None, NaN, infinite) is written as null."""
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x

# ---------------------------------------------------------------------------------------- anatomy


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean arrays; ``nan`` when both are empty (nothing to agree on)."""
    a, b = a.astype(bool), b.astype(bool)
    s = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / s) if s else float("nan")


def _surface(m: np.ndarray) -> np.ndarray:
    return m & ~ndimage.binary_erosion(m, border_value=0)


def hd95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """Symmetric 95th-percentile Hausdorff distance (mm) between the surfaces of two boolean masks;
    ``nan`` if either is empty."""
    a, b = a.astype(bool), b.astype(bool)
    if not a.any() or not b.any():
        return float("nan")
    sa, sb = _surface(a), _surface(b)
    da = ndimage.distance_transform_edt(~sb, sampling=spacing)[sa]  # a's surface to b's
    db = ndimage.distance_transform_edt(~sa, sampling=spacing)[sb]
    return float(np.percentile(np.concatenate([da, db]), 95))


def per_organ_overlap(pred: np.ndarray, truth: np.ndarray, names: dict[int, str], spacing,
                      min_voxels: int = 20) -> tuple[dict, dict, list]:
    """Dice and HD95 per organ of ``truth`` ``(Z, H, W)`` with at least ``min_voxels`` voxels (background
    and body envelope excluded by the caller through ``names``), and the organs ``pred`` misses.

    A missed organ scores Dice 0 and, so that the worst cases are not dropped from an average, HD95
    equal to the diagonal of the grid (mm), the largest distance it can have."""
    d, h, missed = {}, {}, []
    diagonal = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(truth.shape, spacing))))
    for i, name in names.items():
        t = truth == i
        if t.sum() < min_voxels:
            continue
        p = pred == i
        d[name] = dice(p, t)
        if p.any():
            h[name] = hd95(p, t, spacing)
        else:
            h[name] = diagonal
            missed.append(name)
    return d, h, missed


# ---------------------------------------------------------------------------------------- coherence


def flow_epe(generated: np.ndarray, reference: np.ndarray, body: np.ndarray, method: str = "dis") -> float:
    """Mean end-point error (px) between the flows of neighbouring generated slices and those of the
    reference slices, inside the body of both slices of each pair; averaged over pairs."""
    fg, fr = slice_flows(generated, method), slice_flows(reference, method)  # (Z-1, 2, H, W)
    errs = []
    for k in range(len(fg)):
        m = body[k] & body[k + 1]
        if m.sum() >= 20:
            errs.append(float(np.sqrt(((fg[k] - fr[k]) ** 2).sum(0))[m].mean()))
    return float(np.mean(errs)) if errs else float("nan")


def warp_error(unit: np.ndarray, body: np.ndarray, method: str = "dis") -> float:
    """Reference-free warping error: mean over pairs of mean|warp(s[k+1], flow_k) - s[k]| inside the body,
    divided by the volume's mean absolute deviation inside the body, with flow_k the flow from slice
    k to k+1 of the same volume. 0: neighbours differ only by smooth motion; larger: change between
    neighbours that motion does not explain, in units of the volume's own contrast (so a global
    intensity scale or shift leaves it unchanged)."""
    flows = slice_flows(unit, method)
    b = body.astype(bool)
    if b.sum() < 20:
        return float("nan")
    spread = float(np.abs(unit[b] - unit[b].mean()).mean())
    res = []
    for k in range(len(unit) - 1):
        m = b[k]
        if m.sum() < 20:
            continue
        res.append(float(np.abs(warp(unit[k + 1].astype(np.float32), flows[k]) - unit[k])[m].mean()))
    if not res or not spread:  # a uniform body has no contrast to measure the residual against
        return float("nan")
    return float(np.mean(res)) / spread


def frozen_epe(reference: np.ndarray, body: np.ndarray, method: str = "dis") -> float:
    """The flow EPE (px) that a volume whose slices never change would score against ``reference``: the
    mean magnitude of the reference's own flow between neighbouring slices inside the body. The yardstick
    of :func:`flow_epe`: a generated volume should sit well below it."""
    fr = slice_flows(reference, method)
    vals = []
    for k in range(len(fr)):
        m = body[k] & body[k + 1]
        if m.sum() >= 20:
            vals.append(float(np.sqrt((fr[k] ** 2).sum(0))[m].mean()))
    return float(np.mean(vals)) if vals else float("nan")


def adjacent_abs_diff(hu: np.ndarray, body: np.ndarray, min_voxels: int = 20) -> float:
    """Mean |slice[k+1] - slice[k]| (HU) inside the body of slice k, over the neighbouring pairs: how much a
    volume changes from slice to slice. A volume smoothed along z scores below the real CT, one whose
    slices disagree above it."""
    vals = [float(np.abs(hu[k + 1] - hu[k])[body[k]].mean()) for k in range(len(hu) - 1)
            if body[k].sum() >= min_voxels]
    return float(np.mean(vals)) if vals else float("nan")


def through_plane_hf(unit: np.ndarray, body: np.ndarray, min_slices: int = 8) -> float:
    """Through-plane sharpness: the share of the power along z that lies in the upper half of the
    z-frequencies (above half the Nyquist frequency), averaged over the in-plane pixels inside the body in
    at least ``min_slices`` consecutive slices of the body's z-range (each column detrended and Hann
    windowed). Smoothing along z lowers it; slices that flicker independently raise it."""
    zs = np.where(body.reshape(len(body), -1).any(1))[0]
    if len(zs) < min_slices:
        return float("nan")
    sub = unit[zs[0]:zs[-1] + 1].astype(np.float64)
    inside = body[zs[0]:zs[-1] + 1].all(0)  # columns inside the body on every slice of the range
    if inside.sum() < 20:
        return float("nan")
    cols = sub[:, inside]  # (Z, n)
    cols = cols - cols.mean(0, keepdims=True)
    cols = cols * np.hanning(len(cols))[:, None]
    power = np.abs(np.fft.rfft(cols, axis=0)) ** 2  # (F, n)
    power = power[1:].sum(1)  # drop the mean
    if power.sum() <= 0:
        return float("nan")
    half = len(power) // 2
    return float(power[half:].sum() / power.sum())


def _ssim_maps(a: np.ndarray, b: np.ndarray, data_range: float, sigma: float = 1.5):
    """Luminance and contrast-structure maps of SSIM (Gaussian window, Wang et al. 2004 constants)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    f = lambda x: ndimage.gaussian_filter(x, sigma, mode="reflect", truncate=3.5)  # noqa: E731
    ma, mb = f(a), f(b)
    va, vb, cab = f(a * a) - ma ** 2, f(b * b) - mb ** 2, f(a * b) - ma * mb
    return (2 * ma * mb + c1) / (ma ** 2 + mb ** 2 + c1), (2 * cab + c2) / (va + vb + c2)


def ssim2d(a: np.ndarray, b: np.ndarray, data_range: float = 2.0, mask: np.ndarray | None = None) -> float:
    """Mean SSIM of two 2D images, over ``mask`` when given (air outside the body would score a
    perfect 1 and squeeze every value toward it)."""
    lum, cs = _ssim_maps(a.astype(np.float64), b.astype(np.float64), data_range)
    s = lum * cs
    if mask is not None:
        return float(s[mask].mean()) if mask.any() else float("nan")
    return float(s.mean())


def ssim_profile(unit: np.ndarray, body: np.ndarray | None = None, data_range: float = 2.0) -> list[float]:
    """SSIM of each slice with the next along z, inside the union of their bodies dilated by 2 px:
    ``Z - 1`` values."""
    out = []
    for k in range(len(unit) - 1):
        m = None
        if body is not None:
            m = ndimage.binary_dilation(body[k] | body[k + 1], iterations=2)
        out.append(ssim2d(unit[k], unit[k + 1], data_range, m))
    return out


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003


def ms_ssim2d(a: np.ndarray, b: np.ndarray, data_range: float = 2.0) -> float:
    """Multi-scale SSIM of two 2D images, with as many of the five standard scales as keep the coarsest
    side >= 11 px (3 at 64 px); the weights of the scales used are renormalised."""
    n = max(1, min(5, int(math.floor(math.log2(min(a.shape) / 11.0))) + 1))
    w = np.array(MS_SSIM_WEIGHTS[:n]) / sum(MS_SSIM_WEIGHTS[:n])
    a, b = a.astype(np.float64), b.astype(np.float64)
    value = 1.0
    for s in range(n):
        lum_map, cs_map = _ssim_maps(a, b, data_range)
        cs = float(cs_map.mean())
        if s == n - 1:
            lum = float(lum_map.mean())
            value *= max(lum * cs, 0.0) ** w[s]
        else:
            value *= max(cs, 0.0) ** w[s]
            a = a[: a.shape[0] // 2 * 2, : a.shape[1] // 2 * 2].reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).mean((1, 3))
            b = b[: b.shape[0] // 2 * 2, : b.shape[1] // 2 * 2].reshape(b.shape[0] // 2, 2, b.shape[1] // 2, 2).mean((1, 3))
    return float(value)


def volume_ms_ssim(a: np.ndarray, b: np.ndarray, body: np.ndarray | None = None, data_range: float = 2.0) -> float:
    """Mean axial-slice MS-SSIM of two volumes ``(Z, H, W)`` on one grid (diversity: lower = more
    diverse), on the bounding box of ``body`` in-plane so that the air around it does not count."""
    if body is not None and body.any():
        ys, xs = np.where(body.any(0))
        a = a[:, ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        b = b[:, ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return float(np.mean([ms_ssim2d(a[k], b[k], data_range) for k in range(len(a))]))


# ---------------------------------------------------------------------------------------- intensity


def psnr(a: np.ndarray, b: np.ndarray, data_range: float, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio (dB) of ``a`` against ``b`` over ``data_range`` (inside ``mask``)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    mse = float(np.mean((d[mask] if mask is not None else d) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(data_range ** 2 / mse))


def radial_power_spectrum(images: np.ndarray, bins: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of 2D images ``(N, H, W)`` (or one ``(H, W)``), each detrended and
    Hann windowed, averaged over the images -> ``(frequencies in cycles per pixel, power)``, ``bins``
    rings from 0 to Nyquist (0.5)."""
    x = np.asarray(images, np.float64)
    x = x[None] if x.ndim == 2 else x
    H, W = x.shape[1:]
    win = np.outer(np.hanning(H), np.hanning(W))
    x = (x - x.mean((1, 2), keepdims=True)) * win
    power = (np.abs(np.fft.fftshift(np.fft.fft2(x), axes=(1, 2))) ** 2).mean(0)
    fy, fx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(H)), np.fft.fftshift(np.fft.fftfreq(W)), indexing="ij")
    r = np.sqrt(fx ** 2 + fy ** 2)
    edges = np.linspace(0, 0.5, bins + 1)
    which = np.digitize(r, edges) - 1
    ok = (which >= 0) & (which < bins)
    sums = np.bincount(which[ok], weights=power[ok], minlength=bins)
    counts = np.bincount(which[ok], minlength=bins)
    return (edges[:-1] + edges[1:]) / 2, sums / np.maximum(counts, 1)


def high_frequency_ratio(generated: np.ndarray, real: np.ndarray, top: float = 1 / 3, bins: int = 32) -> float:
    """Power in the top ``top`` of the spatial frequencies (radially, up to Nyquist) of ``generated``
    over that of ``real`` (both ``(N, H, W)`` patches or slices): 1 = the same fine texture and noise,
    below 1 = smoother (a blur), above 1 = noisier."""
    f, pg = radial_power_spectrum(generated, bins)
    _, pr = radial_power_spectrum(real, bins)
    hi = f >= 0.5 * (1 - top)
    return float(pg[hi].sum() / pr[hi].sum()) if pr[hi].sum() > 0 else float("nan")


def inplane_hf_ratio(generated: np.ndarray, real: np.ndarray, body: np.ndarray) -> float:
    """:func:`high_frequency_ratio` of axial slices ``(Z, H, W)`` (HU) on the bounding box of ``body``
    (slices with body only): in-plane sharpness of a volume against the real CT of its mask."""
    zs = np.nonzero(body.any((1, 2)))[0]
    if len(zs) == 0:
        return float("nan")
    ys, xs = np.nonzero(body.any(0))
    box = (zs, slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    return high_frequency_ratio(np.asarray(generated, np.float32)[box], np.asarray(real, np.float32)[box])


def organ_hu_stats(hu: np.ndarray, labels: np.ndarray, names: dict[int, str], min_voxels: int = 20) -> dict:
    """Per organ: median and interquartile range (HU) of ``hu`` inside ``labels == id``."""
    out = {}
    for i, name in names.items():
        v = hu[labels == i]
        if v.size >= min_voxels:
            q1, med, q3 = np.percentile(v, [25, 50, 75])
            out[name] = {"median": float(med), "iqr": float(q3 - q1), "voxels": int(v.size)}
    return out


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(N, D)`` (the FID formula)."""
    from scipy import linalg

    if len(f1) < 2 or len(f2) < 2:
        return float("nan")
    m1, m2 = f1.mean(0), f2.mean(0)
    c1, c2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean, _ = linalg.sqrtm(c1 @ c2, disp=False)
    if not np.isfinite(covmean).all():  # singular product: regularise as the FID reference code does
        eps = np.eye(len(c1)) * 1e-6
        covmean = linalg.sqrtm((c1 + eps) @ (c2 + eps))
    covmean = covmean.real
    return float(((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean))


# ---------------------------------------------------------------------------------------- statistics


def auroc(scores, labels) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); ``nan`` without both classes."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean of independent ``values`` (exact for normal data, and
    honest for small n, where a percentile bootstrap is about half as wide as it should be: for n = 4 its
    95% interval covers the mean about 75% of the time). Fewer than two values: ``(nan, nan)``."""
    from scipy import stats

    v = np.asarray([float(x) for x in values], dtype=np.float64)
    if len(v) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def _finite(x) -> bool:
    return x is not None and np.isfinite(x)


def mean_ci(values, level: float = 0.95, groups=None) -> dict:
    """Mean and Student-t confidence interval of the finite ``values``, over independent units.

    Without ``groups`` each value is a unit. With ``groups`` (one key per value, e.g. the mask each volume
    was generated from) the units are the groups: volumes of one mask are not independent, so each
    group's mean is one unit. ``n``: the number of units behind the interval (masks, with groups);
    ``values``: the number of values. The mean is over units (each mask weighs the same). Fewer than two
    units: no interval (``nan``), never a zero-width one.
    """
    vals = list(values)
    keys = list(groups) if groups is not None else list(range(len(vals)))
    by: dict = {}
    for k, x in zip(keys, vals):
        if _finite(x):
            by.setdefault(k, []).append(float(x))
    nan = float("nan")
    if not by:
        return {"mean": nan, "ci95": [nan, nan], "n": 0, "values": 0}
    units = [float(np.mean(v)) for v in by.values()]
    lo, hi = t_interval(units, level)
    return {"mean": float(np.mean(units)), "ci95": [lo, hi], "n": len(units),
            "values": sum(len(v) for v in by.values())}


def paired_difference(a: dict, b: dict, level: float = 0.95) -> dict:
    """Paired comparison of two models on the same masks: ``a`` and ``b`` map a mask to a figure; the
    difference ``a - b`` is taken on the masks both have, with its Student-t interval and ``n`` masks."""
    common = sorted(k for k in a if k in b and _finite(a[k]) and _finite(b[k]))
    d = [float(a[k]) - float(b[k]) for k in common]
    nan = float("nan")
    if not d:
        return {"mean": nan, "ci95": [nan, nan], "n": 0}
    lo, hi = t_interval(d, level)
    return {"mean": float(np.mean(d)), "ci95": [lo, hi], "n": len(d)}


# ---------------------------------------------------------------------------------------- privacy


def slice_signatures(unit: np.ndarray, body: np.ndarray, size: int = 32, min_body: float = 0.1) -> np.ndarray:
    """Zero-mean, unit-norm signatures ``(N, size*size)`` of the axial slices whose body covers at
    least ``min_body`` of the frame (area-downsampled): their dot product is the normalised
    cross-correlation."""
    import torch
    import torch.nn.functional as F

    keep = body.reshape(len(body), -1).mean(1) >= min_body
    if not keep.any():
        return np.zeros((0, size * size), np.float32)
    x = torch.from_numpy(np.ascontiguousarray(unit[keep], dtype=np.float32))[:, None]
    x = F.adaptive_avg_pool2d(x, size).flatten(1)
    x = x - x.mean(1, keepdim=True)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)
    return x.numpy()


def nearest_ncc(queries: np.ndarray, bank: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """For each query signature, its highest normalised cross-correlation with any signature in ``bank``."""
    if len(queries) == 0 or len(bank) == 0:
        return np.zeros(0, np.float32)
    best = np.full(len(queries), -1.0, np.float32)
    for s in range(0, len(bank), chunk):
        best = np.maximum(best, (queries @ bank[s:s + chunk].T).max(1))
    return best


def median_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of a median: the order statistics that the binomial
    (sign test) gives for ``len(values)`` independent values; ``(nan, nan)`` when n is too small for the
    level (n < 6 at 95%)."""
    from scipy import stats

    v = np.sort(np.asarray([float(x) for x in values if _finite(x)], dtype=np.float64))
    n = len(v)
    if n < 1:
        return float("nan"), float("nan")
    k = int(stats.binom.ppf((1 - level) / 2, n, 0.5))  # P(B <= k-1) <= alpha/2 for the lower index
    while k > 0 and stats.binom.cdf(k - 1, n, 0.5) > (1 - level) / 2:
        k -= 1
    if k < 1:
        return float("nan"), float("nan")
    return float(v[k - 1]), float(v[n - k])


def proportion_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact binomial) interval of a proportion; ``(nan, nan)`` for n = 0."""
    from scipy import stats

    if n == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo = 0.0 if successes == 0 else float(stats.beta.ppf(a, successes, n - successes + 1))
    hi = 1.0 if successes == n else float(stats.beta.ppf(1 - a, successes + 1, n - successes))
    return lo, hi
