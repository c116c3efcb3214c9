"""CT noise on the output grid: the texture a coarse generation grid cannot hold.

A 64² generation grid over a torso has pixels of about 6 mm, while the CT is written on the mask's grid
(0.6-0.9 mm in-plane for a 512² scan). Everything finer than the generation grid's Nyquist frequency --
the scanner's noise and the fine mottle of soft tissue, most of what makes a slice look like CT -- is
missing there: the interpolated slice is smooth. Video codecs meet the same problem with film grain
(AV1's grain synthesis): the codec keeps the picture and the decoder draws grain of a measured
spectrum. Here the spectrum is the noise power spectrum (NPS) of real CT, measured in patches of uniform
soft tissue of real scans (:func:`measure_nps`), and only its part above the generation grid's Nyquist
frequency is drawn (:func:`draw`): below it the model's own output stands.

The grain adds no anatomy -- edges stay as blurred as the generation grid leaves them -- and does not
move an organ's level (it has zero mean). It is drawn slice by slice, independent along z, from a
generator of its own seeded by the volume's seed, so a volume with grain is the volume without it plus
a reproducible noise field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# the shipped spectrum, measured by scripts/measure_grain.py on the real CTs in shared/ (one held out)
SHIPPED = Path(__file__).with_name("grain_nps.json")
# a stream of its own: the same seed gives the same grain whatever the sampler drew from its generator
GRAIN_STREAM = 0x67726169
# soft tissue for the NPS: muscle and solid organs; fat (below), enhanced vessels and bone (above) left out
SOFT_TISSUE_HU = (-20.0, 120.0)
# the band's edge: the grain fades in over [1 - RAMP, 1 + RAMP] x the generation grid's Nyquist
RAMP = 0.25


@dataclass(frozen=True)
class GrainSpectrum:
    """A radially averaged noise power spectrum: ``nps[i]`` (HU² mm²) at ``freq[i]`` (cycles per mm).

    ``cases`` names the scans it was measured on and ``patches`` how many patches each gave; ``sd_hu``
    is the standard deviation of noise with this spectrum over all the measured frequencies."""

    freq: tuple[float, ...]
    nps: tuple[float, ...]
    cases: tuple[str, ...] = ()
    patches: tuple[int, ...] = ()
    patch_px: int = 32
    soft_tissue_hu: tuple[float, float] = SOFT_TISSUE_HU

    def __post_init__(self):
        f, p = np.asarray(self.freq, float), np.asarray(self.nps, float)
        if f.ndim != 1 or f.shape != p.shape or len(f) < 2:
            raise ValueError("a grain spectrum needs freq and nps of one length (at least 2)")
        if np.any(np.diff(f) <= 0) or f[0] < 0 or np.any(~np.isfinite(p)) or np.any(p < 0):
            raise ValueError("a grain spectrum's freq must rise from >= 0 and its nps be finite and >= 0")

    @property
    def sd_hu(self) -> float:
        """Standard deviation (HU) of noise with this spectrum: the square root of its integral over the
        frequency plane, ∫ NPS(f) 2πf df."""
        f, p = np.asarray(self.freq), np.asarray(self.nps)
        return float(np.sqrt(np.trapezoid(p * 2 * np.pi * f, f)))

    def at(self, f: np.ndarray) -> np.ndarray:
        """The NPS at frequencies ``f`` (cycles per mm): linear between the measured ones, none above the
        highest (no scan measured showed what is there)."""
        return np.interp(f, self.freq, self.nps, right=0.0)

    def to_json(self) -> dict:
        return {"freq_cycles_per_mm": list(self.freq), "nps_hu2_mm2": list(self.nps), "cases": list(self.cases),
                "patches": list(self.patches), "patch_px": self.patch_px,
                "soft_tissue_hu": list(self.soft_tissue_hu), "sd_hu": round(self.sd_hu, 3)}

    @classmethod
    def from_json(cls, d: dict) -> "GrainSpectrum":
        return cls(freq=tuple(float(x) for x in d["freq_cycles_per_mm"]),
                   nps=tuple(float(x) for x in d["nps_hu2_mm2"]), cases=tuple(d.get("cases", ())),
                   patches=tuple(int(x) for x in d.get("patches", ())), patch_px=int(d.get("patch_px", 32)),
                   soft_tissue_hu=tuple(float(x) for x in d.get("soft_tissue_hu", SOFT_TISSUE_HU)))

    @classmethod
    def load(cls, path: str | Path | None = None) -> "GrainSpectrum":
        """A spectrum saved by :meth:`save` (default: the shipped one, :data:`SHIPPED`)."""
        return cls.from_json(json.loads(Path(path or SHIPPED).read_text()))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @property
    def sha256(self) -> str:
        """Hash of the spectrum's numbers (what the grain depends on), for the sidecar."""
        return hashlib.sha256(json.dumps([self.freq, self.nps]).encode()).hexdigest()


def _frequencies(shape: tuple[int, int], spacing_yx) -> np.ndarray:
    """Radial frequency (cycles per mm) of each bin of a 2D FFT of ``shape`` with pixels ``spacing_yx``."""
    fy = np.fft.fftfreq(shape[0], d=float(spacing_yx[0]))
    fx = np.fft.fftfreq(shape[1], d=float(spacing_yx[1]))
    return np.hypot(fy[:, None], fx[None, :])


def patch_nps(patches: np.ndarray, spacing_yx) -> np.ndarray:
    """The 2D NPS (HU² mm², unshifted FFT layout) of ``(N, P, P)`` patches of uniform tissue: each
    detrended by its best-fitting plane (the slow shading of an organ is not noise), averaged over the
    patches. Normalised so that white noise of variance s² gives s² dy dx everywhere."""
    x = np.asarray(patches, np.float64)
    n, h, w = x.shape
    yy, xx = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    design = np.stack([np.ones(h * w), yy.ravel(), xx.ravel()], 1)  # (P², 3)
    coef, *_ = np.linalg.lstsq(design, x.reshape(n, -1).T, rcond=None)  # (3, N)
    x = x - (design @ coef).T.reshape(n, h, w)
    dy, dx = float(spacing_yx[0]), float(spacing_yx[1])
    return (np.abs(np.fft.fft2(x)) ** 2).mean(0) * dy * dx / (h * w)


def radial(nps2d: np.ndarray, spacing_yx) -> tuple[np.ndarray, np.ndarray]:
    """Ring means of a 2D NPS, rings one frequency step of the coarser axis wide, those holding FFT bins
    only and without the zero frequency (the detrending took it) -> ``(mean frequency, mean NPS)`` per
    ring, cycles per mm."""
    r = _frequencies(nps2d.shape, spacing_yx).ravel()
    step = 1.0 / min(n * float(s) for n, s in zip(nps2d.shape, spacing_yx))
    which = np.floor(r / step + 0.5).astype(int)  # ring k holds frequencies within half a step of k * step
    counts = np.bincount(which)
    keep = (counts > 0) & (np.arange(len(counts)) > 0)
    f = np.bincount(which, weights=r)[keep] / counts[keep]
    p = np.bincount(which, weights=nps2d.ravel())[keep] / counts[keep]
    return f, p


def soft_tissue_corners(hu: np.ndarray, patch: int = 32, hu_range=SOFT_TISSUE_HU, max_patches: int = 400,
                        seed: int = 0) -> list[tuple[int, int, int]]:
    """Corners ``(z, y, x)`` of up to ``max_patches`` non-overlapping ``patch`` x ``patch`` axial patches of
    ``hu`` ``(Z, Y, X)`` lying wholly in ``hu_range`` after a 3 x 3 median (so that noise does not push a
    uniform organ's pixel out of the range), drawn evenly at random (``seed``), in scan order."""
    from numpy.lib.stride_tricks import sliding_window_view
    from scipy.ndimage import median_filter

    lo, hi = hu_range
    corners = []
    for z in range(hu.shape[0]):
        inside = median_filter(hu[z].astype(np.float32), size=3)
        inside = (inside >= lo) & (inside <= hi)
        if inside.sum() < patch * patch:
            continue
        full = sliding_window_view(inside, (patch, patch))[::patch, ::patch].all(axis=(-1, -2))
        corners += [(z, y * patch, x * patch) for y, x in zip(*np.nonzero(full))]
    pick = np.random.default_rng(seed).permutation(len(corners))[:max_patches]
    return [corners[i] for i in sorted(pick)]


def cut_patches(hu: np.ndarray, corners, patch: int = 32) -> np.ndarray:
    """The ``patch`` x ``patch`` patches of ``hu`` at ``corners`` -> ``(N, patch, patch)`` float32."""
    if not corners:
        return np.zeros((0, patch, patch), np.float32)
    return np.stack([hu[z, y:y + patch, x:x + patch] for z, y, x in corners]).astype(np.float32)


def soft_tissue_patches(hu: np.ndarray, patch: int = 32, hu_range=SOFT_TISSUE_HU, max_patches: int = 400,
                        seed: int = 0) -> np.ndarray:
    """The patches of :func:`soft_tissue_corners` -> ``(N, patch, patch)`` raw HU."""
    return cut_patches(hu, soft_tissue_corners(hu, patch, hu_range, max_patches, seed), patch)


def patch_spectrum(patches: np.ndarray, spacing_yx) -> tuple[np.ndarray, np.ndarray]:
    """The radial NPS of ``(N, P, P)`` patches (:func:`patch_nps`, then :func:`radial`)."""
    return radial(patch_nps(patches, spacing_yx), spacing_yx)


def scan_nps(hu: np.ndarray, spacing_yx, patch: int = 32, max_patches: int = 400) -> tuple | None:
    """One scan's radial NPS in its patches of uniform soft tissue (:func:`soft_tissue_patches`) ->
    ``(frequencies, NPS, patches, Nyquist)`` (cycles per mm, HU² mm²), None without a patch."""
    patches = soft_tissue_patches(hu, patch, max_patches=max_patches)
    if len(patches) == 0:
        return None
    f, p = patch_spectrum(patches, spacing_yx)
    return f, p, len(patches), 0.5 / max(float(s) for s in spacing_yx)


def combine(per_scan: dict[str, tuple], bins: int = 40, patch: int = 32) -> GrainSpectrum:
    """Scans' :func:`scan_nps` (name -> result; None left out) as one spectrum: each interpolated onto
    ``bins`` frequencies from the lowest ring of any scan to the coarsest scan's Nyquist frequency, and
    the median over scans at each frequency (each scan counted once, whatever its number of patches; one
    sharp-kernel scan does not set the level of all)."""
    kept = {name: r for name, r in per_scan.items() if r is not None}
    if not kept:
        raise ValueError("no scan had a patch of uniform soft tissue")
    freq = np.linspace(min(r[0][0] for r in kept.values()), min(r[3] for r in kept.values()), bins)
    typical = np.median([np.interp(freq, r[0], r[1]) for r in kept.values()], 0)
    return GrainSpectrum(freq=tuple(float(x) for x in freq), nps=tuple(float(x) for x in typical),
                         cases=tuple(kept), patches=tuple(r[2] for r in kept.values()), patch_px=patch)


def measure_nps(scans: list[tuple[str, np.ndarray, tuple[float, float]]], patch: int = 32, bins: int = 40,
                max_patches: int = 400) -> GrainSpectrum:
    """The NPS of real CT: ``scans`` are ``(name, hu (Z, Y, X), in-plane spacing (mm, y then x))``, each
    measured by :func:`scan_nps` and the results combined by :func:`combine`."""
    if not scans:
        raise ValueError("measure_nps needs at least one scan")
    return combine({name: scan_nps(hu, spacing, patch, max_patches) for name, hu, spacing in scans}, bins, patch)


def band(f: np.ndarray, cutoff: float) -> np.ndarray:
    """The grain's share of the power at frequencies ``f``: 0 below ``(1 - RAMP) cutoff``, 1 above
    ``(1 + RAMP) cutoff``, a raised cosine between (no ring where the band starts)."""
    t = np.clip((f / max(cutoff, 1e-9) - (1 - RAMP)) / (2 * RAMP), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * t)


def amplitude(shape: tuple[int, int], spacing_yx, spectrum: GrainSpectrum, cutoff: float) -> np.ndarray:
    """The Fourier-domain filter ``(Y, X)`` that turns unit white noise into grain whose NPS is
    ``spectrum`` above ``cutoff`` cycles per mm (:func:`band`) and zero well below it."""
    dy, dx = float(spacing_yx[0]), float(spacing_yx[1])
    f = _frequencies(shape, (dy, dx))
    return np.sqrt(spectrum.at(f) * band(f, cutoff) / (dy * dx))


def _shaped(filt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One slice of white Gaussian noise through ``filt`` (:func:`amplitude`) -> float32, periodic."""
    return np.fft.ifft2(np.fft.fft2(rng.standard_normal(filt.shape)) * filt).real.astype(np.float32)


def draw(shape: tuple[int, int], spacing_yx, spectrum: GrainSpectrum, cutoff: float,
         rng: np.random.Generator) -> np.ndarray:
    """One slice of grain ``(Y, X)`` (HU, float32): white Gaussian noise shaped in the Fourier domain so
    that its NPS is ``spectrum`` above ``cutoff`` cycles per mm (:func:`band`) and zero well below it.
    Its variance is ∫ NPS(f) band(f) over the slice's frequency plane; periodic at the slice's edges."""
    return _shaped(amplitude(shape, spacing_yx, spectrum, cutoff), rng)


def add_grain(hu: np.ndarray, spacing_yx, spectrum: GrainSpectrum, cutoff: float, seed: int,
              clip: tuple[float, float] = (-1024, 3071)) -> np.ndarray:
    """``hu`` ``(Z, Y, X)`` (canonical, axial slices) plus grain, each slice drawn in turn from one
    generator seeded by ``seed`` on the grain's own stream -> same dtype, clipped to ``clip`` (the CT
    range tracect writes; air's grain is cut at its floor, as a scanner's is) and rounded for integers."""
    rng = np.random.default_rng([GRAIN_STREAM, int(seed)])
    filt = amplitude(hu.shape[1:], spacing_yx, spectrum, cutoff)  # one filter for every slice
    out = np.empty_like(hu)
    for z in range(hu.shape[0]):
        noisy = np.clip(hu[z].astype(np.float32) + _shaped(filt, rng), *clip)
        out[z] = np.rint(noisy) if np.issubdtype(hu.dtype, np.integer) else noisy
    return out


@dataclass(frozen=True)
class Grain:
    """Grain for a generated volume: a ``spectrum`` and where its band starts, relative to the generation
    grid's Nyquist frequency (``cutoff_scale`` 1: just above what the grid holds)."""

    spectrum: GrainSpectrum = dataclasses.field(default_factory=GrainSpectrum.load)
    cutoff_scale: float = 1.0

    def __post_init__(self):
        if not self.cutoff_scale > 0:
            raise ValueError(f"grain.cutoff_scale must be > 0, got {self.cutoff_scale!r}")

    def cutoff(self, generation_spacing_yx) -> float:
        """Cycles per mm where the band starts, for a generation grid of ``generation_spacing_yx`` mm."""
        return self.cutoff_scale * 0.5 / max(float(s) for s in generation_spacing_yx)

    def record(self, generation_spacing_yx) -> dict:
        """What the sidecar keeps of it."""
        return {"spectrum_sha256": self.spectrum.sha256, "cases": list(self.spectrum.cases),
                "sd_hu": round(self.spectrum.sd_hu, 3), "cutoff_scale": self.cutoff_scale,
                "cutoff_cycles_per_mm": round(self.cutoff(generation_spacing_yx), 5), "stream": GRAIN_STREAM}
