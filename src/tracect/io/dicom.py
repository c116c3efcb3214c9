"""DICOM CT series: read a folder into a HU volume with its geometry, and write one back.

Reading follows what scanners actually send, not what their headers promise:
- slices are ordered by their position along the slice normal (``ImagePositionPatient`` projected on
  ``row x column`` cosines), never by file name or ``InstanceNumber``;
- the slice spacing comes from those positions (``SliceThickness`` is often wrong or overlapping);
- ``RescaleSlope``/``RescaleIntercept`` are applied per slice, so values are Hounsfield units;
- compressed transfer syntaxes (JPEG 2000, JPEG lossless, RLE) are decoded by pydicom's plugins;
- a folder holding several series is refused with a list of them.

DICOM's patient coordinates are LPS; tracect's affines are RAS (see :mod:`tracect.io.volume`), so
the first two world axes flip sign on the way in and out.
"""

from __future__ import annotations

import datetime as _dt
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracect.io.volume import Volume, VolumeReadError, check_voxels, volume_from

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
BITS_ALLOCATED = (8, 16, 32)  # CT stores 16; 8 and 32 are seen in converted data


class DicomError(VolumeReadError):
    """A DICOM folder that cannot be read as one CT volume."""


def _why(e: Exception) -> str:
    """A library's exception in one short phrase (corrupt files can make very long messages)."""
    text = str(e)
    return f"{type(e).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


def _list_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.upper() != "DICOMDIR"
                  and not p.name.startswith("."))


def _dcmread(path: Path, header_only: bool):
    """pydicom on the file's bytes in memory: a corrupt length field then reads what the file holds
    instead of allocating the gigabytes it claims."""
    import pydicom

    return pydicom.dcmread(io.BytesIO(path.read_bytes()), stop_before_pixels=header_only)


def _read_headers(files: list[Path]):
    from pydicom.errors import InvalidDicomError

    headers = []
    for f in files:
        try:
            ds = _dcmread(f, header_only=True)
            if "ImagePositionPatient" not in ds and "PixelData" not in ds:
                continue  # structured reports, presentation states, ...
        except InvalidDicomError:
            continue  # not DICOM at all (a README, a thumbnail): ignore, as viewers do
        except Exception as e:  # truncated or corrupt header
            raise DicomError(f"{f.name}: unreadable DICOM ({_why(e)})") from None
        headers.append((f, ds))
    return headers


def _text(ds, key: str, default: str = "") -> str:
    try:
        return str(ds.get(key, default))
    except Exception:  # a value pydicom cannot convert: show nothing rather than fail the listing
        return default


def describe_series(folder: str | Path) -> list[dict]:
    """One entry per series in ``folder``: UID, number, description, modality and file count."""
    groups: dict[str, list] = defaultdict(list)
    for f, ds in _read_headers(_list_files(Path(folder))):
        groups[_text(ds, "SeriesInstanceUID", "?")].append(ds)
    return [{"uid": uid, "number": _text(dss[0], "SeriesNumber", "?"),
             "description": _text(dss[0], "SeriesDescription"),
             "modality": _text(dss[0], "Modality"), "files": len(dss)}
            for uid, dss in sorted(groups.items())]


@dataclass(frozen=True)
class _Slice:
    """What one file's header says about where its pixels go."""

    path: Path
    iop: np.ndarray  # (6,) row then column direction cosines, LPS
    position: np.ndarray  # (3,) ImagePositionPatient, LPS mm
    spacing: np.ndarray  # (2,) PixelSpacing: between rows, between columns, mm
    rows: int
    columns: int


def _numbers(f: Path, ds, key: str, count: int) -> np.ndarray:
    if key not in ds:
        raise DicomError(f"{f.name}: {key} missing; cannot place the slices in space")
    values = np.array([float(v) for v in np.atleast_1d(ds[key].value)], dtype=np.float64)
    if values.shape != (count,) or not np.all(np.isfinite(values)):
        raise DicomError(f"{f.name}: {key} {ds[key].value!r} is not {count} finite numbers")
    return values


def _slice(f: Path, ds) -> _Slice:
    try:
        iop = _numbers(f, ds, "ImageOrientationPatient", 6)
        position = _numbers(f, ds, "ImagePositionPatient", 3)
        spacing = _numbers(f, ds, "PixelSpacing", 2)
        for key in ("Rows", "Columns"):
            if key not in ds:
                raise DicomError(f"{f.name}: {key} missing")
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except DicomError:
        raise
    except Exception as e:  # values pydicom cannot convert (text in a number, unknown VR, ...)
        raise DicomError(f"{f.name}: unusable header ({_why(e)})") from None
    if frames > 1:
        raise DicomError(f"{f.name}: multi-frame (enhanced) DICOM is not supported; convert to one file per slice")
    if np.any(spacing <= 0):
        raise DicomError(f"{f.name}: PixelSpacing {spacing.tolist()} must be positive")
    # unit, orthogonal cosines give a unit normal; rounded values in real headers stay well inside 5%
    if abs(np.linalg.norm(np.cross(iop[:3], iop[3:])) - 1) > 0.05:
        raise DicomError(f"{f.name}: ImageOrientationPatient {iop.tolist()} is not two orthogonal unit vectors")
    return _Slice(f, iop, position, spacing, rows, columns)


def _pixels(f: Path, rows: int, columns: int) -> tuple[np.ndarray, float, float]:
    """One slice's stored values ``(rows, columns)`` and its rescale slope and intercept."""
    try:
        ds = _dcmread(f, header_only=False)
        if "PixelData" not in ds:
            raise DicomError(f"{f.name}: no pixel data")
        samples, bits = int(ds.get("SamplesPerPixel", 1)), int(ds.get("BitsAllocated", 0))
        if samples != 1:
            raise DicomError(f"{f.name}: SamplesPerPixel {samples}; CT slices have one sample per pixel")
        if bits not in BITS_ALLOCATED:
            raise DicomError(f"{f.name}: BitsAllocated {bits} is not supported {BITS_ALLOCATED}")
        expected = rows * columns * bits // 8
        if not ds.file_meta.TransferSyntaxUID.is_compressed and len(ds.PixelData) < expected:
            raise DicomError(f"{f.name}: PixelData holds {len(ds.PixelData)} bytes, {rows} x {columns} pixels of "
                             f"{bits} bits need {expected}")
        pixels = ds.pixel_array
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    except DicomError:
        raise
    except Exception as e:
        raise DicomError(f"{f.name}: pixel data cannot be decoded ({_why(e)})") from None
    if pixels.shape != (rows, columns):
        raise DicomError(f"{f.name}: decoded pixels have shape {pixels.shape}, the header says {(rows, columns)}")
    if not (np.isfinite(slope) and np.isfinite(intercept)):
        raise DicomError(f"{f.name}: RescaleSlope {slope} / RescaleIntercept {intercept} not finite")
    return pixels, slope, intercept


def read_dicom_series(folder: str | Path, *, max_voxels: int | None = None) -> Volume:
    """Read one DICOM series folder into a HU volume.

    Returns a :class:`Volume` whose array is ``(columns, rows, slices)`` (so the affine's first axis
    follows the DICOM row direction), float32 HU, or int16 when slope/intercept keep values integral.
    Every header is checked before pixels are decoded (finite geometry, sizes within ``max_voxels``,
    pixel data as long as ``Rows x Columns`` promise); failures are :class:`DicomError` naming the file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomError(f"{folder} is not a folder")
    headers = _read_headers(_list_files(folder))
    if not headers:
        raise DicomError(f"{folder}: no DICOM image files")
    by_series: dict[str, list] = defaultdict(list)
    for f, ds in headers:
        by_series[_text(ds, "SeriesInstanceUID", "?")].append((f, ds))
    if len(by_series) > 1:
        listing = "; ".join(f"{s['uid']} (#{s['number']} '{s['description']}', {s['files']} files)"
                            for s in describe_series(folder))
        raise DicomError(f"{folder} holds {len(by_series)} series, choose one folder per series: {listing}")
    first_ds = next(iter(by_series.values()))[0][1]
    items = [_slice(f, ds) for f, ds in next(iter(by_series.values()))]

    first = items[0]
    check_voxels(folder.name, (first.columns, first.rows, len(items)), max_voxels)
    row_cos, col_cos = first.iop[:3], first.iop[3:]
    normal = np.cross(row_cos, col_cos)
    for s in items:
        if (not np.allclose(s.iop, first.iop, atol=1e-4) or (s.rows, s.columns) != (first.rows, first.columns)
                or not np.allclose(s.spacing, first.spacing)):
            raise DicomError(f"{folder}: {s.path.name} differs in orientation, size or pixel spacing from the series")

    positions = np.array([s.position for s in items])
    order = np.argsort(positions @ normal, kind="stable")
    items = [items[i] for i in order]
    positions = positions[order]
    along = positions @ normal
    if len(items) > 1:
        steps = np.diff(along)
        if np.any(steps < 1e-3):
            raise DicomError(f"{folder}: two slices share a position ({len(items)} files); duplicate or mixed acquisitions")
        if steps.max() - steps.min() > max(0.01 * np.median(steps), 0.02):
            raise DicomError(f"{folder}: irregular slice spacing ({steps.min():.3f}..{steps.max():.3f} mm); "
                             "missing slices?")
        step = (positions[-1] - positions[0]) / (len(items) - 1)  # handles gantry tilt exactly
    else:
        try:
            thickness = float(first_ds.get("SpacingBetweenSlices", first_ds.get("SliceThickness", 1.0)) or 1.0)
        except Exception:
            thickness = 1.0
        # one slice: its thickness only labels the grid, so an unusable value falls back to 1 mm
        step = normal * (thickness if np.isfinite(thickness) and thickness > 0 else 1.0)

    dr, dc = first.spacing  # (between rows, between columns)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_cos * dc
    affine_lps[:3, 1] = col_cos * dr
    affine_lps[:3, 2] = step
    affine_lps[:3, 3] = positions[0]

    slices, integral = [], True
    for s in items:
        pixels, slope, intercept = _pixels(s.path, first.rows, first.columns)
        integral &= slope.is_integer() and intercept.is_integer()
        with np.errstate(over="ignore", invalid="ignore"):
            hu = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        if not np.all(np.isfinite(hu)):
            raise DicomError(f"{s.path.name}: RescaleSlope {slope} / RescaleIntercept {intercept} give values "
                             "outside float32")
        slices.append(hu)
    hu = np.stack(slices, axis=-1).transpose(1, 0, 2)  # (rows, cols, n) -> (cols, rows, n)
    if integral and hu.min() >= -32768 and hu.max() <= 32767:
        hu = hu.astype(np.int16)
    try:
        thickness_header = float(first_ds.get("SliceThickness", 0) or 0)
    except Exception:
        thickness_header = 0.0
    meta = {"source": str(folder), "format": "dicom",
            "series_uid": _text(first_ds, "SeriesInstanceUID"),
            "transfer_syntax": str(first_ds.file_meta.TransferSyntaxUID) if hasattr(first_ds, "file_meta") else "",
            "slice_thickness_header": thickness_header}
    return volume_from(folder.name, np.ascontiguousarray(hu), LPS_TO_RAS @ affine_lps, meta)


def write_dicom_series(volume: Volume, folder: str | Path, *, series_description: str = "tracect",
                       synthetic: bool = True, transfer_syntax: str | None = None,
                       intercept: float | None = None, patient_id: str = "TRACECT-SYNTHETIC",
                       series_uid: str | None = None) -> list[Path]:
    """Write a HU volume as an axial CT series, one file per slice (``IM00001.dcm`` ...).

    Pixels are stored as unsigned 16-bit ``HU - intercept`` with ``RescaleIntercept=intercept``, as
    most scanners do; the default intercept is -1024 or the volume's minimum HU if lower, so no value
    is clipped. ``transfer_syntax`` may be a compressed UID that pydicom can encode (JPEG 2000
    lossless, RLE lossless). ``synthetic`` marks the series as generated in every header that viewers
    and PACS show (ImageType DERIVED, SeriesDescription, ImageComments, PatientName).
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lps = volume.reorient(("L", "P", "S"))  # axes: columns toward L, rows toward P, slices toward S
    aff = LPS_TO_RAS @ lps.affine  # RAS -> LPS world
    sx, sy, sz = lps.spacing
    row_cos, col_cos = aff[:3, 0] / sx, aff[:3, 1] / sy
    hu = np.rint(np.asarray(lps.array, dtype=np.float64))
    if intercept is None:
        intercept = float(min(-1024.0, hu.min(initial=0.0)))
    if hu.max(initial=0.0) - intercept > 65535:
        raise ValueError(f"HU range {hu.min()}..{hu.max()} does not fit 16-bit storage")
    stored = np.clip(hu - intercept, 0, 65535).astype(np.uint16)
    study_uid, series_uid = generate_uid(), series_uid or generate_uid()
    frame_uid = generate_uid()
    now = _dt.datetime.now()
    paths = []
    for k in range(lps.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality, ds.Manufacturer = "CT", "tracect"
        ds.PatientName = "SYNTHETIC^TRACECT" if synthetic else "ANONYMOUS"
        ds.PatientID = patient_id
        ds.StudyDate = ds.SeriesDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = now.strftime("%H%M%S")
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.SeriesDescription = f"SYNTHETIC {series_description}" if synthetic else series_description
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"] if synthetic else ["ORIGINAL", "PRIMARY", "AXIAL"]
        if synthetic:
            ds.ImageComments = "Synthetic image generated by tracect; not a patient acquisition"
            ds.BurnedInAnnotation = "NO"
        ds.ImageOrientationPatient = [float(f"{v:.8f}") for v in (*row_cos, *col_cos)]
        ds.ImagePositionPatient = [float(f"{v:.6f}") for v in (aff[:3, :3] @ [0, 0, k] + aff[:3, 3])]
        ds.PixelSpacing = [float(f"{sy:.6f}"), float(f"{sx:.6f}")]
        ds.SliceThickness = float(f"{sz:.6f}")
        ds.SliceLocation = ds.ImagePositionPatient[2]
        ds.Rows, ds.Columns = lps.shape[1], lps.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = intercept, 1.0, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # (rows, cols)
        if transfer_syntax is not None and transfer_syntax != ExplicitVRLittleEndian:
            ds.compress(transfer_syntax)
        path = folder / f"IM{k + 1:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
