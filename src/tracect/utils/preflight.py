"""Checks made before a long command starts, so a full disk or a read-only folder is found before
hours of work instead of at the first write.

Sizes are estimated from file headers only (no voxel data is read), so the checks cost seconds even
for thousands of inputs. An estimate that cannot be made for one input falls back to a stated default
rather than failing: the input's own problem is reported when the work reaches it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

GiB = 1024 ** 3
DISK_MARGIN = 1.05  # room for sidecars, manifests and the temporary copy of the file being written


class PreflightError(Exception):
    """The output folder cannot take the work: not writable, or too little free space."""


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove it takes a file; returns it.

    A real file is created and removed because permission bits do not tell the whole story: ``root``
    ignores them, and ACLs, read-only mounts and network file systems answer ``os.access`` wrongly.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise PreflightError(f"cannot use {folder} as the output folder: it exists and is not a folder") from None
    except OSError as e:
        raise PreflightError(f"cannot create the output folder {folder}: {e.strerror}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".tracect-write-test-", dir=folder)
    except OSError as e:
        raise PreflightError(f"cannot write to the output folder {folder}: {e.strerror}") from None
    os.close(fd)
    os.unlink(probe)
    return folder


def free_bytes(folder: str | Path) -> int:
    return shutil.disk_usage(folder).free


def check_free_space(folder: str | Path, needed: int, what: str = "the outputs") -> None:
    """Raise :class:`PreflightError` if ``folder``'s file system has less than ``needed`` bytes free."""
    free = free_bytes(folder)
    needed = int(needed * DISK_MARGIN)
    if needed > free:
        raise PreflightError(f"not enough free space in {folder}: {what} need about {_size(needed)}, "
                             f"{_size(free)} free (free some space, choose another --out, or pass "
                             "--no-space-check if the estimate is too cautious)")


def _size(n: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


# ------------------------------------------------------------------------------- header-only sizes


def header_shape(path: str | Path) -> tuple[tuple[int, ...], np.ndarray | None] | None:
    """``(shape, affine)`` of a volume from its header, or ``None`` where that cannot be had cheaply.

    NIfTI and NRRD headers are read without the voxel data; a DICOM folder gives ``(n_files,)`` and no
    affine; a folder of per-organ NIfTI files gives its first file's header.
    """
    path = Path(path)
    try:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            nifti = [p for p in files if p.name.lower().endswith((".nii", ".nii.gz"))]
            if nifti:
                return header_shape(nifti[0])
            return ((len(files),), None) if files else None
        name = path.name.lower()
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            img = nib.load(str(path))  # lazy: only the header is parsed
            return tuple(int(s) for s in img.shape[:3]), np.asarray(img.affine)
        if name.endswith(".nrrd"):
            import nrrd

            h = nrrd.read_header(str(path))
            return tuple(int(s) for s in h["sizes"][:3]), None
    except Exception:  # an unreadable input is that job's failure, reported when it is reached
        return None
    return None


def slice_axis(shape: tuple[int, ...], affine: np.ndarray | None) -> int:
    """The array axis closest to the patient's superior-inferior axis (the last one without an affine)."""
    if affine is None or len(shape) < 3:
        return len(shape) - 1
    return int(np.argmax(np.abs(np.asarray(affine)[2, :3])))


def estimate_cache_bytes(cases, size: int, slice_thickness: float | None = None,
                         default_slices: int = 512) -> int:
    """Bytes ``tracect prepare`` writes for ``cases`` (:class:`~tracect.data.layout.CaseSource`).

    Per slice a case stores image (float16), mask and body (uint8) and a 2-channel float16 flow: 8
    bytes per in-plane pixel. The slice count comes from the image header (scaled to
    ``slice_thickness`` where given); ``default_slices`` stands in where no header can be read.
    """
    total = 0
    for case in cases:
        slices = default_slices
        found = header_shape(case.image) if case.image is not None else None
        if found is not None:
            shape, affine = found
            axis = slice_axis(shape, affine)
            slices = shape[axis]
            if slice_thickness and affine is not None:
                spacing = float(np.linalg.norm(np.asarray(affine)[:3, axis]))
                slices = int(np.ceil(slices * spacing / slice_thickness))
        total += slices * size * size * 8
    return total
