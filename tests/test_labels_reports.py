"""Vocabularies, remapping and report parsing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tracect.data.layout import DatasetError, default_split, load_dataset
from tracect.data.reports import ReportsError, read_reports
from tracect.io import read_mask
from tracect.labels.vocabulary import (COARSE_GROUPS, UnknownLabelsError, Vocabulary, build_remap, coarse,
                                       get_vocabulary, load_remap, total)


def test_total_vocabulary_matches_the_shared_label_table(real_dir):
    table = json.loads((real_dir / "labels_total.json").read_text())
    voc = total()
    assert len(voc.labels) == 117
    assert {str(k): v for k, v in voc.labels.items()} == table


def test_every_total_label_has_a_coarse_group():
    remap = build_remap(total(), coarse())
    unmapped = [total().labels[s] for s, t in remap.table.items() if t == 0]
    assert unmapped == []
    assert remap.table[total().id_of("lung_lower_lobe_left")] == coarse().id_of("lung")
    assert remap.table[total().id_of("vertebrae_L1")] == coarse().id_of("bone")
    assert set(coarse().labels.values()) == set(COARSE_GROUPS)


def test_remap_real_mask(real_dir):
    seg = read_mask(real_dir / "seg.nii.gz").array
    out = build_remap(total(), coarse())(seg)
    assert out.shape == seg.shape
    assert np.array_equal(out == coarse().id_of("liver"), seg == total().id_of("liver"))
    ribs = np.isin(seg, [total().id_of(f"rib_left_{i}") for i in range(1, 13)])
    assert np.all(out[ribs] == coarse().id_of("bone"))
    assert np.array_equal(out > 0, seg > 0)


def test_unknown_labels_are_reported_not_dropped():
    mask = np.array([[[0, 5, 200, 250]]], dtype=np.uint8)
    with pytest.raises(UnknownLabelsError) as err:
        build_remap(total(), coarse())(mask)
    assert err.value.ids == [200, 250]


def test_user_vocabulary_and_remap_files(tmp_path):
    (tmp_path / "v.json").write_text(json.dumps({"name": "mine", "labels": {"1": "liver", "2": "kidney_l",
                                                                           "3": "kidney_r"}}))
    voc = get_vocabulary(tmp_path / "v.json")
    assert voc.name == "mine" and voc.id_of("kidney_r") == 3
    (tmp_path / "r.json").write_text(json.dumps({"liver": ["liver"], "kidney": ["kidney_*"]}))
    remap = load_remap(tmp_path / "r.json", voc, coarse())
    out = remap(np.array([[[1, 2, 3, 0]]], np.uint8))
    assert out.tolist() == [[[coarse().id_of("liver"), coarse().id_of("kidney"), coarse().id_of("kidney"), 0]]]
    (tmp_path / "bad.json").write_text(json.dumps({"pancreatic_head": ["liver"]}))
    with pytest.raises(ValueError, match="not in vocabulary 'tracect'"):
        load_remap(tmp_path / "bad.json", voc, coarse())
    with pytest.raises(ValueError, match="unique"):
        Vocabulary("x", {1: "a", 2: "a"})


def test_remap_says_which_labels_were_merged_and_dropped():
    t = total()
    remap = build_remap(t, coarse())
    present = [0, t.id_of("liver"), t.id_of("kidney_left"), t.id_of("kidney_right"), t.id_of("spleen")]
    notes = remap.describe(present)
    assert len(notes) == 1 and "kidney <- kidney_right, kidney_left" in notes[0]  # in source id order
    assert "liver" not in notes[0] and "spleen" not in notes[0]  # same name in both: nothing merged
    assert remap.describe([0, t.id_of("liver")]) == []
    mine = Vocabulary("mine", {1: "liver", 2: "tumour_bed"})
    notes = build_remap(mine, coarse()).describe([1, 2])
    assert notes == ["labels with no place in vocabulary 'tracect' (dropped to background): tumour_bed"]


def test_tracect_fat_keeps_fat_apart_and_maps_back():
    """`tracect-fat` is `tracect` plus `fat` (ids of `tracect` unchanged): pseudo-labels' fat stays fat and
    soft tissue becomes body; a TotalSegmentator fat label is fat; to `tracect` fat folds into body."""
    tracect, fat, tissue = coarse(), get_vocabulary("tracect-fat"), get_vocabulary("tissue")
    assert {i: n for i, n in fat.labels.items() if n != "fat"} == dict(tracect.labels)
    names = lambda src, dst: {src.labels[s]: dst.labels.get(t, "background")  # noqa: E731
                              for s, t in build_remap(src, dst).table.items()}
    assert names(tissue, fat) == {"fat": "fat", "soft_tissue": "body", "lung": "lung", "gas": "bowel",
                                  "bone": "bone", "vessel": "aorta"}
    assert names(tissue, tracect)["fat"] == names(tissue, tracect)["soft_tissue"] == "body"
    assert names(fat, tracect) == {**{n: n for n in tracect.labels.values()}, "fat": "body"}
    assert names(tracect, fat) == {n: n for n in tracect.labels.values()}
    ts = Vocabulary("tissue_types", {1: "subcutaneous_fat", 2: "torso_fat", 3: "skeletal_muscle"})
    assert names(ts, fat) == {"subcutaneous_fat": "fat", "torso_fat": "fat", "skeletal_muscle": "muscle"}
    assert names(ts, tracect) == {"subcutaneous_fat": "body", "torso_fat": "body", "skeletal_muscle": "muscle"}
    t = total()  # the organs map as they do to tracect
    assert build_remap(t, fat).table == build_remap(t, tracect).table


def test_organ_folder_merges_to_the_multilabel_mask(tmp_path, real_dir):
    import nibabel as nib

    seg = read_mask(real_dir / "seg.nii.gz")
    folder = tmp_path / "segs"
    folder.mkdir()
    for i in np.unique(seg.array):
        if i:
            nib.save(nib.Nifti1Image((seg.array == i).astype(np.uint8), seg.affine),
                     str(folder / f"{total().labels[int(i)]}.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros(seg.shape, np.uint8), seg.affine), str(folder / "brain.nii.gz"))
    merged = read_mask(folder)
    assert merged.meta["format"] == "organ-folder" and merged.meta["overlap_voxels"] == 0
    assert np.array_equal(merged.array, seg.array) and np.allclose(merged.affine, seg.affine)
    nib.save(nib.Nifti1Image(np.zeros(seg.shape, np.uint8), seg.affine), str(folder / "tumour.nii.gz"))
    with pytest.raises(ValueError, match=r"\['tumour'\]"):
        read_mask(folder, strict=True)
    # without strict, a name of no task tracect knows is ignored, and said so
    merged = read_mask(folder)
    assert np.array_equal(merged.array, seg.array)
    assert merged.meta["organ_files"]["ignored"] == {"tumour": "no coarse label"}


def test_organ_folder_with_names_of_other_totalsegmentator_tasks(tmp_path, real_dir):
    """A TotalSegmentator output folder with files of its other tasks: named arteries fold into the
    coarse group of arteries (label `aorta` of `total`), liver segments into the liver, filling only
    unlabelled voxels; `body` has no label in `total` and is ignored; every file may be stored in
    another axis order of the same grid."""
    import nibabel as nib

    from tracect.io import Volume, write_volume
    from tracect.labels.vocabulary import build_remap, coarse

    seg = read_mask(real_dir / "seg.nii.gz")
    folder = tmp_path / "segs"
    folder.mkdir()
    for i in np.unique(seg.array)[1:]:
        nib.save(nib.Nifti1Image((seg.array == i).astype(np.uint8), seg.affine),
                 str(folder / f"{total().labels[int(i)]}.nii.gz"))
    aorta = seg.array == total().id_of("aorta")
    # a vessel branching off the aorta: the voxels in front of it, plus some aorta voxels
    trunk = np.roll(aorta, 3, axis=1) | aorta
    sma = np.roll(aorta, 6, axis=1) & ~trunk
    extra = {"celiac_trunk": trunk, "superior_mesenteric_artery": sma,
             "liver_segment_4": seg.array == total().id_of("liver"), "body": seg.array >= 0}
    for name, on in extra.items():  # stored in LAS, as TotalSegmentator writes
        write_volume(Volume(on.astype(np.uint8), seg.affine).reorient(("L", "A", "S")), folder / f"{name}.nii.gz")
    with pytest.raises(ValueError, match=r"\['body', 'celiac_trunk', 'liver_segment_4', 'superior_mesenteric_artery'\]"):
        read_mask(folder, strict=True)
    merged = read_mask(folder)
    files = merged.meta["organ_files"]
    assert files["merged"] == {"celiac_trunk": "aorta", "superior_mesenteric_artery": "aorta",
                               "liver_segment_4": "liver"}
    assert files["ignored"] == {"body": "vocabulary 'total' has no label of group 'body'"}
    assert any("celiac_trunk, superior_mesenteric_artery -> aorta" in n for n in merged.meta["notes"])
    assert any("body (vocabulary 'total' has no label" in n for n in merged.meta["notes"])
    # known organs keep every voxel; merged files only fill background
    labelled = seg.array > 0
    assert np.array_equal(merged.array[labelled], seg.array[labelled])
    new = (trunk | sma) & ~labelled
    assert new.any() and np.all(merged.array[new] == total().id_of("aorta"))
    assert np.all(merged.array[~labelled & ~new] == 0)
    # in the model's coarse vocabulary the arteries are arteries, and the body a body
    coarse_mask = read_mask(folder, coarse())
    coarse_files = coarse_mask.meta["organ_files"]
    assert coarse_files["merged"]["celiac_trunk"] == "aorta" and coarse_files["merged"]["kidney_left"] == "kidney"
    assert "body" not in coarse_files["merged"] and not coarse_files["ignored"]  # a label of `tracect`
    assert np.array_equal(build_remap(total(), coarse())(merged.array)[labelled], coarse_mask.array[labelled])
    # an organ file on another grid is refused with the offset
    shifted = seg.affine.copy()
    shifted[2, 3] += 6.0
    nib.save(nib.Nifti1Image(aorta.astype(np.uint8), shifted), str(folder / "aorta.nii.gz"))
    with pytest.raises(ValueError, match=r"aorta.nii.gz is not on the grid of .*6 mm apart"):
        read_mask(folder)


def test_ct_rate_reports(tmp_path):
    (tmp_path / "reports.csv").write_text(
        "VolumeName,ClinicalInformation_EN,Findings_EN,Impressions_EN\n"
        'train_1_a_1.nii.gz,x,"Liver normal.","No acute finding."\n'
        'train_2_a_1.nii.gz,x,"Cyst, 12 mm.",""\n', encoding="utf-8")
    reports = read_reports(tmp_path)
    assert reports == {"train_1_a_1": "FINDINGS: Liver normal.\nIMPRESSION: No acute finding.",
                       "train_2_a_1": "FINDINGS: Cyst, 12 mm."}


def test_case_report_csv_and_jsonl(tmp_path):
    (tmp_path / "reports.csv").write_text('case,report\nc1,"Fatty liver; ""quoted"" word."\n')
    assert read_reports(tmp_path) == {"c1": 'Fatty liver; "quoted" word.'}
    (tmp_path / "reports.csv").unlink()
    (tmp_path / "reports.jsonl").write_text('{"case": "c1", "report": "A"}\n\n{"case": "c2", "findings": "B"}\n')
    assert read_reports(tmp_path) == {"c1": "A", "c2": "FINDINGS: B"}


@pytest.mark.parametrize("content,match", [
    (b"case,report\nc1,\xff\xfe broken\n", "not UTF-8"),
    (b"name,text\nc1,x\n", "expected 'case,report'"),
    (b"case,report\nc1,a,extra\n", "more fields"),
    (b"case,report\nc1,a\nc1,b\n", "two different reports"),
])
def test_bad_reports_csv(tmp_path, content, match):
    (tmp_path / "reports.csv").write_bytes(content)
    with pytest.raises(ReportsError, match=match):
        read_reports(tmp_path)


def test_bad_reports_jsonl(tmp_path):
    (tmp_path / "reports.jsonl").write_text('{"case": "c1"}\n{not json\n')
    with pytest.raises(ReportsError, match=r"reports.jsonl:2: invalid JSON"):
        read_reports(tmp_path)


def test_dataset_split_and_layout(toy_dataset):
    ds = load_dataset(toy_dataset)
    assert [c.case_id for c in ds.cases] == ["case0", "case1", "case2"]
    assert all(c.split == default_split(c.case_id) for c in ds.cases)
    (toy_dataset / "dataset.json").write_text(json.dumps({"split": {"train": ["case0"], "val": ["case1"],
                                                                   "test": ["case2"]}}))
    assert [c.split for c in load_dataset(toy_dataset).cases] == ["train", "val", "test"]
    (toy_dataset / "dataset.json").write_text(json.dumps({"split": {"holdout": ["case0"]}}))
    with pytest.raises(DatasetError, match="unknown split"):
        load_dataset(toy_dataset)
    splits = [default_split(f"case{i}") for i in range(1000)]
    assert 0.7 < splits.count("train") / 1000 < 0.9
