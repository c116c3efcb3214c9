"""Images and masks stored in different axis orders: one grid comparison, in millimetres, everywhere.

The everyday pair is a DICOM series (read as LPS columns, rows, slices) with the NIfTI mask a
segmentation tool wrote for it (TotalSegmentator writes LAS): the same voxels with other indices.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydicom.uid import JPEG2000Lossless

from tracect.cli.main import main
from tracect.data.cache import PreparedCache
from tracect.io import Volume, read_mask, read_volume, write_dicom_series, write_volume
from tracect.io.pairing import GRID_TOLERANCE_MM, GridMismatchError, check_same_grid, compare_grids

ORIENTATIONS = [("L", "A", "S"), ("L", "P", "S"), ("R", "A", "S"), ("I", "P", "L"), ("S", "L", "A")]


def shifted(vol: Volume, mm) -> Volume:
    aff = vol.affine.copy()
    aff[:3, 3] += np.asarray(mm, float)
    return Volume(vol.array, aff, dict(vol.meta))


@pytest.fixture(scope="module")
def real_pair(real_dir):
    return read_volume(real_dir / "ct.nii.gz"), read_mask(real_dir / "seg.nii.gz")


@pytest.mark.parametrize("codes", ORIENTATIONS, ids=["".join(c) for c in ORIENTATIONS])
def test_the_same_grid_in_any_axis_order_is_the_same_grid(real_pair, codes):
    ct, seg = real_pair
    other = seg.reorient(codes)
    assert other.orientation == codes
    c = compare_grids(ct, other)
    assert c.same() and c.offset_mm < 1e-6
    check_same_grid(ct, other)
    # the raw affines differ by a whole field of view once an in-plane axis is flipped
    if codes[0] != "R":
        assert np.abs(other.affine - ct.affine).max() > 300


def test_a_shifted_grid_or_another_field_of_view_is_refused_with_the_offset(real_pair):
    ct, seg = real_pair
    c = compare_grids(ct, shifted(seg, (0.0, 0.0, 2.5)))
    assert not c.same() and c.offset_mm == pytest.approx(2.5, abs=1e-4)
    with pytest.raises(GridMismatchError, match=r"2\.5 mm apart"):
        check_same_grid(ct, shifted(seg.reorient(("L", "A", "S")), (0.0, 0.0, 2.5)))
    # within the tolerance: float-level differences of one grid
    assert compare_grids(ct, shifted(seg, (0.0, GRID_TOLERANCE_MM / 2, 0.0))).same()
    cropped = Volume(seg.array[:, :, 1:], seg.affine @ _offset(0, 0, 1))
    with pytest.raises(GridMismatchError, match=r"another field of view.*3 mm apart"):
        check_same_grid(ct, cropped)
    # a rotated grid of the same shape: the corners move most
    c, s = np.cos(0.01), np.sin(0.01)
    rot = np.eye(4)
    rot[:2, :2] = [[c, -s], [s, c]]
    c_rot = compare_grids(ct, Volume(seg.array, rot @ seg.affine))
    assert not c_rot.same() and c_rot.offset_mm > 1.0


@pytest.fixture(scope="module")
def dicom_pairs(tmp_path_factory, real_dir, real_pair):
    """Datasets of the real CT written as a JPEG 2000 DICOM series, with its mask in LAS and in LPS,
    (and in SLA) beside the original NIfTI pair, plus a mask shifted by 3 mm and one cropped to another field of view."""
    ct, seg = real_pair
    root = tmp_path_factory.mktemp("pairs")
    series = root / "series"
    write_dicom_series(ct, series, transfer_syntax=JPEG2000Lossless, synthetic=False)
    ds = root / "ds"
    (ds / "masks").mkdir(parents=True)
    (ds / "images").mkdir()
    for case, mask in (("las", seg.reorient(("L", "A", "S"))), ("lps", seg.reorient(("L", "P", "S"))),
                       ("sla", seg.reorient(("S", "L", "A"))),
                       ("shifted", shifted(seg.reorient(("L", "A", "S")), (3.0, 0.0, 0.0))),
                       ("cropped", Volume(seg.array[10:], seg.affine @ _offset(10, 0, 0)))):
        (ds / "images" / case).symlink_to(series, target_is_directory=True)
        write_volume(mask, ds / "masks" / f"{case}.nii.gz")
    (ds / "images" / "nifti.nii.gz").symlink_to(real_dir / "ct.nii.gz")
    (ds / "masks" / "nifti.nii.gz").symlink_to(real_dir / "seg.nii.gz")
    return ds


def _offset(i, j, k):
    m = np.eye(4)
    m[:3, 3] = (i, j, k)
    return m


def test_dicom_series_with_a_mask_in_any_axis_order_prepares_like_the_nifti_pair(tmp_path, dicom_pairs, capsys):
    assert main(["prepare", str(dicom_pairs), "--out", str(tmp_path / "cache"), "--size", "16", "--quiet"]) == 0
    out = capsys.readouterr()
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    skipped = {s["case"]: s["problem"] for s in manifest["skipped"]}
    assert sorted(m["case"] for m in manifest["cases"]) == ["las", "lps", "nifti", "sla"]
    # really different grids are still refused, with the offset in millimetres
    assert set(skipped) == {"shifted", "cropped"}
    assert "grids differ" in skipped["shifted"] and "3 mm apart" in skipped["shifted"]
    assert "another field of view" in skipped["cropped"] and "30 mm apart" in skipped["cropped"]
    assert "shifted" in out.err and "mm apart" in out.err
    cache = PreparedCache(tmp_path / "cache")
    ref = cache.case(cache.index_of("nifti"))
    for case in ("las", "lps", "sla"):
        arr = cache.case(cache.index_of(case))
        assert arr.meta["source"]["format"] == "dicom"
        assert arr.meta["source"]["mask_orientation"] == case.upper()
        assert arr.image.shape == ref.image.shape
        assert np.array_equal(np.asarray(arr.mask), np.asarray(ref.mask))
        assert np.abs(np.asarray(arr.image, np.float32) - np.asarray(ref.image, np.float32)).max() < 2e-3
        assert np.allclose(arr.meta["affine"], ref.meta["affine"], atol=1e-3)


def test_evaluate_pairs_a_dicom_reference_with_a_las_mask(tmp_path, dicom_pairs, real_dir):
    """The real CT scored as if it were generated, against its own DICOM series as the reference and
    its LAS mask: every grid agrees, so the coherence and HU figures are those of identical volumes."""
    from tracect.evaluate.entries import EvalEntry, EvaluationError
    from tracect.evaluate.harness import evaluate

    entry = EvalEntry("las", real_dir / "ct.nii.gz", dicom_pairs / "masks" / "las.nii.gz", "",
                      reference=dicom_pairs / "images" / "las")
    m = evaluate([entry], tmp_path / "ev", html=False, progress=False, log=None)
    row = m["cases"][0]
    assert row["flow_epe_px"] == pytest.approx(0.0, abs=1e-6)
    assert row["hu_abs_error_mean"] == pytest.approx(0.0, abs=0.5)
    bad = EvalEntry("shifted", real_dir / "ct.nii.gz", dicom_pairs / "masks" / "shifted.nii.gz", "",
                    reference=dicom_pairs / "images" / "shifted")
    with pytest.raises(EvaluationError, match=r"shifted: .*3 mm apart"):
        evaluate([bad], tmp_path / "ev2", html=False, progress=False, log=None)
