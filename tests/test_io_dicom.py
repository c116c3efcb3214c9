"""DICOM series: order by position, spacing from positions, HU rescale, compression, mixed series."""

from __future__ import annotations

import random

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless

from tracect.cli.main import main
from tracect.io import DicomError, Volume, read_volume, write_dicom_series


def known_volume(shape=(40, 36, 7), spacing=(0.8, 0.9, 2.5), seed=0) -> Volume:
    arr = np.random.default_rng(seed).integers(-1024, 1500, size=shape).astype(np.int16)
    aff = np.diag([*spacing, 1.0])
    aff[:3, 3] = [-30.0, 12.0, 100.0]
    return Volume(arr, aff)


def shuffle_names(folder, seed=0):
    files = sorted(folder.iterdir())
    names = [f"{random.Random(seed + i).getrandbits(40):x}.dcm" for i in range(len(files))]
    for f, n in zip(files, names):
        f.rename(folder / n)


@pytest.mark.parametrize("syntax", [None, JPEG2000Lossless, RLELossless], ids=["raw", "jpeg2000", "rle"])
def test_series_round_trip_with_shuffled_files(tmp_path, syntax):
    vol = known_volume()
    write_dicom_series(vol, tmp_path / "s", transfer_syntax=syntax)
    shuffle_names(tmp_path / "s")
    # scanners often get SliceThickness wrong: spacing must come from positions
    for f in (tmp_path / "s").iterdir():
        ds = pydicom.dcmread(f)
        ds.SliceThickness = 10.0
        ds.InstanceNumber = random.Random(f.name).randint(1, 999)
        ds.save_as(f)
    back = read_volume(tmp_path / "s")
    if syntax is not None:
        assert back.meta["transfer_syntax"] == syntax
    same = back.like(vol)
    assert np.array_equal(same.array, vol.array)
    assert np.allclose(same.affine, vol.affine, atol=1e-4)
    assert np.allclose(back.spacing[2], 2.5)


def test_rescale_slope_and_intercept_give_hu(tmp_path):
    vol = known_volume()
    hu = (vol.array // 2) * 2  # even HU so that slope 2 is exact
    write_dicom_series(vol.with_array(hu), tmp_path / "s", intercept=-2048)
    for f in (tmp_path / "s").iterdir():
        ds = pydicom.dcmread(f)
        stored = ds.pixel_array.astype(np.int32) - 1024  # HU + 2048 -> (HU + 1024) / 2 with slope 2
        ds.PixelData = (stored // 2 + 512).astype(np.uint16).tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = 2.0, -2048.0
        ds.save_as(f)
    back = read_volume(tmp_path / "s").like(vol)
    assert np.array_equal(back.array, hu)


def test_gantry_free_oblique_series_keeps_world_coordinates(tmp_path):
    vol = known_volume()
    c, s = np.cos(0.2), np.sin(0.2)
    aff = vol.affine.copy()
    aff[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ vol.affine[:3, :3]
    oblique = Volume(vol.array, aff)
    write_dicom_series(oblique, tmp_path / "s")
    back = read_volume(tmp_path / "s").like(oblique)
    assert np.array_equal(back.array, oblique.array)
    assert np.allclose(back.affine, aff, atol=1e-4)


def test_mixed_series_folder_is_refused_with_a_list(tmp_path):
    write_dicom_series(known_volume(seed=1), tmp_path / "mix", series_description="A")
    write_dicom_series(known_volume(seed=2), tmp_path / "b", series_description="B")
    for i, f in enumerate(sorted((tmp_path / "b").iterdir())):
        f.rename(tmp_path / "mix" / f"b{i}.dcm")
    with pytest.raises(DicomError, match="holds 2 series") as err:
        read_volume(tmp_path / "mix")
    assert "SYNTHETIC A" in str(err.value) and "SYNTHETIC B" in str(err.value)


def test_truncated_and_missing_slices_are_errors(tmp_path):
    write_dicom_series(known_volume(), tmp_path / "s")
    files = sorted((tmp_path / "s").iterdir())
    files[3].unlink()  # a missing slice makes the spacing irregular
    with pytest.raises(ValueError, match="irregular slice spacing"):
        read_volume(tmp_path / "s")
    write_dicom_series(known_volume(), tmp_path / "t")
    f = sorted((tmp_path / "t").iterdir())[2]
    f.write_bytes(f.read_bytes()[:-300])  # truncated pixel data
    with pytest.raises(ValueError, match="IM00003"):
        read_volume(tmp_path / "t")


def test_synthetic_series_is_marked_in_headers(tmp_path):
    write_dicom_series(known_volume(), tmp_path / "s")
    ds = pydicom.dcmread(sorted((tmp_path / "s").iterdir())[0])
    assert "DERIVED" in ds.ImageType and "SYNTHETIC" in ds.SeriesDescription
    assert "ynthetic" in ds.ImageComments and ds.Modality == "CT"


def test_jpeg_lossless_decoder_is_installed():
    # real scanners send JPEG lossless (process 14); decoding needs the pylibjpeg-libjpeg plugin
    from pydicom.pixels.decoders import JPEGLosslessSV1Decoder, JPEG2000LosslessDecoder

    assert JPEGLosslessSV1Decoder.is_available
    assert JPEG2000LosslessDecoder.is_available


def test_real_ct_as_compressed_dicom_converts_back_exactly(tmp_path, real_dir):
    """The real CT sent as a JPEG 2000 series: `tracect convert` gives its HU and world grid back."""
    ct = read_volume(real_dir / "ct.nii.gz")
    write_dicom_series(ct, tmp_path / "series", transfer_syntax=JPEG2000Lossless, synthetic=False)
    shuffle_names(tmp_path / "series")
    assert main(["convert", str(tmp_path / "series"), str(tmp_path / "ct.nii.gz")]) == 0
    out = read_volume(tmp_path / "ct.nii.gz")
    assert out.orientation == ("L", "P", "S")
    back = out.like(ct)
    assert np.array_equal(back.array, ct.array)
    # world coordinates of every voxel centre agree to float32 precision
    ijk = np.argwhere(np.ones(ct.shape, bool))[::97]
    assert np.abs(back.world(ijk) - ct.world(ijk)).max() < 1e-3
