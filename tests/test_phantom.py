"""The built-in phantom: deterministic, geometrically consistent, plausible HU, reports that match."""

from __future__ import annotations

import csv
import json
from functools import lru_cache

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from tracect.data.layout import load_dataset
from tracect.io.pairing import same_grid
from tracect.labels.vocabulary import total
from tracect.phantom import PhantomConfig, make_case, make_mask, write_dataset
from tracect.phantom.geometry import Tissue
from tracect.phantom.generator import case_seed, simulate

VOC = total()
# a long scan: chest, abdomen and usually pelvis, so that every organ checked below is in view
LONG = PhantomConfig(slices=(110, 112), slice_thickness=(4.8, 5.0))


@lru_cache(maxsize=None)
def case(seed: int, config: PhantomConfig = LONG):
    return simulate(f"t{seed}", seed, config)


def organ(mask: np.ndarray, *names: str, erode: bool = True) -> np.ndarray:
    """Voxels of the named labels, one voxel in from their border (away from partial volume)."""
    m = np.isin(mask, [VOC.id_of(n) for n in names])
    return ndimage.binary_erosion(m, np.ones((1, 3, 3), bool)) if erode else m


def median(image: np.ndarray, region: np.ndarray) -> float:
    assert region.sum() >= 5, "region too small to measure"
    return float(np.median(image[region]))


def test_config_is_validated():
    for kwargs, field in [({"size": 8}, "size"), ({"slices": (50, 40)}, "slices"),
                          ({"pixel_spacing": (0.0, 2.0)}, "pixel_spacing"), ({"p_arterial": 1.5}, "p_arterial"),
                          ({"slice_thickness": (3.0,)}, "slice_thickness"), ({"max_lesions": 0}, "max_lesions")]:
        with pytest.raises(ValueError, match=field):
            PhantomConfig(**kwargs)


def test_same_seed_same_case_other_seed_other_case():
    a, b, c = make_case("a", 5), make_case("a", 5), make_case("a", 6)
    assert np.array_equal(a.image.array, b.image.array) and np.array_equal(a.mask.array, b.mask.array)
    assert np.array_equal(a.image.affine, b.image.affine)
    assert a.report == b.report and a.findings == b.findings
    assert a.image.shape != c.image.shape or not np.array_equal(a.image.array, c.image.array)
    assert a.report != c.report or a.findings != c.findings


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_geometry_and_field_of_view(seed):
    cfg = PhantomConfig()
    c = make_case(f"g{seed}", seed, cfg)
    img, msk = c.image, c.mask
    assert img.array.dtype == np.int16 and msk.array.dtype == np.uint8
    assert img.is_canonical and msk.is_canonical and same_grid(img, msk)
    assert np.array_equal(img.affine, msk.affine)
    z, y, x = img.shape
    assert (y, x) == (cfg.size, cfg.size) and cfg.slices[0] <= z <= cfg.slices[1]
    dz, dy, dx = img.spacing
    assert dy == pytest.approx(dx)
    assert cfg.pixel_spacing[0] - 1e-6 <= dx <= cfg.pixel_spacing[1] + 1e-6
    assert cfg.slice_thickness[0] - 1e-6 <= dz <= cfg.slice_thickness[1] + 1e-6
    assert c.findings["slice_thickness_mm"] == pytest.approx(dz, abs=1e-3)
    # the body fits the field of view: the outer two rings of every slice are air, unlabelled
    border = np.ones((y, x), bool)
    border[2:-2, 2:-2] = False
    assert img.array[:, border].max() < -800
    assert not msk.array[:, border].any()
    VOC.check(msk.array)  # every label is a `total` id
    json.dumps(c.findings)  # JSON-serialisable


def test_long_scan_has_the_torso_in_order():
    c, _ = case(0)
    m = c.mask.array
    present = {VOC.labels[int(i)] for i in np.unique(m) if i}
    for name in ("liver", "spleen", "kidney_left", "kidney_right", "aorta", "heart", "stomach", "colon",
                 "lung_lower_lobe_left", "lung_upper_lobe_right", "vertebrae_T12", "vertebrae_L1", "rib_left_8"):
        assert name in present, name

    def zc(name):  # mean slice index (grows toward inferior)
        return np.nonzero(m == VOC.id_of(name))[0].mean()

    assert zc("heart") < zc("liver") < zc("kidney_left")
    assert zc("vertebrae_T10") < zc("vertebrae_T12") < zc("vertebrae_L2")
    xs = lambda name: np.nonzero(m == VOC.id_of(name))[2].mean()  # noqa: E731 (column: toward patient's left)
    assert xs("liver") < m.shape[2] / 2 < xs("spleen")
    assert xs("kidney_right") < xs("kidney_left")
    assert np.nonzero(m == VOC.id_of("heart"))[1].mean() < np.nonzero(m == VOC.id_of("vertebrae_T8"))[1].mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tissue_hu_ranges(seed):
    c, anat = case(seed)
    im, m = c.image.array, c.mask.array
    lung = ("lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_middle_lobe_right",
            "lung_lower_lobe_right")
    assert median(im, organ(m, *lung)) < -700
    bone = [n for n in VOC.labels.values() if n.startswith("vertebrae_")]
    assert median(im, organ(m, *bone, erode=False)) > 150
    assert median(im, organ(m, "autochthon_left", "autochthon_right")) == pytest.approx(50, abs=20)
    fat = ndimage.binary_erosion(anat.tissue == Tissue.FAT, np.ones((1, 3, 3), bool))
    assert median(im, fat) < -50
    outside = np.zeros(im.shape, bool)
    outside[:, :2, :] = True
    assert median(im, outside) == pytest.approx(-1000, abs=50)
    f = c.findings
    if not f["fatty_liver"]:
        lo = 45 if f["contrast_phase"] == "non-contrast" else 55
        assert lo <= median(im, organ(m, "liver")) <= lo + 40
    assert 30 <= median(im, organ(m, "spleen")) <= 85


def test_contrast_phase_shows_in_the_aorta_and_kidneys():
    art, _ = case(4, PhantomConfig(slices=LONG.slices, slice_thickness=LONG.slice_thickness, p_arterial=1.0))
    non, _ = case(4, PhantomConfig(slices=LONG.slices, slice_thickness=LONG.slice_thickness, p_arterial=0.0))
    assert art.findings["contrast_phase"] == "arterial" and non.findings["contrast_phase"] == "non-contrast"
    assert np.array_equal(art.mask.array, non.mask.array)  # same anatomy, other phase
    assert median(art.image.array, organ(art.mask.array, "aorta")) > 200
    assert median(non.image.array, organ(non.mask.array, "aorta")) < 80
    kid = organ(art.mask.array, "kidney_left", "kidney_right", erode=False)
    assert median(art.image.array, kid) > median(non.image.array, kid) + 30
    assert "arterial phase" in art.report and "non-contrast" not in art.report
    assert "non-contrast" in non.report and "arterial" not in non.report


def test_fatty_liver_lowers_liver_hu_and_is_reported():
    base = dict(slices=LONG.slices, slice_thickness=LONG.slice_thickness, p_arterial=0.0, p_lesion=0.0)
    fat, _ = case(5, PhantomConfig(p_fatty_liver=1.0, **base))
    lean, _ = case(5, PhantomConfig(p_fatty_liver=0.0, **base))
    liver = organ(fat.mask.array, "liver")
    assert median(fat.image.array, liver) < median(lean.image.array, liver) - 20
    assert median(fat.image.array, liver) < median(fat.image.array, organ(fat.mask.array, "spleen"))
    assert fat.findings["fatty_liver"] and not lean.findings["fatty_liver"]
    assert "steatosis" in fat.report and "steatosis" not in lean.report


@pytest.mark.parametrize("seed", [10, 11, 12, 13])
def test_lesions_are_inside_their_organ_visible_and_reported(seed):
    cfg = PhantomConfig(slices=LONG.slices, slice_thickness=LONG.slice_thickness, p_lesion=1.0, max_lesions=2)
    c, anat = case(seed, cfg)
    im, m = c.image.array, c.mask.array
    lesions = c.findings["lesions"]
    assert lesions, "p_lesion=1 on a long scan places at least one lesion"
    px = c.image.spacing[1]
    for les in lesions:
        z, y, x = les["center_zyx"]
        assert m[z, y, x] == VOC.id_of(les["organ"])  # inside its organ; the mask itself is unchanged
        assert max(cfg.lesion_diameter_mm[0], 1.5 * px) <= les["diameter_mm"] <= cfg.lesion_diameter_mm[1]
        core = organ(m, les["organ"])
        org = median(im, core if core.sum() >= 5 else organ(m, les["organ"], erode=False))
        assert abs(les["hu"] - org) >= 20
        if les["diameter_mm"] >= 2 * px - 0.5:  # big enough to measure on the image itself
            ball = _ball(c.image.shape, les["center_zyx"], c.image.spacing, les["diameter_mm"] / 3)
            inside = float(np.median(im[ball & (m == VOC.id_of(les["organ"]))]))
            if les["kind"] == "hyperenhancing":
                assert inside > org + 8
            else:
                assert inside < org - 8
        assert f"{les['diameter_mm']:.0f} mm" in c.report and les["location"] in c.report
        word = {"liver": "hepatic", "spleen": "spleen", "kidney_left": "left kidney", "kidney_right": "right kidney"}
        assert word[les["organ"]] in les["location"]
        assert np.allclose(les["center_ras_mm"], c.image.world(np.array([z, y, x], float)), atol=0.1)


def _ball(shape, c, spacing, r):
    zz, yy, xx = np.ogrid[:shape[0], :shape[1], :shape[2]]
    d2 = ((zz - c[0]) * spacing[0]) ** 2 + ((yy - c[1]) * spacing[1]) ** 2 + ((xx - c[2]) * spacing[2]) ** 2
    return d2 <= max(r, 0.5 * max(spacing)) ** 2


def test_report_structure_and_negatives():
    c, _ = case(1)
    r = c.report
    assert r.startswith("EXAMINATION:") and "\nFINDINGS:" in r and "\nIMPRESSION:" in r
    if not any(les["organ"] == "liver" for les in c.findings["lesions"]):
        assert "No focal hepatic lesion." in r or "No focal liver lesion." in r
    reports = {make_case("r", s).report.split("\n")[1] for s in range(6)}
    assert len(reports) == 6  # wording and content vary


def test_write_dataset_layout_and_idempotence(tmp_path):
    out = tmp_path / "ds"
    ids = write_dataset(out, n=3, seed=7, progress=False)
    assert ids == ["phantom_000", "phantom_001", "phantom_002"]
    for cid in ids:
        img = nib.load(out / "images" / f"{cid}.nii.gz")
        msk = nib.load(out / "masks" / f"{cid}.nii.gz")
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S") == nib.aff2axcodes(msk.affine)
        assert img.get_data_dtype() == np.int16 and msk.get_data_dtype() == np.uint8
        assert img.shape == msk.shape and np.allclose(img.affine, msk.affine)
        assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
        assert img.header.get_xyzt_units()[0] == "mm"
    # the file holds exactly make_case's volume, reoriented
    ref = make_case("phantom_001", case_seed(7, 1))
    img = nib.load(out / "images" / "phantom_001.nii.gz")
    assert np.array_equal(np.asarray(img.dataobj), ref.image.reorient(("R", "A", "S")).array)
    assert np.allclose(img.affine, ref.image.reorient(("R", "A", "S")).affine)

    with open(out / "reports.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["case"] for r in rows] == ids and all(r["report"].startswith("EXAMINATION:") for r in rows)
    findings = [json.loads(line) for line in (out / "findings.jsonl").read_text().splitlines()]
    assert [f["case"] for f in findings] == ids and all("contrast_phase" in f for f in findings)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["name"] == "tracect-phantom" and meta["vocabulary"] == "total" and meta["seed"] == 7
    split = meta["split"]
    assert sorted(sum(split.values(), [])) == ids and all(split[k] for k in ("train", "val", "test"))
    ds = load_dataset(out)  # the project's own reader accepts it
    assert [cs.case_id for cs in ds.cases] == ids and all(cs.report and cs.image and cs.mask for cs in ds.cases)

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")}
    csv_before = (out / "reports.csv").read_text()
    assert write_dataset(out, n=3, seed=7, progress=False) == ids
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")} == before
    assert (out / "reports.csv").read_text() == csv_before
    (out / "masks" / "phantom_002.nii.gz").unlink()  # an interrupted run is completed
    write_dataset(out, n=3, seed=7, progress=False)
    assert (out / "masks" / "phantom_002.nii.gz").is_file()
    assert not list(out.rglob(".*tmp*"))


@pytest.mark.parametrize("n", [1, 2, 3, 300])
def test_make_mask_any_length(n):
    m = make_mask(n, seed=3)
    assert m.shape == (n, 64, 64) and m.array.dtype == np.uint8 and m.is_canonical
    assert m.spacing == pytest.approx((4.0, 6.0, 6.0))
    VOC.check(m.array)
    if n == 300:
        assert len(np.unique(m.array)) > 60
    assert np.array_equal(m.array, make_mask(n, seed=3).array)


def test_anatomy_is_defined_in_millimetres():
    """Half the slice thickness, twice the slices: the same organs, at the same volume (mm^3)."""
    a = make_mask(140, seed=9, slice_thickness=4.0)
    b = make_mask(280, seed=9, slice_thickness=2.0)
    for name in ("liver", "lung_lower_lobe_right", "kidney_left", "vertebrae_L1"):
        va = (a.array == VOC.id_of(name)).sum() * 4.0
        vb = (b.array == VOC.id_of(name)).sum() * 2.0
        assert va > 0 and vb == pytest.approx(va, rel=0.12), name
