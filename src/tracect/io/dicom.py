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
from collections import defaultdict
from pathlib import Path

import numpy as np

from tracect.io.volume import Volume, VolumeReadError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class DicomError(VolumeReadError):
    """A DICOM folder that cannot be read as one CT volume."""


def _list_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.upper() != "DICOMDIR"
                  and not p.name.startswith("."))


def _read_headers(files: list[Path]):
    import pydicom
    from pydicom.errors import InvalidDicomError

    headers = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except InvalidDicomError:
            continue  # not DICOM at all (a README, a thumbnail): ignore, as viewers do
        except Exception as e:  # truncated or corrupt header
            raise DicomError(f"{f.name}: unreadable DICOM ({type(e).__name__}: {e})") from None
        if "ImagePositionPatient" not in ds and "PixelData" not in ds:
            continue  # structured reports, presentation states, ...
        headers.append((f, ds))
    return headers


def describe_series(folder: str | Path) -> list[dict]:
    """One entry per series in ``folder``: UID, number, description, modality and file count."""
    groups: dict[str, list] = defaultdict(list)
    for f, ds in _read_headers(_list_files(Path(folder))):
        groups[str(ds.get("SeriesInstanceUID", "?"))].append(ds)
    return [{"uid": uid, "number": dss[0].get("SeriesNumber"),
             "description": str(dss[0].get("SeriesDescription", "")),
             "modality": str(dss[0].get("Modality", "")), "files": len(dss)}
            for uid, dss in sorted(groups.items())]


def read_dicom_series(folder: str | Path) -> Volume:
    """Read one DICOM series folder into a HU volume.

    Returns a :class:`Volume` whose array is ``(columns, rows, slices)`` (so the affine's first axis
    follows the DICOM row direction), float32 HU, or int16 when slope/intercept keep values integral.
    """
    import pydicom

    folder = Path(folder)
    if not folder.is_dir():
        raise DicomError(f"{folder} is not a folder")
    headers = _read_headers(_list_files(folder))
    if not headers:
        raise DicomError(f"{folder}: no DICOM image files")
    by_series: dict[str, list] = defaultdict(list)
    for f, ds in headers:
        by_series[str(ds.get("SeriesInstanceUID", "?"))].append((f, ds))
    if len(by_series) > 1:
        listing = "; ".join(f"{s['uid']} (#{s['number']} '{s['description']}', {s['files']} files)"
                            for s in describe_series(folder))
        raise DicomError(f"{folder} holds {len(by_series)} series, choose one folder per series: {listing}")
    items = next(iter(by_series.values()))

    _, first = items[0]
    for key in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows", "Columns"):
        if key not in first:
            raise DicomError(f"{folder}: {key} missing; cannot place the slices in space")
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise DicomError(f"{folder}: multi-frame (enhanced) DICOM is not supported; convert to one file per slice")
    iop = np.array(first.ImageOrientationPatient, dtype=np.float64)
    row_cos, col_cos = iop[:3], iop[3:]
    normal = np.cross(row_cos, col_cos)
    for f, ds in items:
        if (not np.allclose(np.array(ds.ImageOrientationPatient, float), iop, atol=1e-4)
                or (ds.Rows, ds.Columns) != (first.Rows, first.Columns)
                or not np.allclose(np.array(ds.PixelSpacing, float), np.array(first.PixelSpacing, float))):
            raise DicomError(f"{folder}: {f.name} differs in orientation, size or pixel spacing from the series")

    positions = np.array([np.array(ds.ImagePositionPatient, dtype=np.float64) for _, ds in items])
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
        thickness = float(first.get("SpacingBetweenSlices", first.get("SliceThickness", 1.0)) or 1.0)
        step = normal * thickness

    dr, dc = (float(v) for v in first.PixelSpacing)  # (between rows, between columns)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_cos * dc
    affine_lps[:3, 1] = col_cos * dr
    affine_lps[:3, 2] = step
    affine_lps[:3, 3] = positions[0]

    slices, integral = [], True
    for f, _ in items:
        try:
            ds = pydicom.dcmread(f)
            pixels = ds.pixel_array
        except Exception as e:
            raise DicomError(f"{f.name}: pixel data cannot be decoded ({type(e).__name__}: {e})") from None
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        integral &= slope.is_integer() and intercept.is_integer()
        slices.append(pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept))
    hu = np.stack(slices, axis=-1).transpose(1, 0, 2)  # (rows, cols, n) -> (cols, rows, n)
    if integral and hu.min() >= -32768 and hu.max() <= 32767:
        hu = hu.astype(np.int16)
    meta = {"source": str(folder), "format": "dicom",
            "series_uid": str(first.get("SeriesInstanceUID", "")),
            "transfer_syntax": str(first.file_meta.TransferSyntaxUID) if hasattr(first, "file_meta") else "",
            "slice_thickness_header": float(first.get("SliceThickness", 0) or 0)}
    return Volume(np.ascontiguousarray(hu), LPS_TO_RAS @ affine_lps, meta)


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
