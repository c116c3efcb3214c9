"""Geometry round trips: NIfTI, NRRD and canonical reorientation with non-trivial affines."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracect.io import CANONICAL_CODES, Volume, read_volume, write_volume
from tracect.io.pairing import same_grid


def rotation(angles) -> np.ndarray:
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_affine(perm, flips, spacing, angles, origin) -> np.ndarray:
    """Axes permuted and flipped, then rotated a little (oblique), scaled by spacing."""
    m = np.zeros((3, 3))
    for i, (p, f) in enumerate(zip(perm, flips)):
        m[p, i] = -1.0 if f else 1.0
    aff = np.eye(4)
    aff[:3, :3] = rotation(angles) @ m @ np.diag(spacing)
    aff[:3, 3] = origin
    return aff


affines = st.builds(
    make_affine,
    st.permutations([0, 1, 2]),
    st.lists(st.booleans(), min_size=3, max_size=3),
    st.lists(st.floats(0.5, 5.0), min_size=3, max_size=3),
    st.lists(st.floats(-0.3, 0.3), min_size=3, max_size=3),  # up to ~17 degrees oblique
    st.lists(st.floats(-300, 300), min_size=3, max_size=3),
)

LPS = np.diag([-0.8, -0.8, 2.5, 1.0])
RAS = np.diag([0.8, 0.8, 2.5, 1.0])
FLIPPED = np.array([[0, 0, -2.5, 10], [-0.8, 0, 0, 20], [0, 0.8, 0, -5], [0, 0, 0, 1.0]])


@settings(max_examples=60, deadline=None)
@given(affines)
def test_canonical_round_trip_keeps_every_voxel_in_place(affine):
    arr = np.arange(4 * 5 * 6, dtype=np.int32).reshape(4, 5, 6)
    vol = Volume(arr, affine)
    can = vol.canonical()
    assert can.orientation == CANONICAL_CODES
    back = can.like(vol)
    assert np.array_equal(back.array, arr)
    assert np.allclose(back.affine, affine, atol=1e-9)
    # every voxel keeps its world position: find each canonical voxel's value in the original
    ijk = np.argwhere(np.ones(can.shape, bool))
    world = can.world(ijk)
    orig_ijk = np.rint((world - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T).astype(int)
    assert np.array_equal(arr[tuple(orig_ijk.T)], can.array[tuple(ijk.T)])


@pytest.mark.parametrize("affine", [LPS, RAS, FLIPPED], ids=["LPS", "RAS", "flipped"])
def test_canonical_layout_is_superior_first_anterior_top_right_left(affine):
    vol = Volume(np.zeros((6, 7, 8), np.int16), affine).canonical()
    z0, z1 = vol.world([[0, 0, 0], [1, 0, 0]])
    assert z0[2] > z1[2]  # slice 0 is superior
    r0, r1 = vol.world([[0, 0, 0], [0, 1, 0]])
    assert r0[1] > r1[1]  # row 0 is anterior (RAS y larger)
    c0, c1 = vol.world([[0, 0, 0], [0, 0, 1]])
    assert c0[0] > c1[0]  # column 0 is the patient's right (RAS x larger)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
@pytest.mark.parametrize("affine", [LPS, RAS, FLIPPED, make_affine((2, 0, 1), (1, 0, 1), (0.7, 1.1, 3.0),
                                                                     (0.2, -0.1, 0.25), (12, -40, 300))],
                         ids=["LPS", "RAS", "flipped", "oblique"])
def test_write_read_round_trip(tmp_path, suffix, affine):
    arr = np.random.default_rng(0).integers(-1024, 2000, size=(9, 8, 7)).astype(np.int16)
    path = write_volume(Volume(arr, affine), tmp_path / f"v{suffix}")
    back = read_volume(path)
    assert np.array_equal(back.array, arr)
    assert np.allclose(back.affine, affine, atol=1e-4)  # NIfTI stores the sform in float32
    assert back.orientation == Volume(arr, affine).orientation


def test_nrrd_in_lps_space_is_read_as_ras(tmp_path):
    import nrrd

    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    nrrd.write(str(tmp_path / "lps.nrrd"), arr, {
        "space": "left-posterior-superior", "space directions": np.diag([0.5, 0.6, 2.0]).tolist(),
        "space origin": [10.0, 20.0, 30.0]})
    vol = read_volume(tmp_path / "lps.nrrd")
    assert vol.orientation == ("L", "P", "S")
    assert np.allclose(vol.affine[:3, 3], [-10, -20, 30])
    assert np.allclose(vol.spacing, [0.5, 0.6, 2.0])


def test_write_refuses_to_overwrite_when_asked(tmp_path):
    vol = Volume(np.zeros((2, 2, 2), np.int16), np.eye(4))
    write_volume(vol, tmp_path / "a.nii.gz")
    with pytest.raises(FileExistsError):
        write_volume(vol, tmp_path / "a.nii.gz", overwrite=False)


def test_volume_rejects_bad_geometry():
    with pytest.raises(ValueError, match="3D"):
        Volume(np.zeros((2, 2)), np.eye(4))
    with pytest.raises(ValueError, match="singular"):
        Volume(np.zeros((2, 2, 2)), np.diag([1, 0, 1, 1.0]))


def test_real_ct_and_mask(real_dir):
    from tracect.io import read_mask
    from tracect.labels.vocabulary import total

    ct = read_volume(real_dir / "ct.nii.gz")
    seg = read_mask(real_dir / "seg.nii.gz")
    assert ct.shape == seg.shape == (122, 101, 30)
    assert np.allclose(ct.spacing, (3.0, 3.0, 3.0))
    assert ct.orientation == ("R", "A", "S")
    assert ct.array.dtype == np.int16
    assert (int(ct.array.min()), int(ct.array.max())) == (-1100, 1207)
    assert same_grid(ct, seg)
    labels = set(np.unique(seg.array)) - {0}
    assert len(labels) == 41
    names = {total().labels[int(i)] for i in labels}
    assert {"liver", "spleen", "kidney_left", "kidney_right", "stomach", "aorta"} <= names
    # HU sanity inside organs of the real scan
    liver = ct.array[seg.array == total().id_of("liver")]
    assert 20 < np.median(liver) < 120
    can = ct.canonical()
    assert can.shape == (30, 101, 122)
    # liver is on the patient's right: the left half of canonical columns
    liver_cols = np.argwhere(seg.canonical().array == total().id_of("liver"))[:, 2]
    assert np.median(liver_cols) < can.shape[2] / 2
