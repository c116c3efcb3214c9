"""Resampling between voxel grids, by world coordinates (so any two affines work)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tracect.io.volume import Volume


def resample_to_grid(volume: Volume, affine: np.ndarray, shape: tuple[int, int, int], *,
                     order: int = 1, cval: float = 0.0, antialias: bool = True,
                     dtype=np.float32) -> Volume:
    """Sample ``volume`` on the grid ``(affine, shape)``.

    ``order`` 1 (trilinear) for images, 0 (nearest) for label masks. With ``antialias`` and
    ``order > 0``, the source is first smoothed with a Gaussian of sigma ``(factor - 1) / 2`` source
    voxels along each axis that is downsampled by ``factor`` (the usual anti-aliasing rule), so a
    coarser grid averages the voxels it covers instead of picking some of them.
    """
    affine = np.asarray(affine, dtype=np.float64)
    src_to_dst = np.linalg.inv(volume.affine) @ affine  # dst index -> src index
    matrix, offset = src_to_dst[:3, :3], src_to_dst[:3, 3]
    data = volume.array.astype(np.float32 if order > 0 else volume.array.dtype, copy=False)
    if order > 0 and antialias:
        factors = np.linalg.norm(matrix, axis=1)  # src voxels per dst voxel, along each src axis
        sigma = np.maximum(0.0, (factors - 1.0) / 2.0)
        if np.any(sigma > 0.05):
            data = ndimage.gaussian_filter(data, sigma=sigma, mode="nearest")
    if np.allclose(matrix, np.diag(np.diag(matrix))):
        out = ndimage.affine_transform(data, np.diag(matrix), offset=offset, output_shape=shape,
                                       order=order, mode="constant", cval=cval, prefilter=False)
    else:
        out = ndimage.affine_transform(data, matrix, offset=offset, output_shape=shape,
                                       order=order, mode="constant", cval=cval, prefilter=False)
    return Volume(out.astype(dtype, copy=False), affine, dict(volume.meta))


def resample_to_int16(volume: Volume, affine: np.ndarray, shape: tuple[int, int, int], *, cval: float = 0.0,
                      clip: tuple[int, int] = (-1024, 3071), slab: int = 16) -> np.ndarray:
    """``volume`` (HU) trilinearly on the grid ``(affine, shape)`` without anti-aliasing, rounded and
    clipped to int16, ``slab`` output slices at a time: each output voxel is computed as on the whole grid
    at once (:func:`resample_to_grid` with ``antialias=False`` shares nothing between voxels), and no float
    array of the output's size is made."""
    out = np.empty(shape, np.int16)
    for z0 in range(0, shape[0], slab):
        n = min(slab, shape[0] - z0)
        shift = np.eye(4)
        shift[0, 3] = z0  # the slab's first index is the grid's z0
        part = resample_to_grid(volume, np.asarray(affine, np.float64) @ shift, (n, *shape[1:]), order=1,
                                cval=cval, antialias=False).array
        np.rint(part, out=part)
        out[z0:z0 + n] = np.clip(part, *clip, out=part)
    return out


def scaled_grid(volume: Volume, origin_ijk, step_ijk, shape) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The affine of a grid aligned with ``volume``'s axes, starting at source index ``origin_ijk``
    with ``step_ijk`` source voxels per output voxel (fractional values allowed)."""
    m = np.eye(4)
    m[:3, :3] = np.diag(np.asarray(step_ijk, dtype=np.float64))
    m[:3, 3] = np.asarray(origin_ijk, dtype=np.float64)
    return volume.affine @ m, tuple(int(s) for s in shape)
