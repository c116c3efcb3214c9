"""Untrusted inputs: corrupted NIfTI, NRRD, DICOM, report tables and JSON files end in a clean error.

A *clean error* is one of the reader's own exception types (all :class:`ValueError` subclasses,
listed in each test as ``allowed``) whose message names the file. Anything else fails the case:
another exception type, no answer within :data:`LIMIT_S` seconds, or a Python/numpy allocation above
:data:`PEAK_BYTES` while reading files of a few kilobytes (a header that makes a reader allocate what
it promises instead of what the file holds). A corrupted file that still reads is fine as long as the
result is a proper volume or table.

Cases are drawn by hypothesis from small valid files, derandomized so every run sees the same ones;
``TRACECT_FUZZ_SCALE=10`` runs ten times as many.
"""

from __future__ import annotations

import bz2
import contextlib
import functools
import gzip
import io
import json
import os
import signal
import struct
import tempfile
import tracemalloc
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from tracect.data.layout import DatasetError, load_dataset
from tracect.data.reports import ReportsError, read_reports
from tracect.io import Volume, VolumeReadError, read_mask, read_volume, write_dicom_series

LIMIT_S = 5.0
PEAK_BYTES = 64 << 20
SCALE = float(os.environ.get("TRACECT_FUZZ_SCALE", "1"))


def fuzz(n: int):
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


class Hang(BaseException):
    """A reader that did not answer within the time limit (a BaseException, so that a reader's own
    ``except Exception`` cannot turn it into a clean error)."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    def on_alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def outcome(read, allowed: tuple[type[Exception], ...], names: tuple[str, ...]):
    """Run ``read()``: its result, or the clean error it raised. Anything else fails the case.

    ``names``: the error message must contain one of them (the file, or the folder a file is in).
    """
    error, result = None, None
    tracemalloc.start()
    try:
        with warnings.catch_warnings(), _time_limit(LIMIT_S):
            warnings.simplefilter("ignore")
            try:
                result = read()
            except allowed as e:
                error = e
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"peak allocation {peak / 2**20:.0f} MiB while reading a tiny file"
    if error is not None:
        message = str(error)
        assert any(n in message for n in names), f"{type(error).__name__} does not name {names}: {message!r}"
        assert "MemoryError" not in message, message
    return result, error


def check_volume(result) -> None:
    if result is not None:
        assert isinstance(result, Volume) and result.array.size > 0
        assert np.all(np.isfinite(result.affine))


# ---------------------------------------------------------------- NIfTI

@functools.cache
def nifti_bytes(version: int = 1) -> bytes:
    """An uncompressed 6x5x4 int16 NIfTI-1 or -2 file with sform and qform set."""
    arr = np.random.default_rng(0).integers(0, 20, (6, 5, 4)).astype(np.int16)
    aff = np.diag([0.8, 0.9, 2.5, 1.0])
    aff[:3, 3] = [-3.0, 4.0, 10.0]
    klass = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    img = klass(arr, aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    return img.to_bytes()


INTS = [0, -1, 1, 2, 3, 4, 5, 7, 8, 16, 64, 255, 256, 348, 540, 32767, -32768, 2**31 - 1, -2**31, 2**62]
FLOATS = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-30, 1e30, 1e300, -1.0, 1.0, 352.0, 544.0, 1e9]
NIFTI_FIELDS = ["sizeof_hdr", "dim", "pixdim", "datatype", "bitpix", "vox_offset", "scl_slope", "scl_inter",
                "qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "srow_x",
                "srow_y", "srow_z", "magic", "dim_info", "intent_code", "xyzt_units", "slice_code"]


@st.composite
def header_edit(draw, dtype: np.dtype):
    """One (field, index, value) change to a NIfTI header: a nasty value of the field's type."""
    field = draw(st.sampled_from(NIFTI_FIELDS))
    base, shape = dtype[field].base, dtype[field].shape
    index = draw(st.integers(0, shape[0] - 1)) if shape else None
    if base.kind in "iu":
        value = draw(st.sampled_from(INTS))
    elif base.kind == "f":
        value = draw(st.sampled_from(FLOATS))
    else:
        value = draw(st.sampled_from([b"n+1\0", b"ni1\0", b"n+2\0", b"xxxx", b"\0\0\0\0",
                                      b"n+2\0\r\n\x1a\n"]))
    return field, index, value


def edit_header(raw: bytes, version: int, edits) -> bytes:
    klass = nib.Nifti1Header if version == 1 else nib.Nifti2Header
    dtype = klass.template_dtype
    buf = bytearray(raw)
    hdr = np.ndarray((), dtype=dtype, buffer=buf)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for field, index, value in edits:
            base = dtype[field].base
            if base.kind in "iu":
                value = np.array(value, dtype=np.int64).astype(base)  # wraps like a corrupt disk would
            elif base.kind == "f":
                value = np.array(value).astype(base)
            if index is None:
                hdr[field] = value
            else:
                hdr[field][index] = value
    return bytes(buf)


def write_nifti(folder: Path, data: bytes, gz: bool, name: str = "img") -> Path:
    path = folder / (f"{name}.nii.gz" if gz else f"{name}.nii")
    path.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)
    return path


NIFTI_ALLOWED = (VolumeReadError,)


@fuzz(120)
@given(version=st.sampled_from([1, 2]), gz=st.booleans(), mask=st.booleans(), data=st.data())
def test_nifti_header_fields(tmp_path, version, gz, mask, data):
    dtype = (nib.Nifti1Header if version == 1 else nib.Nifti2Header).template_dtype
    edits = data.draw(st.lists(header_edit(dtype), min_size=1, max_size=3))
    path = write_nifti(tmp_path, edit_header(nifti_bytes(version), version, edits), gz)
    result, _ = outcome(lambda: (read_mask if mask else read_volume)(path), NIFTI_ALLOWED, (path.name,))
    check_volume(result)


@fuzz(50)
@given(gz=st.booleans(), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                         min_size=1, max_size=8))
def test_nifti_byte_flips(tmp_path, gz, flips):
    raw = bytearray(nifti_bytes(1))
    for offset, value in flips:
        raw[offset % len(raw)] = value
    path = write_nifti(tmp_path, bytes(raw), gz)
    result, _ = outcome(lambda: read_volume(path), NIFTI_ALLOWED, (path.name,))
    check_volume(result)


@fuzz(50)
@given(version=st.sampled_from([1, 2]), gz=st.booleans(), cut=st.floats(0, 1, exclude_max=True))
def test_nifti_truncated(tmp_path, version, gz, cut):
    """Cut the file (or its gzip stream) anywhere: the header, the data, the gzip trailer."""
    raw = nifti_bytes(version)
    stored = gzip.compress(raw, compresslevel=1) if gz else raw
    path = tmp_path / ("img.nii.gz" if gz else "img.nii")
    path.write_bytes(stored[: int(cut * len(stored))])
    _, error = outcome(lambda: read_volume(path), NIFTI_ALLOWED, (path.name,))
    assert error is not None


@fuzz(20)
@given(tail=st.binary(min_size=1, max_size=64))
def test_nifti_gzip_with_trailing_garbage(tmp_path, tail):
    path = tmp_path / "img.nii.gz"
    path.write_bytes(gzip.compress(nifti_bytes(1)) + tail)
    result, _ = outcome(lambda: read_volume(path), NIFTI_ALLOWED, (path.name,))
    check_volume(result)


@pytest.mark.parametrize("version,dims", [(1, (32767, 32767, 32767)), (2, (2**31, 2**31, 1)),
                                          (2, (2**40, 1, 1)), (1, (32767, 32767, 1))])
@pytest.mark.parametrize("gz", [False, True], ids=["nii", "nii.gz"])
def test_nifti_huge_dims_are_refused_before_allocating(tmp_path, version, dims, gz):
    dtype = (nib.Nifti1Header if version == 1 else nib.Nifti2Header).template_dtype
    edits = [("dim", i + 1, d) for i, d in enumerate(dims)]
    path = write_nifti(tmp_path, edit_header(nifti_bytes(version), version, edits), gz)
    assert dtype["dim"].base.itemsize in (2, 8)
    _, error = outcome(lambda: read_volume(path), NIFTI_ALLOWED, (path.name,))
    assert error is not None and ("voxels" in str(error) or "bytes" in str(error)), error


def test_voxel_limit_is_configurable(tmp_path, monkeypatch):
    path = write_nifti(tmp_path, nifti_bytes(1), gz=True)
    assert read_volume(path).shape == (6, 5, 4)
    with pytest.raises(VolumeReadError, match=r"120 voxels.*limit of 100"):
        read_volume(path, max_voxels=100)
    monkeypatch.setenv("TRACECT_MAX_VOXELS", "100")
    with pytest.raises(VolumeReadError, match="TRACECT_MAX_VOXELS"):
        read_volume(path)


def test_nifti_gzip_bomb_is_refused(tmp_path):
    """A tiny .nii.gz whose header promises far more than deflate can expand it to."""
    raw = edit_header(nifti_bytes(1), 1, [("dim", 1, 4096), ("dim", 2, 4096), ("dim", 3, 16)])
    path = tmp_path / "bomb.nii.gz"
    path.write_bytes(gzip.compress(raw))
    _, error = outcome(lambda: read_volume(path, max_voxels=2**40), NIFTI_ALLOWED, (path.name,))
    assert error is not None and "bytes" in str(error)


# ---------------------------------------------------------------- NRRD

@functools.cache
def nrrd_bytes(encoding: str) -> bytes:
    import nrrd

    arr = np.random.default_rng(1).integers(-1000, 1000, (5, 4, 3)).astype(np.int16)
    header = {"space": "left-posterior-superior", "space directions": np.diag([0.7, 0.8, 2.0]).tolist(),
              "space origin": [1.0, 2.0, 3.0], "encoding": encoding}
    with tempfile.TemporaryDirectory() as d:
        nrrd.write(str(Path(d) / "v.nrrd"), arr, header)
        return (Path(d) / "v.nrrd").read_bytes()


NRRD_VALUES = {
    "type": ["complex", "block", "float128", "int128", "", "uchar", "double", "unsigned long long", "int8"],
    "dimension": ["0", "1", "2", "4", "-1", "99999999999", "x"],
    "sizes": ["0 4 3", "-1 4 3", "5 4", "5 4 3 2", "99999 99999 99999", "2147483648 2 2", "a b c", "1e3 2 2",
              "5 4 4", "5 4 2", "1 1 1", ""],
    "encoding": ["hex", "bzip2", "gzip", "raw", "ascii", "zstd", ""],
    "endian": ["big", "middle", ""],
    "space": ["scanner-xyz", "left-anterior-superior", "3D-right-handed", "RAS", ""],
    "space directions": ["(nan,0,0) (0,1,0) (0,0,1)", "none (0,1,0) (0,0,1)", "(0,0,0) (0,0,0) (0,0,0)",
                         "(1,0) (0,1)", "(inf,0,0) (0,1,0) (0,0,1)", "(1e308,0,0) (0,1e308,0) (0,0,1e308)",
                         "(1,0,0) (1,0,0) (0,0,1)", "garbage"],
    "space origin": ["(nan,nan,nan)", "(inf,0,0)", "(1,2)", "x"],
    "byte skip": ["-1", "-5", "99999999", "1", "x"],
    "line skip": ["-1", "99999", "1", "x"],
    "data file": ["outside.raw", "missing.raw", "LIST", "sub/%03d.raw 1 3 1", ""],
    "kinds": ["domain domain domain domain", "complex domain domain", "x"],
    "spacings": ["nan 1 1", "0 0 0", "1 1"],
}


@st.composite
def nrrd_edit(draw):
    kind = draw(st.sampled_from(["set", "set", "set", "drop", "insert"]))
    if kind == "set":
        field = draw(st.sampled_from(sorted(NRRD_VALUES)))
        return kind, field, draw(st.sampled_from(NRRD_VALUES[field]))
    if kind == "drop":
        return kind, draw(st.sampled_from(["type", "dimension", "sizes", "encoding", "space", "space directions",
                                           "space origin", "endian"])), ""
    return kind, "", draw(st.text(st.characters(codec="latin-1", exclude_characters="\n"), max_size=30))


def edit_nrrd(raw: bytes, edits) -> bytes:
    head, sep, data = raw.partition(b"\n\n")
    lines = head.decode("latin-1").split("\n")
    for kind, field, value in edits:
        keep = [line for line in lines if not line.startswith(field + ":")] if field else lines
        if kind == "set":
            lines = keep + [f"{field}: {value}"]
        elif kind == "drop":
            lines = keep
        else:
            lines = lines + [value]
    return "\n".join(lines).encode("latin-1") + sep + data


NRRD_ALLOWED = (VolumeReadError,)


@fuzz(80)
@given(encoding=st.sampled_from(["raw", "gzip", "ascii"]), edits=st.lists(nrrd_edit(), min_size=1, max_size=3))
def test_nrrd_header_fields(tmp_path, encoding, edits):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    (folder / "outside.raw").write_bytes(b"\0" * 120)  # a detached data file that exists
    path = folder / "v.nrrd"
    path.write_bytes(edit_nrrd(nrrd_bytes(encoding), edits))
    result, _ = outcome(lambda: read_volume(path), NRRD_ALLOWED, (path.name,))
    check_volume(result)


@fuzz(30)
@given(encoding=st.sampled_from(["raw", "gzip", "ascii"]), cut=st.floats(0, 1, exclude_max=True))
def test_nrrd_truncated(tmp_path, encoding, cut):
    raw = nrrd_bytes(encoding)
    path = tmp_path / "v.nrrd"
    path.write_bytes(raw[: int(cut * len(raw))])
    _, error = outcome(lambda: read_volume(path), NRRD_ALLOWED, (path.name,))
    assert error is not None


@pytest.mark.parametrize("codec", ["gzip", "bzip2"])
def test_nrrd_compression_bomb_is_not_inflated(tmp_path, codec):
    """Data that inflates far beyond what ``sizes`` promises is refused after the promised bytes."""
    head = nrrd_bytes("raw").partition(b"\n\n")[0].replace(b"encoding: raw", f"encoding: {codec}".encode())
    payload = (gzip.compress if codec == "gzip" else bz2.compress)(b"\0" * (100 << 20))
    path = tmp_path / "bomb.nrrd"
    path.write_bytes(head + b"\n\n" + payload)
    _, error = outcome(lambda: read_volume(path), NRRD_ALLOWED, (path.name,))
    assert error is not None and "more data" in str(error)


# ---------------------------------------------------------------- DICOM

@functools.cache
def dicom_series() -> tuple[bytes, ...]:
    arr = np.random.default_rng(2).integers(-1000, 1000, (8, 6, 3)).astype(np.int16)
    aff = np.diag([0.7, 0.8, 2.5, 1.0])
    with tempfile.TemporaryDirectory() as d:
        return tuple(p.read_bytes() for p in write_dicom_series(Volume(arr, aff), Path(d) / "s"))


def _us(v):
    return struct.pack("<H", v)


DICOM_EDITS = [
    *(("Rows", "US", _us(v)) for v in (0, 1, 65535)),
    *(("Columns", "US", _us(v)) for v in (0, 1, 65535)),
    *(("BitsAllocated", "US", _us(v)) for v in (0, 1, 7, 12, 13, 24, 32, 64, 65535)),
    *(("BitsStored", "US", _us(v)) for v in (0, 17, 99)),
    ("HighBit", "US", _us(99)), ("PixelRepresentation", "US", _us(2)),
    *(("SamplesPerPixel", "US", _us(v)) for v in (0, 3, 65535)),
    *(("PhotometricInterpretation", "CS", v) for v in (b"RGB ", b"YBR_FULL", b"XYZ ", b"PALETTE COLOR ")),
    ("PlanarConfiguration", "US", _us(1)),
    *(("PixelData", "OW", v) for v in (None, b"", b"\0" * 4, b"\0" * 95, b"\xff" * 200)),
    *(("RescaleSlope", "DS", v) for v in (b"nan ", b"inf ", b"abc ", b"0 ", b"1e308 ", b"-1e308", None)),
    *(("RescaleIntercept", "DS", v) for v in (b"nan ", b"abc ", b"1e308 ", b"-inf")),
    *(("ImagePositionPatient", "DS", v) for v in (b"nan\\0\\0 ", b"abc\\1\\2 ", b"1\\2 ", b"",
                                                  b"inf\\0\\0 ", b"1e308\\0\\0 ", None)),
    *(("ImageOrientationPatient", "DS", v) for v in (b"0\\0\\0\\0\\0\\0 ", b"nan\\0\\0\\0\\1\\0 ",
                                                     b"1\\0\\0\\1\\0\\0 ", b"1\\0\\0 ", b"abc ", None)),
    *(("PixelSpacing", "DS", v) for v in (b"0\\0 ", b"-1\\1 ", b"nan\\1 ", b"1 ", b"abc\\1 ",
                                          b"1e308\\1e308 ", None)),
    *(("NumberOfFrames", "IS", v) for v in (b"0 ", b"2 ", b"abc ", b"-1", b"99999999999 ")),
    *(("SliceThickness", "DS", v) for v in (b"nan ", b"abc ")),
    *(("SeriesInstanceUID", "UI", v) for v in (None, b"1.2.3\0")),
]
TRANSFER_SYNTAXES = [b"1.2.840.10008.1.2.4.90", b"1.2.840.10008.1.2.5", b"1.2.3.4", b"1.2.840.10008.1.2.1.99",
                     b"1.2.840.10008.1.2\0", b"1.2.840.10008.1.2.2\0"]


def set_transfer_syntax(raw: bytes, uid: bytes) -> bytes:
    """Swap the file meta's TransferSyntaxUID in place (pydicom would re-encode the data set instead)."""
    uid += b"\0" * (len(uid) % 2)
    at = raw.index(b"\x02\x00\x10\x00UI")
    old_len = struct.unpack("<H", raw[at + 6:at + 8])[0]
    out = raw[:at + 6] + struct.pack("<H", len(uid)) + uid + raw[at + 8 + old_len:]
    group = 132 + 8  # (0002,0000) UL right after the preamble and 'DICM'
    length = struct.unpack("<I", out[group:group + 4])[0] + len(uid) - old_len
    return out[:group] + struct.pack("<I", length) + out[group + 4:]


def edit_dicom(raw: bytes, edits) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(raw))
    syntax = None
    for keyword, vr, value in edits:
        tag = Tag(keyword)
        if keyword == "TransferSyntaxUID":
            syntax = value
        elif value is None:
            if tag in ds:
                del ds[tag]
        else:  # raw bytes, written as they are: invalid values survive
            ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=False)
    return out.getvalue() if syntax is None else set_transfer_syntax(out.getvalue(), syntax)


DICOM_ALLOWED = (VolumeReadError,)  # DicomError is a VolumeReadError


def write_series(folder: Path, files: list[bytes]) -> tuple[str, ...]:
    folder.mkdir()
    for i, raw in enumerate(files):
        (folder / f"IM{i + 1:05d}.dcm").write_bytes(raw)
    return (folder.name, *(f"IM{i + 1:05d}" for i in range(len(files))))


@fuzz(100)
@given(edits=st.lists(st.tuples(st.integers(0, 2), st.one_of(
    st.sampled_from(DICOM_EDITS),
    st.sampled_from(TRANSFER_SYNTAXES).map(lambda v: ("TransferSyntaxUID", "UI", v)))), min_size=1, max_size=3),
    every_slice=st.booleans())
def test_dicom_broken_tags(tmp_path, edits, every_slice):
    per_file: dict[int, list] = {}
    for index, edit in edits:
        for i in (range(3) if every_slice else [index]):
            per_file.setdefault(i, []).append(edit)
    files = [edit_dicom(raw, per_file[i]) if i in per_file else raw for i, raw in enumerate(dicom_series())]
    folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "series"
    names = write_series(folder, files)
    result, _ = outcome(lambda: read_volume(folder), DICOM_ALLOWED, names)
    check_volume(result)


@fuzz(40)
@given(index=st.integers(0, 2), cut=st.floats(0, 1, exclude_max=True),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6))
def test_dicom_truncated_or_flipped(tmp_path, index, cut, flips):
    files = list(dicom_series())
    raw = bytearray(files[index])
    for offset, value in flips:
        raw[offset % len(raw)] = value
    files[index] = bytes(raw[: max(1, int(cut * len(raw)))] if not flips else raw)
    folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "series"
    names = write_series(folder, files)
    result, _ = outcome(lambda: read_volume(folder), DICOM_ALLOWED, names)
    check_volume(result)


@pytest.mark.parametrize("length", [0xFFFFFFF0, 0x7FFFFFFF])
def test_dicom_absurd_element_length_is_not_allocated(tmp_path, length):
    """An element whose length field promises gigabytes in a file of a few kilobytes."""
    raw = bytearray(dicom_series()[0])
    at = raw.find(b"\x28\x00\x30\x00DS")  # PixelSpacing, explicit VR: 2-byte length
    assert at > 0
    raw[at:at + 8] = b"\x28\x00\x30\x00UN\0\0"  # as UN its length field is 4 bytes
    raw[at + 8:at + 12] = struct.pack("<I", length)
    folder = tmp_path / "s"
    names = write_series(folder, [bytes(raw), *dicom_series()[1:]])
    _, error = outcome(lambda: read_volume(folder), DICOM_ALLOWED, names)
    assert error is not None


# ---------------------------------------------------------------- report tables

CELL = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "Z", "S", "Cc"]), max_size=40)
HEADERS = ["case,report", "VolumeName,Findings_EN,Impressions_EN", "VolumeName,Findings_EN", "name,text", "",
           "case", "case,report,extra", '"case,report"', "\ufeffcase,report"]
ENCODINGS = ["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16-le", "utf-16-be", "utf-16", "utf-32"]


@st.composite
def csv_bytes(draw):
    rows = draw(st.lists(st.lists(CELL, min_size=1, max_size=4), max_size=5))
    text = draw(st.sampled_from(HEADERS)) + "\n" + "".join(
        ",".join(draw(st.sampled_from(['{}', '"{}"', '"{}'])).format(c) for c in row) + "\n" for row in rows)
    if draw(st.booleans()):
        text += "c9," + "x" * draw(st.sampled_from([1000, 200_000])) + "\n"  # csv's field limit is 128 KiB
    how = draw(st.sampled_from([*ENCODINGS, "random"]))
    if how == "random":
        return draw(st.binary(max_size=300))
    return text.encode(how, errors="replace")


@fuzz(100)
@given(content=csv_bytes())
def test_reports_csv(tmp_path, content):
    (tmp_path / "reports.csv").write_bytes(content)
    result, _ = outcome(lambda: read_reports(tmp_path), (ReportsError,), ("reports.csv",))
    if result is not None:
        assert all(isinstance(k, str) and isinstance(v, str) and "/" not in k for k, v in result.items())


@pytest.mark.parametrize("encoding,match", [("latin-1", "not UTF-8"), ("utf-16-le", "UTF-16"),
                                            ("utf-16", "not UTF-8"), ("utf-32-le", "UTF-16 or UTF-32")])
def test_reports_csv_in_another_encoding_names_it(tmp_path, encoding, match):
    (tmp_path / "reports.csv").write_bytes("case,report\nc1,Lésion hépatique\n".encode(encoding))
    with pytest.raises(ReportsError, match=match):
        read_reports(tmp_path)


# ---------------------------------------------------------------- JSON and JSON Lines

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
NASTY_JSON = ["[" * 100_000, "{" * 50_000, "1" * 5000, "NaN", "-Infinity", '{"a": 1e999}', "", "{", "\x00",
              '"\ud800"', '{"case": "c", "report": "' + "r" * 300_000 + '"}']


@st.composite
def json_text(draw, keys: tuple[str, ...], nasty: bool = True):
    how = draw(st.sampled_from(["structured", "value", "nasty", "bytes"] if nasty else ["structured", "value",
                                                                                         "bytes"]))
    if how == "structured":  # the right keys holding any JSON
        return json.dumps(draw(st.dictionaries(st.sampled_from(keys), JSON_VALUES, max_size=len(keys)))).encode()
    if how == "value":
        return json.dumps(draw(JSON_VALUES)).encode()
    if how == "nasty":
        return draw(st.sampled_from(NASTY_JSON)).encode("utf-8", "surrogatepass")
    return draw(st.binary(max_size=200))


@fuzz(80)
@given(content=json_text(("vocabulary", "split")), split_ids=st.lists(JSON_VALUES, max_size=3))
def test_dataset_json(tmp_path, content, split_ids):
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "dataset.json").write_bytes(content)
    result, _ = outcome(lambda: load_dataset(tmp_path), (DatasetError,), ("dataset.json",))
    if result is not None:
        assert result.cases == ()
    (tmp_path / "dataset.json").write_text(json.dumps({"split": {"train": split_ids}}))
    outcome(lambda: load_dataset(tmp_path), (DatasetError,), ("dataset.json",))


@fuzz(60)
@given(lines=st.lists(json_text(("case", "report", "findings", "impression")), min_size=1, max_size=4))
def test_reports_jsonl(tmp_path, lines):
    (tmp_path / "reports.jsonl").write_bytes(b"\n".join(lines))
    result, _ = outcome(lambda: read_reports(tmp_path), (ReportsError,), ("reports.jsonl",))
    if result is not None:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.items())


MANIFEST_KEYS = ("name", "mask", "slices", "report", "report_file", "seed")


@fuzz(60)
@given(lines=st.lists(json_text(MANIFEST_KEYS, nasty=False), min_size=1, max_size=4))
def test_generation_manifest(tmp_path, lines):
    from tracect.generate.batch import Job, ManifestError
    from tracect.utils.paths import UnsafePathError

    (tmp_path / "jobs.jsonl").write_bytes(b"\n".join(lines))
    # UnsafePathError names the path it refused rather than the manifest
    outcome(lambda: Job.read_manifest(tmp_path / "jobs.jsonl"), (ManifestError, UnsafePathError),
            ("jobs.jsonl", "outside", "absolute paths"))


@pytest.mark.parametrize("line", [
    pytest.param(NASTY_JSON[0], id="deep-nesting"),
    pytest.param(NASTY_JSON[2], id="5000-digits"),
    *(pytest.param(line, id=f"nasty{i}") for i, line in enumerate(NASTY_JSON[3:], start=3))])
def test_generation_manifest_nasty_lines(tmp_path, line):
    from tracect.generate.batch import Job, ManifestError

    (tmp_path / "jobs.jsonl").write_bytes(line.encode("utf-8", "surrogatepass"))
    outcome(lambda: Job.read_manifest(tmp_path / "jobs.jsonl"), (ManifestError,), ("jobs.jsonl",))
