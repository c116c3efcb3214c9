"""Pairing an image with its mask: whether two volumes sample the same voxel grid, whatever order
their axes are stored in.

An image and its mask often come in different axis orders: a DICOM series reads as
``(columns, rows, slices)`` in LPS, while TotalSegmentator writes its NIfTI masks in LAS. The same voxel
then has other indices and the affines differ by a whole field of view (one 512-pixel axis flipped is
about 400-500 mm), yet both describe the same points in space. So grids are compared the only way that
does not depend on storage: both are reoriented to the canonical layout (a permutation and flips of the
axes, exact), and the world positions of corresponding voxel centres are compared, in millimetres.

For two grids of the same shape the distance between corresponding voxel centres is an affine function
of the voxel index, so its largest value over the whole grid is reached at one of the eight corners:
comparing corners is exact, not a sample.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from tracect.io.volume import Volume

# Voxel centres of "the same grid" may differ by float rounding (NIfTI keeps its affine in float32,
# DICOM writes positions as decimal strings): 0.1 mm is far above that and far below any voxel.
GRID_TOLERANCE_MM = 0.1


class GridMismatchError(ValueError):
    """Two volumes that should share one grid do not; the message gives the offset in mm."""


@dataclass(frozen=True)
class GridComparison:
    """Two grids in canonical layout: their shapes ``(Z, Y, X)`` and the largest distance (mm) between
    corresponding corner voxel centres (for equal shapes: between any corresponding voxel centres)."""

    shape_a: tuple[int, int, int]
    shape_b: tuple[int, int, int]
    offset_mm: float

    def same(self, tol_mm: float = GRID_TOLERANCE_MM) -> bool:
        return self.shape_a == self.shape_b and self.offset_mm <= tol_mm

    def describe(self, a: str = "image", b: str = "mask", tol_mm: float = GRID_TOLERANCE_MM) -> str:
        """One phrase saying how the grids differ (or that they agree)."""
        if self.shape_a != self.shape_b:
            return (f"{a} shape {self.shape_a} differs from {b} shape {self.shape_b} (canonical z, y, x): "
                    f"another field of view or matrix; their corner voxels lie up to {self.offset_mm:.3g} mm apart")
        if self.offset_mm > tol_mm:
            return (f"{a} and {b} voxel centres lie up to {self.offset_mm:.3g} mm apart (tolerance {tol_mm:g} mm): "
                    "shifted, rotated or scaled grids")
        return f"{a} and {b} share one grid (voxel centres within {self.offset_mm:.2g} mm)"


def _corners(vol: Volume) -> np.ndarray:
    """World RAS mm of the eight corner voxel centres of ``vol`` (canonical), ``(8, 3)``."""
    last = np.array(vol.shape) - 1
    return vol.world(np.array([[hi if bit else 0 for bit, hi in zip(bits, last)]
                               for bits in itertools.product((0, 1), repeat=3)], dtype=np.float64))


def compare_grids(a: Volume, b: Volume) -> GridComparison:
    """Compare the grids of ``a`` and ``b`` in canonical layout (see the module docstring)."""
    ca, cb = a.canonical(), b.canonical()
    offset = float(np.linalg.norm(_corners(ca) - _corners(cb), axis=1).max())
    return GridComparison(ca.shape, cb.shape, offset)


def same_grid(a: Volume, b: Volume, tol_mm: float = GRID_TOLERANCE_MM) -> bool:
    """Whether ``a`` and ``b`` sample the same points in space (any axis order), within ``tol_mm``."""
    return compare_grids(a, b).same(tol_mm)


def check_same_grid(a: Volume, b: Volume, names: tuple[str, str] = ("image", "mask"),
                    tol_mm: float = GRID_TOLERANCE_MM) -> None:
    """Raise :class:`GridMismatchError` (offset in mm) unless ``a`` and ``b`` share one grid."""
    c = compare_grids(a, b)
    if not c.same(tol_mm):
        raise GridMismatchError(f"{names[0]} and {names[1]} grids differ: {c.describe(*names, tol_mm=tol_mm)}")


def canonical_pair(image: Volume, mask: Volume, names: tuple[str, str] = ("image", "mask"),
                   tol_mm: float = GRID_TOLERANCE_MM) -> tuple[Volume, Volume]:
    """``image`` and ``mask`` in canonical layout on one grid: the mask takes the image's affine once
    the grids are checked equal (so float-level differences cannot make two steps disagree).
    Raises :class:`GridMismatchError`."""
    check_same_grid(image, mask, names, tol_mm)
    ci = image.canonical()
    return ci, Volume(mask.canonical().array, ci.affine, dict(mask.meta))
