"""Read any supported input into a :class:`Volume`, and write volumes back with their geometry.

Supported inputs: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), a DICOM series folder,
and for masks also a TotalSegmentator-style folder of per-organ binary NIfTI files
(``liver.nii.gz``, ``spleen.nii.gz``, ...) merged through a label vocabulary.
"""

from __future__ import annotations

import bz2
import contextlib
import zlib
from pathlib import Path

import numpy as np

from tracect.io.dicom import read_dicom_series
from tracect.io.volume import Volume, VolumeReadError, check_voxels, volume_from
from tracect.labels.vocabulary import Vocabulary, total
from tracect.utils.atomic import atomic_path
from tracect.utils.paths import UnsafePathError, resolve_inside

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
LPS_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])
# Deflate cannot expand data more than about 1032-fold, so a .nii.gz whose header promises more
# than that is corrupt; checking it keeps a 1 KB file from making the reader allocate gigabytes.
MAX_DEFLATE_RATIO = 1032
SCALAR_KINDS = "biuf"  # bool, signed, unsigned, float: complex and RGB voxels are not CT


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    return any(path.name.lower().endswith(s) for s in suffixes)


def _is_nifti_folder(path: Path) -> bool:
    return path.is_dir() and any(_has_suffix(p, NIFTI_SUFFIXES) for p in path.iterdir())


def _why(e: Exception) -> str:
    """A library's exception in one short phrase (corrupt files can make very long messages)."""
    text = str(e)
    return f"{type(e).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


def _three_d(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]  # a trailing singleton 4th dimension (one time point) is dropped
    if len(shape) != 3:
        raise VolumeReadError(f"{name}: expected a 3D volume, header gives shape {tuple(shape)}")
    return shape


def read_nifti(path: str | Path, *, max_voxels: int | None = None) -> Volume:
    """NIfTI-1/2 with scaling applied; a trailing singleton 4th dimension is dropped.

    The header is checked before the data is read: shape within the voxel limit (see
    :func:`tracect.io.volume.voxel_limit`), scalar voxel type, and a data size the file can hold.
    """
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path), mmap=False)  # mmap=False: no open file handle outlives the read
        header = img.header
        shape = tuple(int(s) for s in header.get_data_shape())
        dtype = np.dtype(header.get_data_dtype())
        offset = int(header.get_data_offset())
        slope, inter = header.get_slope_inter()
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as e:  # nibabel raises many types for bad headers and truncated gzip
        raise VolumeReadError(f"{path.name}: unreadable NIfTI ({_why(e)})") from None
    shape = _three_d(path.name, shape)
    if dtype.kind not in SCALAR_KINDS:
        raise VolumeReadError(f"{path.name}: voxel type {dtype} is not a real number")
    n = check_voxels(path.name, shape, max_voxels)
    needed = offset + n * dtype.itemsize
    size = path.stat().st_size
    gz = path.name.lower().endswith(".gz")
    if offset < 0 or needed > (size * MAX_DEFLATE_RATIO if gz else size):
        raise VolumeReadError(f"{path.name}: header promises {needed} bytes (offset {offset} + {shape} x "
                              f"{dtype.itemsize}), more than a {size}-byte {'gzip ' if gz else ''}file can "
                              "hold; truncated file or corrupt header")
    if any(v is not None and not np.isfinite(v) for v in (slope, inter)):
        raise VolumeReadError(f"{path.name}: scaling scl_slope={slope}, scl_inter={inter} is not finite")
    try:
        data = np.asanyarray(img.dataobj)  # applies scl_slope/scl_inter when set
    except Exception as e:
        raise VolumeReadError(f"{path.name}: unreadable NIfTI ({_why(e)})") from None
    data = data.reshape(shape)
    if np.issubdtype(data.dtype, np.floating) and np.all(np.isfinite(data)) and data.size \
            and np.array_equal(data, np.rint(data)) and -32768 <= data.min() and data.max() <= 32767:
        data = data.astype(np.int16)  # scaled integer storage: keep it integer
    return volume_from(path.name, np.ascontiguousarray(data), affine, {"source": str(path), "format": "nifti"})


NRRD_GZIP, NRRD_BZIP2, NRRD_TEXT = ("gzip", "gz"), ("bzip2", "bz2"), ("ascii", "text", "txt")


def _inflate(stream, encoding: str, limit: int) -> tuple[bytes, bool]:
    """At most ``limit + 1`` bytes of the gzip/bzip2 stream that ``stream`` holds, and whether the
    stream ended properly (a cut-off file loses its end marker and checksum first).

    Bounded so that a small file that inflates to gigabytes (a compression bomb) costs no more
    than the volume its header promises; one byte over tells the caller there was more.
    """
    gz = encoding in NRRD_GZIP
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16) if gz else bz2.BZ2Decompressor()
    out = bytearray()
    while len(out) <= limit and not inflater.eof:
        if gz:  # input zlib held back at the output cap comes first
            pending = inflater.unconsumed_tail or stream.read(1 << 20)
        else:
            pending = stream.read(1 << 20) if inflater.needs_input else b""
        produced = inflater.decompress(pending, limit + 1 - len(out))
        if not pending and not produced:
            break  # file ended, nothing left inside the inflater
        out += produced
    return bytes(out), inflater.eof


def _nrrd_payload(name: str, header: dict, stream, n_values: int, dtype: np.dtype) -> bytes:
    """The voxel bytes of an NRRD data section, never more than the header promises."""
    encoding = str(header["encoding"]).lower()
    line_skip = int(header.get("line skip", header.get("lineskip", 0)))
    byte_skip = int(header.get("byte skip", header.get("byteskip", 0)))
    if line_skip < 0 or byte_skip < -1:
        raise VolumeReadError(f"{name}: line skip {line_skip} / byte skip {byte_skip} out of range")
    for _ in range(line_skip):
        stream.readline()
    start = stream.tell()
    available = stream.seek(0, 2) - start
    stream.seek(start)
    n_bytes = n_values * dtype.itemsize
    if encoding == "raw":
        skip = available - n_bytes if byte_skip == -1 else byte_skip
        if skip < 0 or skip + n_bytes > available:
            raise VolumeReadError(f"{name}: header promises {n_bytes} bytes of data after skipping "
                                  f"{max(skip, 0)}, the file holds {available}; truncated?")
        stream.seek(skip, 1)
        return stream.read(n_bytes)
    if encoding in NRRD_GZIP + NRRD_BZIP2:
        if byte_skip < 0:
            raise VolumeReadError(f"{name}: byte skip -1 is only valid with raw encoding")
        data, ended = _inflate(stream, encoding, byte_skip + n_bytes)
        if len(data) != byte_skip + n_bytes:
            more = "more data than" if len(data) > byte_skip + n_bytes else "less data than"
            raise VolumeReadError(f"{name}: {encoding} stream holds {more} the {n_bytes} bytes the header "
                                  "promises")
        if not ended:
            raise VolumeReadError(f"{name}: {encoding} stream is cut off before its end (truncated file)")
        return data[byte_skip:]
    if encoding in NRRD_TEXT:
        if n_values > available:  # each value takes at least one character
            raise VolumeReadError(f"{name}: header promises {n_values} values, the file holds {available} bytes")
        stream.seek(byte_skip, 1)
        tokens = stream.read().split()
        if len(tokens) != n_values:
            raise VolumeReadError(f"{name}: {len(tokens)} text values, the header promises {n_values}")
        return np.array(tokens, dtype=dtype.newbyteorder("=")).astype(dtype).tobytes()
    raise VolumeReadError(f"{name}: NRRD encoding '{encoding}' is not supported (raw, gzip, bzip2, ascii)")


def _nrrd_array(path: Path, header: dict, stream, max_voxels: int | None) -> np.ndarray:
    # the private helper of the pinned pynrrd maps every NRRD type name (and endian) to a numpy dtype;
    # its public read_data would inflate compressed data without bound
    from nrrd.reader import _determine_datatype

    for key in ("type", "sizes", "encoding"):
        if key not in header:
            raise VolumeReadError(f"{path.name}: NRRD header has no '{key}' field")
    sizes = tuple(int(s) for s in np.atleast_1d(header["sizes"]))
    if int(header.get("dimension", len(sizes))) != len(sizes):
        raise VolumeReadError(f"{path.name}: dimension {header.get('dimension')} but {len(sizes)} sizes")
    if len(sizes) != 3:
        raise VolumeReadError(f"{path.name}: expected a 3D volume, header gives sizes {sizes}")
    dtype = np.dtype(_determine_datatype(header))
    if dtype.kind not in SCALAR_KINDS:
        raise VolumeReadError(f"{path.name}: voxel type '{header['type']}' is not a real number")
    n = check_voxels(path.name, sizes, max_voxels)
    with contextlib.ExitStack() as stack:
        data_file = header.get("data file", header.get("datafile"))
        if data_file is not None:
            try:  # a detached header must not steer the read to an arbitrary file
                data_path = resolve_inside(str(data_file), path.parent)
            except UnsafePathError:
                raise VolumeReadError(f"{path.name}: data file '{data_file}' is outside the header's folder "
                                      f"{path.parent}") from None
            stream = stack.enter_context(open(data_path, "rb"))
        payload = _nrrd_payload(path.name, header, stream, n, dtype)
    array = np.frombuffer(payload, dtype=dtype, count=n).reshape(sizes, order="F")  # NRRD: x fastest
    return np.array(array, dtype=dtype.newbyteorder("="), order="C")  # native, writable


def read_nrrd(path: str | Path, *, max_voxels: int | None = None) -> Volume:
    """NRRD with ``space directions``/``space origin`` (RAS or LPS spaces).

    Attached or detached (``.nhdr``) data, raw, gzip, bzip2 or ASCII; a detached data file must lie in
    the header's folder. Sizes are checked against the voxel limit and the data never inflated past
    what they promise.
    """
    import nrrd

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            header = nrrd.read_header(fh)
            data = _nrrd_array(path, header, fh, max_voxels)
        dirs = header.get("space directions")
        if dirs is None:
            dirs = np.diag(np.asarray(header.get("spacings", [1.0, 1.0, 1.0]), dtype=np.float64))
        dirs = np.asarray(dirs, dtype=np.float64)  # row i: world step of array axis i
        origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
        space = str(header.get("space", "right-anterior-superior")).lower()
    except VolumeReadError:
        raise
    except Exception as e:  # pynrrd and numpy raise many types for malformed headers
        raise VolumeReadError(f"{path.name}: unreadable NRRD ({_why(e)})") from None
    if dirs.shape != (3, 3) or origin.shape != (3,):
        raise VolumeReadError(f"{path.name}: space directions {dirs.tolist()} / space origin {origin.tolist()} "
                              "do not describe a 3D grid")
    affine = np.eye(4)
    affine[:3, :3] = dirs.T
    affine[:3, 3] = origin
    if space in ("left-posterior-superior", "lps"):
        affine = LPS_FLIP @ affine
    elif space not in ("right-anterior-superior", "ras"):
        raise VolumeReadError(f"{path.name}: NRRD space '{space}' is not supported (RAS or LPS)")
    return volume_from(path.name, np.ascontiguousarray(data), affine, {"source": str(path), "format": "nrrd"})


def read_volume(path: str | Path, *, max_voxels: int | None = None) -> Volume:
    """Any supported image: NIfTI, NRRD or a DICOM series folder. Values as stored (HU for CT).

    Files are untrusted: a header promising more than ``max_voxels`` voxels (default
    :data:`tracect.io.volume.DEFAULT_MAX_VOXELS`, or ``TRACECT_MAX_VOXELS``) or more data than the file
    holds is refused before allocating; every failure is a :class:`VolumeReadError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise VolumeReadError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_dicom_series(path, max_voxels=max_voxels)
    if _has_suffix(path, NIFTI_SUFFIXES):
        return read_nifti(path, max_voxels=max_voxels)
    if _has_suffix(path, NRRD_SUFFIXES):
        return read_nrrd(path, max_voxels=max_voxels)
    raise VolumeReadError(f"{path.name}: unknown format (expected .nii, .nii.gz, .nrrd, .nhdr or a DICOM folder)")


def _label_array(vol: Volume, name: str) -> np.ndarray:
    data = vol.array
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.rint(data)):
            raise VolumeReadError(f"{name}: mask holds non-integer values; is it an image?")
    if data.size and (data.min() < 0 or data.max() > 65535):
        raise VolumeReadError(f"{name}: mask values outside 0..65535")
    return data.astype(np.uint8 if data.size == 0 or data.max() <= 255 else np.uint16)


def read_mask(path: str | Path, vocabulary: Vocabulary | None = None, *,
              max_voxels: int | None = None, strict: bool = False) -> Volume:
    """A label mask: one multi-label file, or a folder of per-organ binary files.

    A folder of NIfTI files is merged through ``vocabulary`` (default TotalSegmentator ``total``) by the
    policy of :mod:`tracect.labels.organ_files`: a file named after a label gives its voxels that id
    (where organs overlap, the higher id wins; the overlap is counted in ``meta["overlap_voxels"]``);
    a file of another TotalSegmentator task is merged into the label of its coarse group where the
    vocabulary has one, filling only voxels no known organ claims; anything else is ignored. What was
    merged or ignored is in ``meta["organ_files"]`` and ``meta["notes"]``; ``strict`` refuses any name
    outside the vocabulary instead. Organ files may be stored in any axis order; all must share the
    first file's grid (:mod:`tracect.io.pairing`). A folder of DICOM files is not a mask (DICOM SEG is not
    supported). ``max_voxels`` as in :func:`read_volume`.
    """
    path = Path(path)
    if path.is_dir() and _is_nifti_folder(path):
        return _merge_organ_folder(path, vocabulary or total(), max_voxels, strict)
    vol = read_volume(path, max_voxels=max_voxels)
    return Volume(_label_array(vol, path.name), vol.affine, {**vol.meta, "kind": "mask"})


def _merge_organ_folder(folder: Path, vocabulary: Vocabulary, max_voxels: int | None, strict: bool) -> Volume:
    from tracect.io.pairing import compare_grids
    from tracect.labels.organ_files import OrganFilesError, classify_organ_files
    from tracect.labels.vocabulary import coarse_group_of

    files = sorted(p for p in folder.iterdir() if _has_suffix(p, NIFTI_SUFFIXES))
    names = {p: p.name[: -len(".nii.gz")] if p.name.lower().endswith(".nii.gz") else p.stem for p in files}
    try:
        plan = classify_organ_files(sorted(names.values()), vocabulary, strict)
    except OrganFilesError as e:
        raise VolumeReadError(f"{folder.name}: {e}") from None
    # known organs in id order (the higher id wins an overlap); then merged files, which fill only voxels
    # that no earlier file claims: `total` organs before the other tasks' (finer sub-structures, vessels
    # that run into organs), and last the body envelope (body, skin, fat), which covers everything
    label_id = {**plan.known, **{n: vocabulary.id_of(target) for n, target in plan.merged.items()}}

    def tier(p):
        if coarse_group_of(names[p]) == "body":
            return 3
        return 0 if names[p] in plan.known else 1 if names[p] in total().labels.values() else 2

    order = sorted((p for p in files if names[p] in label_id), key=lambda p: (tier(p), label_id[names[p]]))
    if not order:
        raise VolumeReadError(f"{folder.name}: no organ file names a label of vocabulary '{vocabulary.name}' "
                              f"({len(files)} file(s) ignored)")
    merged, ref, overlap = None, None, 0
    for p in order:
        vol = read_nifti(p, max_voxels=max_voxels)
        if ref is None:
            ref = vol
            merged = np.zeros(vol.shape, dtype=np.uint8 if vocabulary.num_classes <= 256 else np.uint16)
        else:
            comparison = compare_grids(vol, ref)
            if not comparison.same():
                raise VolumeReadError(f"{folder.name}: {p.name} is not on the grid of "
                                      f"{Path(ref.meta['source']).name}: {comparison.describe(p.name, 'it')}")
            if vol.orientation != ref.orientation:  # the same grid stored in another axis order
                vol = vol.like(ref)
        on = vol.array > 0
        if tier(p) == 0:
            overlap += int(np.count_nonzero(on & (merged > 0)))
            merged[on] = label_id[names[p]]
        else:
            merged[on & (merged == 0)] = label_id[names[p]]
    return Volume(merged, ref.affine, {"source": str(folder), "format": "organ-folder",
                                       "vocabulary": vocabulary.name, "overlap_voxels": overlap,
                                       "organ_files": plan.to_json(), "notes": plan.notes(), "kind": "mask"})


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
