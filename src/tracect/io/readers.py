"""Read any supported input into a :class:`Volume`, and write volumes back with their geometry.

Supported inputs: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), a DICOM series folder,
and for masks also a TotalSegmentator-style folder of per-organ binary NIfTI files
(``liver.nii.gz``, ``spleen.nii.gz``, ...) merged through a label vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tracect.io.dicom import read_dicom_series
from tracect.io.volume import Volume, VolumeReadError
from tracect.labels.vocabulary import Vocabulary, total
from tracect.utils.atomic import atomic_path

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
LPS_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    return any(path.name.lower().endswith(s) for s in suffixes)


def _is_nifti_folder(path: Path) -> bool:
    return path.is_dir() and any(_has_suffix(p, NIFTI_SUFFIXES) for p in path.iterdir())


def read_nifti(path: str | Path) -> Volume:
    """NIfTI-1/2 with scaling applied; a trailing singleton 4th dimension is dropped."""
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)  # applies scl_slope/scl_inter when set
    except Exception as e:  # nibabel raises many types for bad headers and truncated gzip
        raise VolumeReadError(f"{path.name}: unreadable NIfTI ({type(e).__name__}: {e})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise VolumeReadError(f"{path.name}: expected a 3D volume, got shape {data.shape}")
    if np.issubdtype(data.dtype, np.floating) and np.all(np.isfinite(data)) and data.size \
            and np.array_equal(data, np.rint(data)) and -32768 <= data.min() and data.max() <= 32767:
        data = data.astype(np.int16)  # scaled integer storage: keep it integer
    return Volume(np.ascontiguousarray(data), img.affine, {"source": str(path), "format": "nifti"})


def read_nrrd(path: str | Path) -> Volume:
    """NRRD with ``space directions``/``space origin`` (RAS or LPS spaces)."""
    import nrrd

    path = Path(path)
    try:
        data, header = nrrd.read(str(path))
    except Exception as e:
        raise VolumeReadError(f"{path.name}: unreadable NRRD ({type(e).__name__}: {e})") from None
    if data.ndim != 3:
        raise VolumeReadError(f"{path.name}: expected a 3D volume, got shape {data.shape}")
    dirs = header.get("space directions")
    if dirs is None:
        spacings = header.get("spacings", [1.0, 1.0, 1.0])
        dirs = np.diag(spacings)
    dirs = np.asarray(dirs, dtype=np.float64)  # row i: world step of array axis i
    affine = np.eye(4)
    affine[:3, :3] = dirs.T
    affine[:3, 3] = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    space = str(header.get("space", "right-anterior-superior")).lower()
    if space in ("left-posterior-superior", "lps"):
        affine = LPS_FLIP @ affine
    elif space not in ("right-anterior-superior", "ras"):
        raise VolumeReadError(f"{path.name}: NRRD space '{space}' is not supported (RAS or LPS)")
    return Volume(np.ascontiguousarray(data), affine, {"source": str(path), "format": "nrrd"})


def read_volume(path: str | Path) -> Volume:
    """Any supported image: NIfTI, NRRD or a DICOM series folder. Values as stored (HU for CT)."""
    path = Path(path)
    if not path.exists():
        raise VolumeReadError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_dicom_series(path)
    if _has_suffix(path, NIFTI_SUFFIXES):
        return read_nifti(path)
    if _has_suffix(path, NRRD_SUFFIXES):
        return read_nrrd(path)
    raise VolumeReadError(f"{path.name}: unknown format (expected .nii, .nii.gz, .nrrd, .nhdr or a DICOM folder)")


def _label_array(vol: Volume, name: str) -> np.ndarray:
    data = vol.array
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.rint(data)):
            raise VolumeReadError(f"{name}: mask holds non-integer values; is it an image?")
    if data.size and (data.min() < 0 or data.max() > 65535):
        raise VolumeReadError(f"{name}: mask values outside 0..65535")
    return data.astype(np.uint8 if data.size == 0 or data.max() <= 255 else np.uint16)


def read_mask(path: str | Path, vocabulary: Vocabulary | None = None) -> Volume:
    """A label mask: one multi-label file, or a folder of per-organ binary files.

    A folder of NIfTI files is merged through ``vocabulary`` (default TotalSegmentator ``total``):
    each file's name (without suffix) must be a label name, voxels > 0 get that label's id; where
    organs overlap, the higher id wins and the overlap is counted in ``meta["overlap_voxels"]``.
    A folder of DICOM files is not a mask (DICOM SEG is not supported).
    """
    path = Path(path)
    if path.is_dir() and _is_nifti_folder(path):
        return _merge_organ_folder(path, vocabulary or total())
    vol = read_volume(path)
    return Volume(_label_array(vol, path.name), vol.affine, {**vol.meta, "kind": "mask"})


def _merge_organ_folder(folder: Path, vocabulary: Vocabulary) -> Volume:
    files = sorted(p for p in folder.iterdir() if _has_suffix(p, NIFTI_SUFFIXES))
    names = {p: p.name[: -len(".nii.gz")] if p.name.lower().endswith(".nii.gz") else p.stem for p in files}
    unknown = sorted(n for n in names.values() if n not in vocabulary.labels.values())
    if unknown:
        raise VolumeReadError(
            f"{folder.name}: organ files {unknown} are not labels of vocabulary '{vocabulary.name}'")
    ordered = sorted(files, key=lambda p: vocabulary.id_of(names[p]))
    merged, ref, overlap = None, None, 0
    for p in ordered:
        vol = read_nifti(p)
        if ref is None:
            ref = vol
            merged = np.zeros(vol.shape, dtype=np.uint8 if vocabulary.num_classes <= 256 else np.uint16)
        elif not vol.same_grid(ref):
            raise VolumeReadError(f"{folder.name}: {p.name} is not on the same grid as {ordered[0].name}")
        on = vol.array > 0
        overlap += int(np.count_nonzero(on & (merged > 0)))
        merged[on] = vocabulary.id_of(names[p])
    return Volume(merged, ref.affine, {"source": str(folder), "format": "organ-folder",
                                       "vocabulary": vocabulary.name, "overlap_voxels": overlap,
                                       "kind": "mask"})


def write_volume(volume: Volume, path: str | Path, *, overwrite: bool = True, dtype=None) -> Path:
    """Write NIfTI (``.nii``/``.nii.gz``) or NRRD (``.nrrd``) atomically, geometry intact.

    NIfTI gets sform and qform (code 1, scanner) set from the affine and units of mm; NRRD is written
    in RAS space with ``space directions`` from the affine.
    """
    path = Path(path)
    array = volume.array if dtype is None else volume.array.astype(dtype)
    if _has_suffix(path, NIFTI_SUFFIXES):
        import nibabel as nib

        img = nib.Nifti1Image(array, volume.affine)
        img.header.set_xyzt_units("mm")
        img.set_sform(volume.affine, code=1)
        img.set_qform(volume.affine, code=1)
        img.header["scl_slope"], img.header["scl_inter"] = 1.0, 0.0
        with atomic_path(path, overwrite) as tmp:
            nib.save(img, str(tmp))
    elif _has_suffix(path, (".nrrd",)):
        import nrrd

        header = {"space": "right-anterior-superior",
                  "space directions": volume.affine[:3, :3].T.tolist(),
                  "space origin": volume.affine[:3, 3].tolist(), "encoding": "gzip"}
        with atomic_path(path, overwrite) as tmp:
            nrrd.write(str(tmp), array, header)
    else:
        raise ValueError(f"{path.name}: can only write .nii, .nii.gz or .nrrd")
    return path
