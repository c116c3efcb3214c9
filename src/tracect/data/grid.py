"""The model's grid and intensity conventions, shared by ``prepare`` (which makes training data on them)
and by generation and evaluation (which must see data exactly as training did).

- :class:`PrepareConfig`: how a CT becomes a cache: in-plane matrix, pixel spacing, slice thickness,
  HU window, model vocabulary, flow method, body threshold;
- :func:`output_grid`: the grid of a volume on the model's side: cropped to the body, ``size`` x ``size``
  square pixels in-plane, the source's (or the configured) slice thickness;
- :func:`hu_to_unit` / :func:`unit_to_hu`: HU <-> the network's [-1, 1] through the HU window;
- :data:`AIR_HU`: what lies outside a resampled field of view.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from tracect.data.body import bbox
from tracect.data.flow import METHODS
from tracect.data.resample import scaled_grid
from tracect.io.volume import Volume

AIR_HU = -1024.0
# below any tissue or air (air is about -1000 HU): the padding a scanner stores outside its circular
# field of view (-3024 HU in the CRLM cases, -2048 or -2000 elsewhere), not a measurement
PADDING_HU = -2000.0


@dataclass(frozen=True)
class PrepareConfig:
    """How a dataset becomes a cache. Saved as ``CACHE/config.json``."""

    size: int = 64  # in-plane output matrix (size x size)
    pixel_spacing: float | None = None  # mm; None: fit the body's bounding square into the frame
    slice_thickness: float | None = None  # mm between output slices; None: keep the source's
    hu_window: tuple[float, float] = (-1000.0, 1000.0)  # HU mapped to [-1, 1], clipped outside
    vocabulary: str = "tracect"  # model vocabulary the masks are remapped to
    flow: str = "dis"
    margin_mm: float = 10.0  # air kept around the body
    min_slices: int = 2
    body_threshold: float = -500.0  # HU

    def __post_init__(self):
        if not 8 <= self.size <= 1024:
            raise ValueError(f"size must be in 8..1024, got {self.size}")
        for name in ("pixel_spacing", "slice_thickness"):
            v = getattr(self, name)
            if v is not None and not 0.1 <= v <= 20:
                raise ValueError(f"{name} must be in 0.1..20 mm or None, got {v}")
        lo, hi = self.hu_window
        if not lo < hi:
            raise ValueError(f"hu_window must be (low, high) with low < high, got {self.hu_window}")
        if self.flow not in METHODS:
            raise ValueError(f"flow must be one of {METHODS}, got {self.flow}")
        if self.min_slices < 1:
            raise ValueError("min_slices must be >= 1")
        object.__setattr__(self, "hu_window", (float(lo), float(hi)))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "PrepareConfig":
        data = dict(data)
        data["hu_window"] = tuple(data.get("hu_window", (-1000.0, 1000.0)))
        return cls(**data)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]


def replace_padding(hu: np.ndarray) -> tuple[np.ndarray, int]:
    """``hu`` with scanner padding (values below :data:`PADDING_HU`) set to :data:`AIR_HU`, and the number
    of voxels replaced; the array itself when there are none."""
    pad = hu < PADDING_HU
    n = int(pad.sum())
    return (np.where(pad, np.asarray(AIR_HU, dtype=hu.dtype), hu) if n else hu), n


def hu_to_unit(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """HU -> [-1, 1] (clipped)."""
    lo, hi = window
    return np.clip((hu.astype(np.float32) - lo) / (hi - lo) * 2.0 - 1.0, -1.0, 1.0)


def unit_to_hu(x: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """[-1, 1] -> HU (inverse of :func:`hu_to_unit` inside the window)."""
    lo, hi = window
    return (np.asarray(x, dtype=np.float32) + 1.0) / 2.0 * (hi - lo) + lo


def output_grid(canon: Volume, body: np.ndarray, config: PrepareConfig) -> tuple[np.ndarray, tuple]:
    """The cache grid for a canonical volume: cropped to the body, ``size`` x ``size`` in-plane.

    Returns ``(affine, (Z, size, size))``. In-plane pixels are square; z keeps the body's extent.
    """
    sz, sy, sx = canon.spacing
    lo, hi = bbox(body)
    z0, z1 = int(lo[0]), int(hi[0])
    cy, cx = (lo[1] + hi[1] - 1) / 2.0, (lo[2] + hi[2] - 1) / 2.0  # body centre, source index
    if config.pixel_spacing is None:
        extent = max((hi[1] - lo[1]) * sy, (hi[2] - lo[2]) * sx) + 2 * config.margin_mm
        pixel = extent / config.size
    else:
        pixel = config.pixel_spacing
    thickness = config.slice_thickness or sz
    n_z = int(np.floor((z1 - z0 - 1) * sz / thickness + 1e-6)) + 1
    half = (config.size - 1) / 2.0
    origin = (z0, cy - half * pixel / sy, cx - half * pixel / sx)
    step = (thickness / sz, pixel / sy, pixel / sx)
    return scaled_grid(canon, origin, step, (n_z, config.size, config.size))
