"""Evaluation harness: every metric on constructed cases with known answers, and the controls."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tracect.evaluate import metrics as M
from tracect.evaluate.adherence import findings_from_report
from tracect.evaluate.entries import EvaluationError, collect_entries
from tracect.evaluate.harness import evaluate
from tracect.io import Volume, read_volume
from tracect.io.readers import write_volume


# ----------------------------------------------------------------------------- metric functions


def test_dice_and_hd95_known_answers():
    a = np.zeros((10, 20, 20), bool)
    a[2:8, 5:15, 5:15] = True
    b = np.roll(a, 2, axis=2)  # shifted by 2 voxels along x
    assert M.dice(a, a) == 1.0
    assert M.dice(a, b) == pytest.approx(2 * 6 * 10 * 8 / (2 * 600))
    assert np.isnan(M.dice(a & False, b & False))  # nothing to agree on: undefined, never 0 or 1
    assert M.hd95(a, a, (1, 1, 1)) == 0.0
    assert M.hd95(a, b, (1, 1, 1)) == pytest.approx(2.0)
    assert M.hd95(a, b, (1, 1, 3)) == pytest.approx(6.0)  # mm, from the spacing
    assert np.isnan(M.hd95(a, a & False, (1, 1, 1)))
    labels = a.astype(np.uint8) * 3
    d, h, missed = M.per_organ_overlap(np.zeros_like(labels), labels, {3: "liver"}, (1, 1, 1))
    assert d["liver"] == 0 and missed == ["liver"]
    assert h["liver"] == pytest.approx(np.sqrt(10 ** 2 + 20 ** 2 + 20 ** 2))  # a miss is the worst distance


def test_auroc_ci_frechet_ms_ssim_known_answers():
    assert M.auroc([3, 4, 1, 2], [1, 1, 0, 0]) == 1.0
    assert M.auroc([1, 2, 3, 4], [1, 1, 0, 0]) == 0.0
    assert M.auroc([1, 1], [1, 0]) == 0.5
    assert np.isnan(M.auroc([1, 2], [1, 1]))
    ci = M.mean_ci([1.0, 2.0, 3.0, float("nan"), None])
    assert ci["mean"] == 2.0 and ci["n"] == 3 and ci["ci95"][0] <= 2.0 <= ci["ci95"][1]
    assert M.mean_ci([])["n"] == 0 and np.isnan(M.mean_ci([])["mean"])
    assert np.isnan(M.mean_ci([5.0])["ci95"][0])  # one value: no interval, not a zero-width one
    # volumes of one mask are one cluster: two masks give a wider interval than four independent values
    flat = M.mean_ci([1.0, 1.2, 3.0, 3.2])
    clustered = M.mean_ci([1.0, 1.2, 3.0, 3.2], groups=["a", "a", "b", "b"])
    assert clustered["mean"] == flat["mean"]
    assert clustered["ci95"][1] - clustered["ci95"][0] > flat["ci95"][1] - flat["ci95"][0]
    rng = np.random.default_rng(0)
    f = rng.normal(size=(500, 4))
    assert M.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)
    assert M.frechet_distance(f, f + 3.0) == pytest.approx(4 * 9.0, rel=1e-3)  # |mean shift|^2
    img = rng.uniform(-1, 1, (64, 64))
    assert M.ms_ssim2d(img, img) == pytest.approx(1.0)
    assert M.ms_ssim2d(img, rng.uniform(-1, 1, (64, 64))) < 0.3
    assert M.ssim2d(img, img) == pytest.approx(1.0)


def test_t_intervals_hold_their_level_for_four_masks_where_a_percentile_bootstrap_does_not():
    """Coverage by simulation: 95% intervals of the mean of 4 normal values. Student's t covers the
    true mean about 95% of the time; the percentile bootstrap the harness used before, about 75%."""
    rng = np.random.default_rng(0)
    data = rng.normal(0.0, 1.0, (2000, 4))
    t_cover = np.mean([lo <= 0.0 <= hi for lo, hi in (M.t_interval(d) for d in data)])
    boot = rng.integers(0, 4, (500, 4))
    b_cover = np.mean([np.quantile(d[boot].mean(1), 0.025) <= 0.0 <= np.quantile(d[boot].mean(1), 0.975)
                       for d in data[:600]])
    assert 0.93 <= t_cover <= 0.97 and b_cover < 0.85


def test_paired_difference_and_intervals_over_masks_known_answers():
    a = {"m1": 0.5, "m2": 0.6, "m3": 0.7, "m4": None}
    b = {"m1": 0.4, "m2": 0.4, "m3": 0.4, "m5": 0.9}
    d = M.paired_difference(a, b)
    assert d["n"] == 3 and d["mean"] == pytest.approx(0.2)
    half = 4.302652729911275 * 0.1 / np.sqrt(3)  # t(0.975, 2) x sd of (0.1, 0.2, 0.3) / sqrt(3)
    assert d["ci95"] == pytest.approx([0.2 - half, 0.2 + half])
    one = M.paired_difference({"m1": 1.0}, {"m1": 0.5})
    assert one["n"] == 1 and one["mean"] == 0.5 and np.isnan(one["ci95"][0])  # one mask: no interval
    # volumes of one mask are one unit; the mean weighs masks equally
    ci = M.mean_ci([1.0, 3.0, 2.0], groups=["a", "a", "b"])
    assert ci["n"] == 2 and ci["values"] == 3 and ci["mean"] == pytest.approx(2.0)


def test_coherence_yardsticks_known_answers():
    z = np.arange(40, dtype=np.float32)[:, None, None]
    body = np.ones((40, 16, 16), bool)
    ramp = np.broadcast_to(z * 5.0, (40, 16, 16)).copy()  # +5 HU a slice
    assert M.adjacent_abs_diff(ramp, body) == pytest.approx(5.0)
    assert M.adjacent_abs_diff(np.zeros_like(ramp), body) == 0.0
    rng = np.random.default_rng(0)
    flicker = rng.normal(0, 1, (40, 16, 16))  # independent slices: white along z, half the power up high
    smooth = np.broadcast_to(np.sin(z / 6.0), (40, 16, 16)).copy()  # slow change: almost none up high
    assert 0.4 < M.through_plane_hf(flicker, body) < 0.6 and M.through_plane_hf(smooth, body) < 0.01
    assert np.isnan(M.through_plane_hf(flicker[:4], body[:4]))  # too few slices to say


def test_inplane_sharpness_known_answers():
    """A volume against itself scores 1; blurred in-plane, or made on a coarse grid and blown up, far
    less; the body's box is what counts (the air around it does not)."""
    from scipy.ndimage import gaussian_filter, zoom

    rng = np.random.default_rng(0)
    real = rng.normal(0, 30, (6, 64, 64)).astype(np.float32) + 40
    body = np.zeros(real.shape, bool)
    body[:, 8:56, 8:56] = True
    blurred = gaussian_filter(real, (0, 1.5, 1.5))
    coarse = zoom(zoom(real, (1, 0.25, 0.25), order=1), (1, 4, 4), order=1)
    assert M.inplane_hf_ratio(real, real, body) == pytest.approx(1.0)
    assert M.inplane_hf_ratio(blurred, real, body) < 0.05 and M.inplane_hf_ratio(coarse, real, body) < 0.1
    noisy_air = real.copy()
    noisy_air[:, :4] += rng.normal(0, 500, (6, 4, 64))  # outside the body's box: not counted
    assert M.inplane_hf_ratio(noisy_air, real, body) == pytest.approx(1.0)
    assert np.isnan(M.inplane_hf_ratio(real, real, np.zeros_like(body)))


def test_tissue_distances_known_answers():
    """Wasserstein-1 from quantiles: 0 for the same values, the shift for shifted ones, the spread for a
    point mass against a uniform; a tissue a volume lacks gives no figure."""
    from tracect.evaluate import realism
    from tracect.labels.pseudo import TISSUE

    ids = {n: i for i, n in TISSUE.labels.items()}
    rng = np.random.default_rng(0)
    tissues = np.zeros((4, 32, 32), np.uint8)
    tissues[:, :, :16] = ids["fat"]
    tissues[:, :, 16:] = ids["soft_tissue"]
    hu = np.where(tissues == ids["fat"], -100.0, 40.0) + rng.normal(0, 10, tissues.shape)
    q = realism.tissue_quantiles(hu, tissues)
    assert q["lung"] is None and q["bone"] is None and q["fat"].shape == (1000,)
    assert realism.tissue_distances(q, q)["fat"] == 0.0
    d = realism.tissue_distances(realism.tissue_quantiles(hu + 30.0, tissues), q)
    assert d["fat"] == pytest.approx(30.0) and d["soft_tissue"] == pytest.approx(30.0) and d["lung"] is None
    assert realism.mean_distance(d) == pytest.approx(30.0)
    flat = np.where(tissues == ids["fat"], -100.0, 40.0)  # a point mass against N(-100, 10): E|X - mu|
    w = realism.tissue_distances(realism.tissue_quantiles(flat, tissues), q)["fat"]
    assert w == pytest.approx(10.0 * np.sqrt(2 / np.pi), rel=0.1)


def test_soft_tissue_texture_known_answers():
    """Patches wholly inside soft tissue only; the same noise scores 1, a smoothed copy less, more noise
    more; the fat next to it (and its edge) does not count; too little soft tissue gives no figure."""
    from scipy import ndimage

    from tracect.evaluate import realism
    from tracect.labels.pseudo import TISSUE

    ids = {n: i for i, n in TISSUE.labels.items()}
    rng = np.random.default_rng(1)
    tissues = np.full((4, 32, 32), ids["fat"], np.uint8)
    tissues[:, :, 12:] = ids["soft_tissue"]
    corners = realism.tissue_patches(tissues)
    assert corners and all(x >= 12 for _, _, x in corners)  # none straddles the fat
    real = np.where(tissues == ids["fat"], -100.0, 40.0) + rng.normal(0, 15, tissues.shape)
    assert realism.tissue_hf_ratio(real, real, tissues) == pytest.approx(1.0)
    smooth = ndimage.gaussian_filter(real, (0, 1.5, 1.5))
    assert realism.tissue_hf_ratio(smooth, real, tissues) < 0.2
    assert realism.tissue_hf_ratio(real + rng.normal(0, 15, real.shape), real, tissues) > 1.5
    # a smoothed fat region changes nothing: only soft tissue is looked at
    fat_smoothed = np.where(tissues == ids["fat"], smooth, real)
    assert realism.tissue_hf_ratio(fat_smoothed, real, tissues) == pytest.approx(1.0)
    little = np.full_like(tissues, ids["fat"])
    little[0, :8, :8] = ids["soft_tissue"]  # one patch: below MIN_PATCHES
    assert realism.tissue_hf_ratio(real, real, little) is None


def test_memorisation_ncc_finds_a_copied_slice():
    rng = np.random.default_rng(1)
    vol = rng.uniform(-1, 1, (6, 64, 64)).astype(np.float32)
    body = np.ones_like(vol, bool)
    bank = M.slice_signatures(vol, body)
    same = M.nearest_ncc(M.slice_signatures(vol[:2] * 0.5 + 0.1, body[:2]), bank)  # affine copies
    other = M.nearest_ncc(M.slice_signatures(rng.uniform(-1, 1, (2, 64, 64)), body[:2]), bank)
    assert np.allclose(same, 1.0, atol=1e-5) and (other < 0.5).all()


def test_findings_are_read_from_phantom_reports():
    from tracect.phantom.reports import write_report

    base = {"contrast_phase": "arterial", "fatty_liver": True, "body_region": "abdomen",
            "structures": ["liver", "spleen", "kidney_left", "aorta"], "slice_thickness_mm": 3.0,
            "lesions": [{"organ": "kidney_left", "location": "upper pole of the left kidney", "kind": "cyst",
                         "diameter_mm": 18.0}]}
    for seed in range(5):
        f = findings_from_report(write_report(base, np.random.default_rng(seed)))
        assert f == {"contrast_phase": "arterial", "fatty_liver": True, "lesion_organs": ["kidney"]}
        neg = dict(base, contrast_phase="non-contrast", fatty_liver=False, lesions=[])
        assert findings_from_report(write_report(neg, np.random.default_rng(seed))) == \
            {"contrast_phase": "non-contrast", "fatty_liver": False, "lesion_organs": []}


# ----------------------------------------------------------------------------- the harness


@pytest.fixture(scope="module")
def real_eval(tmp_path_factory, real_dir):
    """The real case prepared at 32 px (the segmenter down-samples 4 times), a segmenter trained briefly on it, and a work folder."""
    from tracect.data.prepare import PrepareConfig, prepare_dataset
    from tracect.evaluate.segmenter import SegmenterConfig, train_segmenter

    from conftest import link_real_case

    root = tmp_path_factory.mktemp("eval")
    ds = link_real_case(root / "ds", real_dir)
    prepare_dataset(ds, root / "cache", PrepareConfig(size=32), progress=False)
    seg_dir = root / "seg"
    train_segmenter(root / "cache", seg_dir, SegmenterConfig(size=32, features=(8, 8, 8, 16, 16, 8), max_steps=30,
                                                             batch_size=8, max_minutes=None), progress=False, log=None)
    return {"root": root, "ds": ds, "cache": root / "cache", "seg": seg_dir, "ct": real_dir / "ct.nii.gz",
            "mask": real_dir / "seg.nii.gz"}


def _manifest(folder, lines):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _variant(real_eval, name, fn):
    """A copy of the real CT changed by ``fn`` (canonical array -> array), written beside the others."""
    ct = read_volume(real_eval["ct"])
    can = ct.canonical()
    out = real_eval["root"] / "vols" / f"{name}.nii.gz"
    out.parent.mkdir(exist_ok=True)
    write_volume(Volume(fn(can.array.astype(np.float32)).astype(np.int16), can.affine), out)
    return out


def _evaluate_one(real_eval, name, fn, **kw):
    vol = _variant(real_eval, name, fn)
    root = real_eval["root"]
    man = _manifest(root / name, [{"name": name, "generated": str(vol), "mask": str(real_eval["mask"]),
                                   "reference": str(real_eval["ct"])}])
    entries = collect_entries(man, allow_absolute=True)
    return evaluate(entries, root / name / "report", segmenter=real_eval["seg"], html=False, progress=False,
                    log=None, training_cache=real_eval["cache"], **kw)


def test_controls_move_the_metrics_the_expected_way(real_eval):
    same = _evaluate_one(real_eval, "copy", lambda a: a)
    c = same["cases"][0]
    # a volume against itself: Dice equals the segmenter's own agreement on the real CT, no flow error
    assert c["dice"] == c["dice_reference"] and len(c["dice"]) >= 5
    assert c["flow_epe_px"] == pytest.approx(0.0, abs=1e-6)
    assert c["warp_error"] == pytest.approx(c["warp_error_reference"], abs=1e-9)
    assert c["hu_abs_error_mean"] == pytest.approx(0.0, abs=1.0)
    assert c["inplane_hf_ratio"] == pytest.approx(1.0)
    assert c["tissue_w1_mean"] == pytest.approx(0.0, abs=1e-6)
    assert c["soft_tissue_hf_ratio"] == pytest.approx(1.0)
    # the example is stored at 3 mm: its grid cannot hold the fine-texture band, and the note says so
    assert c["fine_texture_ratio"] is None and any("cannot resolve" in n for n in c["notes"])
    # at 32 px (~10 mm pixels) the blurred cortex drops below the bone rule's threshold: no bone region here
    assert {t for t, v in c["tissue_w1"].items() if v is not None} >= {"fat", "soft_tissue", "lung"}

    rng = np.random.default_rng(0)
    shuffled = _evaluate_one(real_eval, "shuffled", lambda a: a[rng.permutation(len(a))])
    s = shuffled["cases"][0]
    assert s["flow_epe_px"] > 0.5  # px on a 32 px grid
    assert s["warp_error"] > c["warp_error"] + 0.1
    assert s["ssim_mean"] < c["ssim_mean"] - 0.05

    shifted = _evaluate_one(real_eval, "shifted", lambda a: a + 100.0)
    h = shifted["cases"][0]
    soft = [o for o, v in h["hu"].items() if o not in ("bone", "other") and v["reference_median"] is not None
            and v["reference_median"] < 800]
    assert len(soft) >= 4
    for o in soft:
        assert h["hu"][o]["median"] - h["hu"][o]["reference_median"] == pytest.approx(100.0, abs=2.0)
    assert h["flow_epe_px"] < 0.3  # a uniform shift is not incoherence
    for t, w in h["tissue_w1"].items():  # every tissue's distribution moved by 100 HU
        assert w is None or w == pytest.approx(100.0, abs=2.0), t
    assert h["soft_tissue_hf_ratio"] == pytest.approx(1.0, abs=0.02)  # a shift is no texture

    # memorisation: the real case was in the segmenter's (training) cache, so its slices are "copies"
    assert same["privacy"]["generated"]["fraction_above_threshold"] > 0.9
    assert same["distribution"]["feature_extractor"] == "segmenter-encoder"
    assert same["distribution"]["fd_axial"] == pytest.approx(0.0, abs=1e-6)
    assert shuffled["distribution"]["fd_coronal"] > 0.0


def test_a_volume_smoothed_along_z_scores_worse_than_the_real_one(real_eval):
    """Smoothing the real CT along z games the warping error and SSIM along z (fewer changes between
    neighbours look "coherent"); the yardsticks beside them show it as too little change and too little
    through-plane detail, where the real CT scores exactly its own values."""
    from scipy.ndimage import gaussian_filter1d

    real = _evaluate_one(real_eval, "copy_z", lambda a: a)["cases"][0]
    smooth = _evaluate_one(real_eval, "z_smoothed", lambda a: gaussian_filter1d(a, sigma=1.5, axis=0))["cases"][0]
    assert real["adjacent_dhu_ratio"] == pytest.approx(1.0) and real["z_hf_ratio"] == pytest.approx(1.0)
    assert real["flow_epe_px"] == pytest.approx(0.0, abs=1e-6)
    # what the old figures alone would have called a win
    assert smooth["warp_error"] < real["warp_error"] and smooth["ssim_mean"] > real["ssim_mean"]
    # what the yardsticks say: far less change between neighbours and almost no through-plane detail
    assert smooth["adjacent_dhu_ratio"] < 0.75 and smooth["z_hf_ratio"] < 0.5
    # flow EPE barely sees it (the flows of a blurred stack point the same way): why the yardsticks exist
    assert 0 < smooth["flow_epe_px"] < 0.2
    # the frozen-volume EPE is the real CT's own motion, a yardstick every volume of this mask shares
    assert smooth["flow_epe_frozen_px"] == pytest.approx(real["flow_epe_frozen_px"]) and real["flow_epe_frozen_px"] > 0.05


def test_evaluation_is_deterministic_and_renders(real_eval, tmp_path):
    a = _evaluate_one(real_eval, "det_a", lambda x: x + 50.0)
    b = _evaluate_one(real_eval, "det_b", lambda x: x + 50.0)
    for k in ("aggregate", "distribution", "privacy", "adherence"):
        assert a[k] == b[k], k
    ra, rb = dict(a["cases"][0]), dict(b["cases"][0])
    for r in (ra, rb):
        r.pop("case"), r.pop("generated")
    assert ra == rb


def test_missing_components_say_why(real_eval, tmp_path):
    vol = _variant(real_eval, "plain", lambda a: a)
    man = _manifest(tmp_path, [{"generated": str(vol), "mask": str(real_eval["mask"])}])
    with pytest.raises(Exception, match="absolute"):
        collect_entries(man)  # manifest paths stay inside its folder unless allowed
    m = evaluate(collect_entries(man, allow_absolute=True), tmp_path / "r", segmenter=None, html=False,
                 progress=False, log=None)
    c = m["cases"][0]
    assert c["dice_mean"] is None and c["flow_epe_px"] is None
    assert any("no segmenter" in n for n in c["notes"]) and any("no reference" in n for n in c["notes"])
    assert "no feature extractor" in m["distribution"]["note"]
    assert "no training cache" in m["privacy"]["note"]
    assert "no two volumes" in m["diversity"]["note"]
    with pytest.raises(EvaluationError, match="never downloads"):
        evaluate(collect_entries(man, allow_absolute=True), tmp_path / "r2", features=str(tmp_path / "none.pt"),
                 html=False, progress=False, log=None)
    from tracect.evaluate.external import TotalSegmentatorSegmenter
    import shutil

    if shutil.which("TotalSegmentator") is None:
        with pytest.raises(EvaluationError, match="not installed"):
            TotalSegmentatorSegmenter()
    with pytest.raises(EvaluationError, match="no generated volumes"):
        collect_entries(tmp_path / "r")


def test_torchscript_features_are_pluggable(real_eval, tmp_path):
    import torch

    class Tiny(torch.nn.Module):
        def forward(self, x):
            return torch.stack([x.mean((1, 2, 3)), x.std((1, 2, 3))], 1)

    path = tmp_path / "inception_like.pt"
    torch.jit.script(Tiny()).save(str(path))
    m = _evaluate_one(real_eval, "ts", lambda a: a, features=str(path))
    assert m["feature_extractor"]["name"] == "inception" and "local file" in m["feature_extractor"]["note"]
    assert m["distribution"]["fd_axial"] == pytest.approx(0.0, abs=1e-8)


def test_cli_evaluates_generated_folder_with_html(real_eval, tmp_path):
    """End to end: a tiny model generates two seeds of one mask; `tracect evaluate` writes both files."""
    from tracect.cli.main import main
    from tracect.config import load_config
    from tracect.train.trainer import Trainer

    run = tmp_path / "run"
    Trainer(load_config("tiny").replace(model={"image_size": 32}, train={"max_steps": 2}), real_eval["cache"], run, progress=False).fit()
    gen_dir = tmp_path / "gen"
    for seed in (0, 1):
        assert main(["generate", "--checkpoint", str(run), "--mask", str(real_eval["mask"]), "--seed", str(seed),
                     "--steps", "2", "--out", str(gen_dir / f"s0011__seed{seed}.nii.gz"), "--no-pictures"]) == 0
    out = tmp_path / "report"
    assert main(["evaluate", "--generated", str(gen_dir), "--reference", str(real_eval["ds"]),
                 "--segmenter", str(real_eval["seg"]), "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["cases"]) == 2 and all(c["reference"] for c in m["cases"])  # matched by name
    assert m["diversity"]["pairs"] == 1 and 0 < m["diversity"]["ms_ssim"]["mean"] < 1
    assert m["privacy"]["training_slices"] > 0  # found through the checkpoint's data.json
    assert m["adherence"]["real"] is not None
    html = (out / "report.html").read_text()
    assert "segmenter-encoder" in html and "s0011__seed1" in html
