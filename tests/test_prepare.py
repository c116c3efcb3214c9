"""tracect prepare: the real case, resumability, and every bad input of the foundation issue."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import link_real_case, save_nifti, toy_case
from tracect.cli.main import main
from tracect.data.cache import PreparedCache
from tracect.data.flow import warp
from tracect.data.prepare import PrepareConfig, prepare_dataset, unit_to_hu
from tracect.io import write_dicom_series
from tracect.io.volume import Volume
from tracect.labels.vocabulary import coarse


def real_dataset(tmp_path, real_dir):
    return link_real_case(tmp_path / "real", real_dir, report="Upper abdomen, normal.")


def test_prepare_real_case(tmp_path, real_dir):
    result = prepare_dataset(real_dataset(tmp_path, real_dir), tmp_path / "cache",
                             PrepareConfig(size=64), progress=False)
    assert [m["case"] for m in result.prepared] == ["s0011"] and not result.skipped
    cache = PreparedCache(tmp_path / "cache")
    arr = cache.case(0)
    meta = arr.meta
    assert meta["report"] == "Upper abdomen, normal."
    assert arr.image.shape == arr.mask.shape == arr.body.shape == (30, 64, 64)
    assert arr.flow.shape == (29, 2, 64, 64) and arr.flow.dtype == np.float16
    assert -1.0 <= float(arr.image.min()) and float(arr.image.max()) <= 1.0
    assert meta["spacing"][0] == pytest.approx(3.0)
    # 101 x 122 voxels of 3 mm, cropped to the body plus margin, fit into 64 px
    assert 4.0 < meta["spacing"][1] == meta["spacing"][2] < 6.5
    assert meta["z_mm"][0] > meta["z_mm"][-1]  # superior first
    voc = coarse()
    liver = arr.mask == voc.id_of("liver")
    assert liver.sum() > 1000
    assert np.median(np.argwhere(liver)[:, 2]) < 32  # patient's right = image left
    hu = unit_to_hu(np.asarray(arr.image, np.float32), cache.config.hu_window)
    assert 20 < np.median(hu[liver]) < 120
    assert np.median(hu[arr.body == 0]) < -900  # air around the body
    assert set(np.unique(arr.mask)) >= {voc.id_of("body"), voc.id_of("liver"), voc.id_of("bone")}
    # the cached flow explains neighbouring slices better than no motion at all, inside the body
    img = np.asarray(arr.image, np.float32)
    errs_flow, errs_zero = [], []
    for k in range(29):
        inside = arr.body[k] > 0
        errs_flow.append(np.abs(warp(img[k + 1], np.asarray(arr.flow[k], np.float32)) - img[k])[inside].mean())
        errs_zero.append(np.abs(img[k + 1] - img[k])[inside].mean())
    assert np.mean(errs_flow) < 0.9 * np.mean(errs_zero)


def test_prepare_fixed_spacing_and_thickness(tmp_path, toy_dataset):
    cfg = PrepareConfig(size=24, pixel_spacing=5.0, slice_thickness=6.0)
    result = prepare_dataset(toy_dataset, tmp_path / "cache", cfg, progress=False)
    for m in result.prepared:
        assert m["shape"][1:] == [24, 24]
        assert m["spacing"] == pytest.approx([6.0, 5.0, 5.0])
        src_extent = (m["source"]["shape"][2] - 1) * 3.0
        assert m["n_slices"] == int(src_extent // 6.0) + 1


def test_prepare_is_idempotent_and_refuses_another_config(tmp_path, toy_dataset):
    cfg = PrepareConfig(size=16)
    first = prepare_dataset(toy_dataset, tmp_path / "c", cfg, progress=False)
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "c" / "cases").rglob("*.npy")}
    second = prepare_dataset(toy_dataset, tmp_path / "c", cfg, progress=False)
    assert second.reused == 3 and [m["case"] for m in second.prepared] == [m["case"] for m in first.prepared]
    assert stamp == {p: p.stat().st_mtime_ns for p in (tmp_path / "c" / "cases").rglob("*.npy")}
    with pytest.raises(ValueError, match="another config"):
        prepare_dataset(toy_dataset, tmp_path / "c", PrepareConfig(size=24), progress=False)


def _cache_arrays(cache):
    return {p.relative_to(cache).as_posix(): np.load(p) for p in sorted((cache / "cases").rglob("*.npy"))}


def test_prepare_resumes_after_being_killed(tmp_path):
    """Kill a real `tracect prepare` process mid-run; the rerun finishes with the same cache."""
    root = tmp_path / "ds"
    for i in range(8):
        hu, mask, aff = toy_case(seed=i, n_slices=40, size=96)
        save_nifti(root / "images" / f"c{i}.nii.gz", hu, aff)
        save_nifti(root / "masks" / f"c{i}.nii.gz", mask, aff)
    cmd = [sys.executable, "-m", "tracect.cli.main", "prepare", str(root), "--size", "32", "--quiet"]
    proc = subprocess.Popen(cmd + ["--out", str(tmp_path / "killed")])
    cases = tmp_path / "killed" / "cases"
    deadline = time.time() + 60
    while time.time() < deadline and len([p for p in cases.glob("c*")]) < 2:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    done_before = len(list(cases.glob("c*")))
    assert 0 < done_before < 8, "the kill should land mid-run"
    for partial in cases.glob("c*"):  # whatever is in place is complete
        assert (partial / "meta.json").is_file()
    assert subprocess.run(cmd + ["--out", str(tmp_path / "killed")]).returncode == 0
    assert subprocess.run(cmd + ["--out", str(tmp_path / "straight")]).returncode == 0
    a, b = _cache_arrays(tmp_path / "killed"), _cache_arrays(tmp_path / "straight")
    assert a.keys() == b.keys() and len(a) == 32
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not list(cases.glob(".*tmp*"))


def test_prepare_with_parallel_workers_matches_serial(tmp_path, toy_dataset):
    cfg = PrepareConfig(size=16)
    prepare_dataset(toy_dataset, tmp_path / "a", cfg, workers=1, progress=False)
    prepare_dataset(toy_dataset, tmp_path / "b", cfg, workers=2, progress=False)
    a, b = _cache_arrays(tmp_path / "a"), _cache_arrays(tmp_path / "b")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- bad inputs


def add_case(root, name, hu=None, mask=None, aff=None, mask_aff=None):
    if hu is not None:
        save_nifti(root / "images" / f"{name}.nii.gz", hu, aff)
    if mask is not None:
        save_nifti(root / "masks" / f"{name}.nii.gz", mask, aff if mask_aff is None else mask_aff)


@pytest.fixture
def bad_dataset(toy_dataset, tmp_path):
    root = toy_dataset
    hu, mask, aff = toy_case(seed=9)
    add_case(root, "shape_mismatch", hu, mask[:, :, :-1], aff)
    shifted = aff.copy()
    shifted[0, 3] += 7.0
    add_case(root, "geometry_mismatch", hu, mask, aff, shifted)
    add_case(root, "no_mask", hu=hu, aff=aff)
    add_case(root, "no_image", mask=mask, aff=aff)
    add_case(root, "raw_values", (hu.astype(np.int32) + 1024).astype(np.uint16), mask, aff)
    add_case(root, "one_slice", hu[:, :, :1], mask[:, :, :1], aff)
    add_case(root, "empty_mask", hu, np.zeros_like(mask), aff)
    bad_labels = mask.copy()
    bad_labels[0, 0, 0] = 200
    add_case(root, "unknown_labels", hu, bad_labels, aff)
    add_case(root, "truncated", hu, mask, aff)
    data = (root / "images" / "truncated.nii.gz").read_bytes()
    (root / "images" / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    add_case(root, "garbage", None, mask, aff)
    (root / "images" / "garbage.nii.gz").write_bytes(gzip.compress(b"this is not a nifti file" * 20))
    add_case(root, "no_report", hu, mask, aff)
    # a DICOM folder that mixes two series
    write_dicom_series(Volume(hu, aff), root / "images" / "mixed_series", series_description="A")
    write_dicom_series(Volume(hu, aff), tmp_path / "other", series_description="B")
    for i, f in enumerate(sorted((tmp_path / "other").iterdir())):
        shutil.move(f, root / "images" / "mixed_series" / f"other{i}.dcm")
    add_case(root, "mixed_series", mask=mask, aff=aff)
    return root


EXPECTED_PROBLEMS = {
    "shape_mismatch": "differs from mask shape",
    "geometry_mismatch": "grids differ",
    "no_mask": "image without a mask",
    "no_image": "mask without an image",
    "raw_values": "raw scanner numbers",
    "one_slice": "at least 2 needed",
    "empty_mask": "mask is empty",
    "unknown_labels": "[200] are not in vocabulary 'total'",
    "truncated": "unreadable NIfTI",
    "garbage": "unreadable NIfTI",
    "mixed_series": "holds 2 series",
}


def test_every_bad_input_is_named_and_skipped(tmp_path, bad_dataset, capsys):
    code = main(["prepare", str(bad_dataset), "--out", str(tmp_path / "cache"), "--size", "16", "--quiet"])
    out = capsys.readouterr()
    assert code == 0  # valid cases remain
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    skipped = {s["case"]: s["problem"] for s in manifest["skipped"]}
    assert skipped.keys() == EXPECTED_PROBLEMS.keys()
    for case, expected in EXPECTED_PROBLEMS.items():
        assert expected in skipped[case], (case, skipped[case])
        # one line naming the case and the problem, and again in the summary
        lines = [ln for ln in (out.out + out.err).splitlines() if case in ln and expected in ln]
        assert len(lines) >= 2, case
    prepared = sorted(m["case"] for m in manifest["cases"])
    assert prepared == ["case0", "case1", "case2", "no_report"]
    assert any("no_report: no report" in w for w in manifest["warnings"])
    assert "no_report: no report" in out.out


def test_scanner_padding_reads_as_air(tmp_path, toy_dataset):
    """-3024 HU outside a scanner's circular field of view (the CRLM cases) is padding, not an implausible
    value: the case is prepared with the padding as air, and the warning counts it."""
    hu, mask, aff = toy_case(seed=4)
    yy, xx = np.mgrid[: hu.shape[0], : hu.shape[1]]
    r = (hu.shape[0] - 1) / 2
    outside = (yy - r) ** 2 + (xx - r) ** 2 > r**2
    padded = hu.astype(np.int16).copy()
    padded[outside] = -3024
    add_case(toy_dataset, "padded", padded, mask, aff)
    result = prepare_dataset(toy_dataset, tmp_path / "cache", PrepareConfig(size=16), progress=False, log=None)
    assert not result.skipped
    meta = next(m for m in result.prepared if m["case"] == "padded")
    assert any(f"{int(outside.sum()) * hu.shape[2]} voxels of scanner padding" in w for w in meta["warnings"])
    cache = PreparedCache(tmp_path / "cache")
    image = np.asarray(cache.case(cache.index_of("padded")).image, dtype=np.float32)
    assert image.min() >= -1.0  # no value left below the window's air


def test_strict_and_nothing_valid_exit_codes(tmp_path, bad_dataset):
    assert main(["prepare", str(bad_dataset), "--out", str(tmp_path / "s"), "--size", "16",
                 "--quiet", "--strict"]) == 1
    only_bad = tmp_path / "only_bad"
    hu, mask, aff = toy_case()
    add_case(only_bad, "empty", hu, np.zeros_like(mask), aff)
    assert main(["prepare", str(only_bad), "--out", str(tmp_path / "n"), "--size", "16", "--quiet"]) == 2


def test_dataset_json_paths_stay_inside_the_dataset(tmp_path, toy_dataset, capsys):
    (toy_dataset / "dataset.json").write_text(json.dumps({"vocabulary": "../../etc/vocab.json"}))
    assert main(["prepare", str(toy_dataset), "--out", str(tmp_path / "c"), "--quiet"]) == 1
    assert "leaves the dataset folder" in capsys.readouterr().err


def test_prepare_the_phantom(tmp_path):
    """The built-in phantom prepares cleanly: reports attached, every organ group present, air outside."""
    from tracect.phantom import write_dataset

    write_dataset(tmp_path / "ph", n=3, seed=5, progress=False)
    result = prepare_dataset(tmp_path / "ph", tmp_path / "cache", PrepareConfig(size=32), progress=False)
    assert not result.skipped and len(result.prepared) == 3 and not result.warnings
    cache = PreparedCache(tmp_path / "cache")
    voc = cache.vocabulary
    for i, meta in enumerate(cache.cases):
        assert meta["report"].startswith("EXAMINATION:")
        arr = cache.case(i)
        present = {voc.labels[int(v)] for v in np.unique(arr.mask) if v}
        assert {"body", "lung", "liver", "bone", "aorta"} <= present, present
        hu = unit_to_hu(np.asarray(arr.image, np.float32), cache.config.hu_window)
        assert np.median(hu[arr.body == 0]) < -950
        assert np.median(hu[arr.mask == voc.id_of("lung")]) < -600
        assert meta["spacing"][0] == pytest.approx(meta["source"]["spacing"][2], rel=1e-3)
