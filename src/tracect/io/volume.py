"""A voxel array that carries its geometry, and tracect's canonical orientation.

World coordinates are RAS+ millimetres, the NIfTI convention: +x toward the patient's Right,
+y toward Anterior, +z toward Superior. ``affine`` maps voxel indices ``(i, j, k, 1)`` to world mm.
Axis codes (``orientation``) name the direction each array axis increases toward, as nibabel does:
a RAS image has codes ``("R", "A", "S")``; a DICOM-style LPS image ``("L", "P", "S")``.

The **canonical orientation** (:data:`CANONICAL_CODES`) is the array layout every internal step uses:
``array[z, y, x]`` with

- axis 0 (z, slices): increases toward **Inferior** -- slice 0 is the most superior slice;
- axis 1 (y, rows): increases toward **Posterior** -- row 0 is anterior;
- axis 2 (x, columns): increases toward the patient's **Left** -- column 0 is the patient's right.

So ``array[z]`` shown with ``imshow`` is an axial slice in the radiological display convention
(patient's right on the viewer's left, anterior at the top), and a volume is generated from the head
down. Reorientation only permutes and flips axes (no resampling), so it is exact and invertible;
an oblique affine stays oblique (the permutation picks the closest axes).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import (apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation,
                                  ornt_transform)

CANONICAL_CODES = ("I", "P", "L")  # axis codes of array axes (0, 1, 2) in canonical layout


# 2**30 voxels: a 512 x 512 x 4096 CT, 2 GiB as int16 and 8 GiB once scaled to float64. Headers
# promising more are refused before anything is allocated; files are data from elsewhere.
DEFAULT_MAX_VOXELS = 1 << 30
MAX_VOXELS_ENV = "TRACECT_MAX_VOXELS"


class VolumeReadError(ValueError):
    """An input that cannot be read as a volume (message names the file and the reason)."""


def voxel_limit(max_voxels: int | None = None) -> tuple[int, str]:
    """The voxel limit in force and where it comes from: ``max_voxels``, else the environment
    variable ``TRACECT_MAX_VOXELS``, else :data:`DEFAULT_MAX_VOXELS`."""
    if max_voxels is not None:
        return int(max_voxels), "max_voxels"
    env = os.environ.get(MAX_VOXELS_ENV, "").strip()
    if env:
        try:
            return int(float(env)), MAX_VOXELS_ENV
        except ValueError:
            raise ValueError(f"{MAX_VOXELS_ENV}={env!r} is not a number of voxels") from None
    return DEFAULT_MAX_VOXELS, f"the default; raise it with {MAX_VOXELS_ENV} or max_voxels"


def check_voxels(name: str, shape, max_voxels: int | None = None) -> int:
    """Number of voxels a header promises; refused when an axis is empty or the total is over the limit.

    Called on header values, before any array is allocated.
    """
    shape = tuple(int(s) for s in shape)
    if any(s < 1 for s in shape):
        raise VolumeReadError(f"{name}: header gives shape {shape}; every axis needs at least one voxel")
    n = math.prod(shape)
    limit, source = voxel_limit(max_voxels)
    if n > limit:
        raise VolumeReadError(f"{name}: header promises {n} voxels {shape}, over the limit of {limit} "
                              f"voxels ({source})")
    return n


def volume_from(name: str, array: np.ndarray, affine: np.ndarray, meta: dict) -> "Volume":
    """A :class:`Volume` built from what a file holds; unusable geometry is a read error naming the file."""
    try:
        return Volume(array, affine, meta)
    except ValueError as e:
        raise VolumeReadError(f"{name}: unusable geometry: {e}") from None


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D array with its voxel→world (RAS+ mm) affine.

    ``array`` is ``(A0, A1, A2)`` in whatever axis order ``affine`` describes; :meth:`canonical`
    returns it as ``(Z, Y, X)`` in :data:`CANONICAL_CODES`. ``meta`` holds provenance (source path,
    DICOM series UID, ...) and is carried through reorientation.
    """

    array: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.array.ndim != 3:
            raise ValueError(f"a volume is 3D; got an array of shape {self.array.shape}")
        aff = np.asarray(self.affine, dtype=np.float64)
        if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
            raise ValueError("affine must be a finite 4x4 matrix")
        if abs(np.linalg.det(aff[:3, :3])) < 1e-9:
            raise ValueError("affine is singular (zero spacing or collinear axes)")
        object.__setattr__(self, "affine", aff)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along each array axis, mm (column norms of the affine)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def orientation(self) -> tuple[str, str, str]:
        """Axis codes: the world direction each array axis increases toward (nibabel's codes)."""
        return tuple(nib.aff2axcodes(self.affine))

    @property
    def is_canonical(self) -> bool:
        return self.orientation == CANONICAL_CODES

    def with_array(self, array: np.ndarray, **meta) -> "Volume":
        """Same geometry, new voxels (shape must match)."""
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} does not match the geometry's {self.shape}")
        return replace(self, array=array, meta={**self.meta, **meta})

    def reorient(self, codes: tuple[str, str, str]) -> "Volume":
        """Permute/flip axes so that the array axes point toward ``codes``; exact, no resampling."""
        start = io_orientation(self.affine)
        transform = ornt_transform(start, axcodes2ornt(codes))
        array = apply_orientation(self.array, transform)
        affine = self.affine @ inv_ornt_aff(transform, self.array.shape)
        return Volume(np.ascontiguousarray(array), affine, dict(self.meta))

    def canonical(self) -> "Volume":
        """This volume in :data:`CANONICAL_CODES` layout: ``array`` is ``(Z, Y, X)``."""
        return self if self.is_canonical else self.reorient(CANONICAL_CODES)

    def like(self, reference: "Volume") -> "Volume":
        """Reorient to ``reference``'s axis codes (e.g. a canonical result back to the input's layout)."""
        return self.reorient(reference.orientation)

    def world(self, ijk: np.ndarray) -> np.ndarray:
        """World RAS+ mm of voxel indices ``(..., 3)``."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def __repr__(self) -> str:
        sp = "x".join(f"{s:.3g}" for s in self.spacing)
        return (f"Volume(shape={self.shape}, spacing={sp} mm, orientation={''.join(self.orientation)}, "
                f"dtype={self.array.dtype})")
