"""``tracect label``: tissue pseudo-labels from HU, checked against the phantom's own tissue map and
against the real case's TotalSegmentator mask."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tracect.cli.main import main
from tracect.labels.pseudo import TISSUE, PseudoLabelConfig, fill_small_holes, pseudo_labels

ID = {name: i for i, name in TISSUE.labels.items()}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def phantom_case():
    """A non-contrast phantom torso at 128 px (about 3 mm pixels) with the tissue map it was drawn from."""
    from tracect.phantom import PhantomConfig
    from tracect.phantom.generator import simulate

    case, anat = simulate("p", 1002, PhantomConfig(size=128, slices=(60, 60), p_arterial=0.0))
    return case, anat


def test_phantom_body_lung_and_bone_agree_with_the_tissue_map(phantom_case):
    from tracect.phantom.geometry import Tissue as T

    case, anat = phantom_case
    labels, record = pseudo_labels(case.image.array, case.image.spacing)
    tissue = anat.tissue
    assert dice(labels > 0, tissue != T.AIR) >= 0.99
    assert dice(labels == ID["lung"], tissue == T.LUNG) >= 0.95
    # at 3 mm pixels a bone's blurred edge is part bone, part not
    assert dice(labels == ID["bone"], np.isin(tissue, [T.CANCELLOUS, T.CORTICAL])) >= 0.8
    assert record["ml"]["lung"] > 100 and any(c["lung"] for c in record["air_components"])
    # gas in bowel is not lung; fat is fat
    gas = tissue == T.GAS
    assert (labels[gas] == ID["lung"]).mean() < 0.05
    assert (labels[tissue == T.FAT] == ID["fat"]).mean() > 0.9


def test_scanner_padding_and_table_are_not_body(phantom_case):
    case, _ = phantom_case
    hu = case.image.array.astype(np.float32).copy()
    Z, Y, X = hu.shape
    ref, _ = pseudo_labels(hu, case.image.spacing)
    yy, xx = np.mgrid[:Y, :X]
    outside = (yy - Y / 2) ** 2 + (xx - X / 2) ** 2 > (0.49 * Y) ** 2
    hu[:, outside] = -3024.0  # the circular field of view's padding, as the CRLM scans store it
    table_row = int(np.nonzero((ref > 0).any((0, 2)))[0].max()) + 5  # a slab 15 mm below the back
    assert table_row + 3 <= Y
    hu[:, table_row:table_row + 3, 4:-4] = 150.0
    hu[:, table_row - 5:table_row, X // 2] = 0.0  # touching the skin through a 3 mm strap
    labels, _ = pseudo_labels(hu, case.image.spacing)
    assert not (labels[:, table_row:, :] > 0).any()
    assert dice(labels > 0, ref > 0) > 0.99


def test_marrow_filled_but_not_the_spinal_canal():
    ring = np.zeros((1, 40, 40), bool)
    yy, xx = np.mgrid[:40, :40]
    r = np.hypot(yy - 20, xx - 20)
    ring[0] = (r >= 6) & (r <= 8)
    hu = np.where(ring, 600.0, 0.0)
    fat_marrow = fill_small_holes(ring, 500, np.where(r < 6, -60.0, hu), (-30.0, 80.0))
    canal = fill_small_holes(ring, 500, np.where(r < 6, 20.0, hu), (-30.0, 80.0))
    assert fat_marrow[0, 20, 20] and not canal[0, 20, 20]
    assert not fill_small_holes(ring, 50)[0, 20, 20]  # too large a hole


def test_real_ct_lungs_and_organs(real_dir):
    """The real abdominal CT (3 mm pixels): lung bases as TotalSegmentator drew them; every organ
    inside the body; solid organs soft tissue, not air or bone."""
    from tracect.io import read_mask, read_volume
    from tracect.labels.vocabulary import coarse_group_of, total

    ct = read_volume(real_dir / "ct.nii.gz").canonical()
    mask = read_mask(real_dir / "seg.nii.gz").canonical().array
    labels, _ = pseudo_labels(ct.array, ct.spacing)
    groups = {i: coarse_group_of(n) for i, n in total().labels.items()}
    in_group = lambda g: np.isin(mask, [i for i, x in groups.items() if x == g])  # noqa: E731
    assert dice(labels == ID["lung"], in_group("lung")) >= 0.9
    assert (labels[mask > 0] > 0).mean() > 0.999
    for organ in ("liver", "spleen", "kidney", "muscle"):
        assert (labels[in_group(organ)] == ID["soft_tissue"]).mean() > 0.95, organ


def test_label_command_writes_mask_record_and_overlay(real_dir, tmp_path):
    from tracect.io import read_volume

    out = tmp_path / "pseudo.nii.gz"
    assert main(["label", str(real_dir / "ct.nii.gz"), "--out", str(out), "--overlay", str(tmp_path / "o.png")]) == 0
    ct, mask = read_volume(real_dir / "ct.nii.gz"), read_volume(out)
    assert mask.shape == ct.shape and np.allclose(mask.affine, ct.affine)  # the CT's own grid and axis order
    assert set(np.unique(mask.array)) <= {0, *TISSUE.ids}
    record = json.loads((tmp_path / "pseudo.json").read_text())
    assert record["vocabulary"]["name"] == "tissue" and record["config"] == PseudoLabelConfig().to_json()
    assert record["ml"]["body"] > 1000 and (tmp_path / "o.png").stat().st_size > 10_000
    assert main(["label", str(real_dir / "ct.nii.gz"), "--out", str(out)]) != 0  # no silent overwrite


def test_prepare_labels_cases_without_a_mask_from_hu(tmp_path, real_dir, capsys):
    """`prepare --pseudo-labels`: a CT without a mask is labelled from its HU and remapped to the model's
    vocabulary (fat and soft tissue -> body, gas -> bowel, vessel -> aorta); without the flag it is skipped."""
    from tracect.data.cache import PreparedCache
    from tracect.labels.vocabulary import coarse

    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "images" / "real.nii.gz").symlink_to(real_dir / "ct.nii.gz")  # no mask for it
    assert main(["prepare", str(ds), "--out", str(tmp_path / "skip"), "--size", "32", "--quiet"]) == 2
    assert "prepare --pseudo-labels" in capsys.readouterr().out
    assert main(["prepare", str(ds), "--out", str(tmp_path / "c"), "--size", "32", "--quiet",
                 "--pseudo-labels"]) == 0
    cache = PreparedCache(tmp_path / "c")
    (meta,) = cache.cases
    assert meta["labels"]["kind"] == "pseudo" and meta["labels"]["ml"]["lung"] > 100
    assert any("tissue pseudo-labels" in w for w in meta["warnings"])
    assert any("body <- fat, soft_tissue" in n for n in meta["labels"]["remap"])
    mask, body = np.asarray(cache.case(0).mask), np.asarray(cache.case(0).body) > 0
    names = {coarse().labels[int(i)] for i in np.unique(mask) if i}
    assert {"body", "lung", "bone"} <= names <= {"body", "lung", "bone", "bowel", "aorta"}
    assert np.array_equal(mask > 0, body)  # every body voxel labelled, nothing outside it


def test_prepare_mixes_a_labelled_and_an_unlabelled_dataset_in_one_cache(tmp_path, real_dir, capsys):
    """`prepare A B --pseudo-labels`: a dataset with TotalSegmentator masks and one with a bare CT go into
    one cache, each through its own vocabulary; a case id in both is refused before any work."""
    import json as _json

    from tracect.data.cache import PreparedCache
    from tracect.labels.vocabulary import coarse

    from conftest import link_real_case

    labelled = link_real_case(tmp_path / "labelled", real_dir, case="ts")
    (labelled / "dataset.json").write_text(_json.dumps({"vocabulary": "total", "split": {"train": ["ts"]}}))
    bare = tmp_path / "bare"
    (bare / "images").mkdir(parents=True)
    (bare / "images" / "real.nii.gz").symlink_to(real_dir / "ct.nii.gz")
    (bare / "dataset.json").write_text(_json.dumps({"split": {"test": ["real"]}}))
    out = tmp_path / "c"
    assert main(["prepare", str(labelled), str(bare), "--out", str(out), "--size", "32", "--quiet",
                 "--pseudo-labels"]) == 0
    cache = PreparedCache(out)
    kinds = {m["case"]: (m["labels"]["kind"], m["split"]) for m in cache.cases}
    assert kinds == {"ts": ("mask", "train"), "real": ("pseudo", "test")}
    names = {c: {coarse().labels[int(i)] for i in np.unique(np.asarray(cache.case(cache.index_of(c)).mask)) if i}
             for c in kinds}
    assert {"liver", "spleen", "kidney"} <= names["ts"]  # organs from the mask
    assert not names["real"] & {"liver", "spleen", "kidney"} and "lung" in names["real"]  # HU classes only
    manifest = _json.loads((out / "manifest.json").read_text())
    assert [d["cases"] for d in manifest["datasets"]] == [["ts"], ["real"]]
    # train.pseudo_window_repeat: the pseudo-labelled case's windows listed that many times, after all
    # windows once and in order; the labelled case's windows once
    from tracect.data.windows import FrameWindows

    once = FrameWindows(cache, k=2, split=None)
    thrice = FrameWindows(cache, k=2, split=None, pseudo_repeat=3)
    real_id = cache.index_of("real")
    n_real = int((once.index[:, 0] == real_id).sum())
    assert n_real > 0 and list(thrice.pseudo_cases()) == [real_id]
    assert len(thrice) == len(once) + 2 * n_real and np.array_equal(thrice.index[:len(once)], once.index)
    assert set(thrice.index[len(once):, 0].tolist()) == {real_id}
    with pytest.raises(ValueError, match="pseudo_repeat"):
        FrameWindows(cache, k=2, split=None, pseudo_repeat=0)
    # the same id in two datasets: refused, nothing prepared
    (bare / "images" / "ts.nii.gz").symlink_to(real_dir / "ct.nii.gz")
    assert main(["prepare", str(labelled), str(bare), "--out", str(tmp_path / "d"), "--size", "32",
                 "--quiet", "--pseudo-labels"]) != 0
    assert "unique across the datasets" in "".join(capsys.readouterr())
    assert not (tmp_path / "d" / "cases").exists()


def test_the_unlabelled_ct_workflow_of_the_docs(tmp_path, real_dir, capsys):
    """docs/data.md's path for a folder of unlabelled CT, command by command at toy size: prepare a labelled
    and an unlabelled dataset into one `tracect-fat` cache, train (the preset grows a class for `fat`),
    label the held-out CT, generate from its labels, evaluate against it."""
    import json as _json

    from tracect.labels.vocabulary import get_vocabulary

    from conftest import link_real_case

    labelled = link_real_case(tmp_path / "labelled", real_dir, case="ts")
    mycts = tmp_path / "mycts"
    (mycts / "images").mkdir(parents=True)
    (mycts / "images" / "patient06.nii.gz").symlink_to(real_dir / "ct.nii.gz")
    (mycts / "dataset.json").write_text(_json.dumps({"split": {"test": ["patient06"]}}))
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert main(["prepare", str(labelled), str(mycts), "--pseudo-labels", "--vocabulary", "tracect-fat",
                 "--size", "16", "--out", str(cache), "--quiet"]) == 0
    assert main(["train", "--config", "tiny", "--data", str(cache), "--out", str(run), "--max-steps", "2",
                 "--max-minutes", "none", "--quiet"]) == 0
    assert "model.num_classes 17 -> 18 for the cache's vocabulary 'tracect-fat'" in capsys.readouterr().err
    config = _json.loads((run / "config.json").read_text())
    assert config["model"]["num_classes"] == 18 and config["train"]["max_minutes"] is None
    labels = tmp_path / "labels" / "patient06.nii.gz"
    assert main(["label", str(mycts / "images" / "patient06.nii.gz"), "--out", str(labels)]) == 0
    out = tmp_path / "generated" / "patient06.nii.gz"
    assert main(["generate", "--checkpoint", str(run), "--mask", str(labels), "--vocabulary", "tissue",
                 "--report", "EXAMINATION: Non-contrast CT of the abdomen.", "--keep-grid", "--no-pictures",
                 "--steps", "2", "--out", str(out), "--quiet"]) == 0
    sidecar = _json.loads(out.with_name("patient06.json").read_text())
    used = next(n for n in sidecar["notes"] if n.startswith("labels used"))
    assert "fat" in used and "body" in used  # the pseudo-labels' fat reaches the model as its own class
    assert get_vocabulary("tracect-fat").id_of("fat") == 17
    assert main(["evaluate", "--generated", str(out.parent), "--reference", str(mycts), "--out",
                 str(tmp_path / "evaluation"), "--no-html"]) == 0
    (case,) = _json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["cases"]
    assert case["reference"].endswith("patient06.nii.gz") and case["tissue_w1"]["fat"] is not None
    assert 0 < case["tissue_w1_mean"] < 2000
