"""Generation: geometry of the output, any length, determinism, masks users have, both modes."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from tracect.cli.main import main
from tracect.generate.masks import MaskError
from tracect.generate.pipeline import Generator
from tracect.generate.strategies import window_starts
from tracect.io import Volume, read_volume
from tracect.labels.vocabulary import total

from test_io_geometry import make_affine


def test_window_starts_cover_every_slice_with_overlap():
    for Z in (1, 2, 3, 7, 50):
        for K, o in ((2, 1), (3, 1), (3, 2), (4, 2)):
            starts = window_starts(Z, K, o)
            covered = set()
            for i, s in enumerate(starts):
                covered |= set(range(s, min(s + K, Z)))
                if i:
                    assert starts[i - 1] + K - s >= o  # overlaps the previous window
            assert covered == set(range(Z))


@pytest.mark.parametrize("affine", [np.diag([3.0, 3.0, 3.0, 1.0]), np.diag([-3.0, -3.0, 3.0, 1.0]),
                                    np.diag([-3.0, 3.0, 3.0, 1.0]),
                                    make_affine((1, 0, 2), (1, 0, 0), (2.5, 3.2, 3.0), (0.1, -0.05, 0.2),
                                                (20, -30, 40))],
                         ids=["RAS", "LPS", "LAS", "oblique"])
def test_output_is_on_the_mask_grid(gen, real_mask, affine):
    mask = Volume(real_mask.array, affine)
    result = gen.generate(mask, "CT of the upper abdomen.", seed=0)
    assert result.ct.shape == mask.shape
    assert np.allclose(result.ct.affine, mask.affine)
    assert result.ct.array.dtype == np.int16
    # air outside the body, tissue inside the liver: still HU after the trip through the model grid
    assert np.median(result.ct.array[real_mask.array == 0]) < 0
    assert -1024 <= result.ct.array.min() and result.ct.array.max() <= 3071


@pytest.mark.parametrize("n", [1, 2, 3, 4, 90])
def test_any_number_of_slices(gen, real_mask, n):
    src = real_mask.canonical()
    reps = -(-n // src.shape[0])
    arr = np.concatenate([src.array] * reps)[:n]
    mask = Volume(arr, src.affine)
    for mode in ("sequential", "parallel"):
        result = gen.generate(mask, "", seed=1, mode=mode, steps=2)
        assert result.ct.shape == mask.shape and np.allclose(result.ct.affine, mask.affine)
        assert result.canonical.shape[0] == n


def test_deterministic_under_a_seed(gen, real_mask):
    a = gen.generate(real_mask, "report", seed=7, steps=3).ct.array
    b = gen.generate(real_mask, "report", seed=7, steps=3).ct.array
    c = gen.generate(real_mask, "report", seed=8, steps=3).ct.array
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("warmup", [0, 5, 16])
def test_burn_in_runs_through_the_mirrored_top_slices_then_forwards(gen, real_mask, warmup):
    """The chain visits mask slices B, B-1, ..., 1, 0, 1, ..., Z-1 (one window per step of that order),
    each window after the first continuing from a generated slice, and the B burn-in slices are dropped."""
    src = real_mask.canonical()
    mask = Volume(np.concatenate([src.array] * 2)[:40], src.affine)
    calls = []
    original = gen.model.forward

    def spy(x, t, m, tokens, pooled, geometry=None, known=None, known_values=None, flow=None, *findings):
        calls.append((geometry[0, 2].item(), None if known is None else known[0].tolist()))
        return original(x, t, m, tokens, pooled, geometry, known, known_values, flow, *findings)

    gen.model.forward = spy
    try:
        r = gen.generate(mask, "", seed=0, steps=1, guidance=1.0, warmup=warmup)
    finally:
        del gen.model.forward
    Z = r.canonical.shape[0]
    B = min(warmup, Z - 1)
    order = list(range(B, 0, -1)) + list(range(Z - 1))  # mask slice of each window's first frame
    assert r.info["warmup"] == B and r.info["windows"] == len(order) == len(calls)
    assert [round(p * (Z - 1)) for p, _ in calls] == order
    assert calls[0][1] == [False, False] and all(k == [True, False] for _, k in calls[1:])
    # the plain start (warmup 0) is what the burn-in replaces; the kept slices differ
    if warmup:
        plain = gen.generate(mask, "", seed=0, steps=1, guidance=1.0, warmup=0)
        assert plain.ct.shape == r.ct.shape and not np.array_equal(plain.ct.array, r.ct.array)


def test_modes_agree_in_shape_and_geometry(gen, real_mask):
    s = gen.generate(real_mask, "", seed=0, mode="sequential", steps=3)
    p = gen.generate(real_mask, "", seed=0, mode="parallel", steps=3)
    assert s.ct.shape == p.ct.shape and np.allclose(s.ct.affine, p.ct.affine)
    assert s.info["mode"] == "sequential" and p.info["mode"] == "parallel"


def test_totalsegmentator_folder_and_cli_outputs(tiny_run, real_mask, tmp_path, capsys):
    folder = tmp_path / "segs"
    folder.mkdir()
    for i in np.unique(real_mask.array)[1:]:
        nib.save(nib.Nifti1Image((real_mask.array == i).astype(np.uint8), real_mask.affine),
                 str(folder / f"{total().labels[int(i)]}.nii.gz"))
    # files of TotalSegmentator's other tasks, as its output folders hold them
    aorta = real_mask.array == total().id_of("aorta")
    for name, on in (("celiac_trunk", np.roll(aorta, 3, axis=1)), ("superior_mesenteric_artery", np.roll(aorta, 6, axis=1)),
                     ("body_trunc", real_mask.array > 0), ("pleural_effusion", np.zeros_like(aorta))):
        nib.save(nib.Nifti1Image(on.astype(np.uint8), real_mask.affine), str(folder / f"{name}.nii.gz"))
    strict = main(["generate", "--checkpoint", str(tiny_run), "--mask", str(folder), "--strict", "--steps", "1",
                   "--out", str(tmp_path / "strict" / "ct.nii.gz"), "--quiet"])
    assert strict == 1 and "are not labels of vocabulary 'total'" in capsys.readouterr().out
    out = tmp_path / "out" / "ct.nii.gz"
    code = main(["generate", "--checkpoint", str(tiny_run), "--mask", str(folder), "--report",
                 "Arterial phase CT.", "--seed", "3", "--steps", "2", "--format", "dicom", "--out", str(out),
                 "--quiet"])
    assert code == 0
    ct = read_volume(out)
    assert ct.shape == real_mask.shape and np.allclose(ct.affine, real_mask.affine, atol=1e-4)
    side = json.loads((tmp_path / "out" / "ct.json").read_text())
    for key in ("checkpoint_sha256", "seed", "sampler", "steps", "guidance", "report", "mask_sha256",
                "tracect_version"):
        assert key in side
    assert side["organ_files"]["merged"] == {"celiac_trunk": "aorta", "superior_mesenteric_artery": "aorta"}
    assert side["organ_files"]["ignored"] == {"body_trunc": "vocabulary 'total' has no label of group 'body'",
                                              "pleural_effusion": "no coarse label"}
    assert any("celiac_trunk, superior_mesenteric_artery -> aorta" in n for n in side["notes"])
    assert "organ files ignored: body_trunc" in capsys.readouterr().err  # the run's notes
    assert side["seed"] == 3 and side["report"] == "Arterial phase CT." and side["steps"] == 2
    assert (tmp_path / "out" / "ct.png").stat().st_size > 1000
    assert (tmp_path / "out" / "ct.gif").stat().st_size > 1000
    dicom = read_volume(tmp_path / "out" / "ct_dicom").like(ct)
    assert np.array_equal(dicom.array, ct.array)
    # nothing is overwritten without --overwrite
    assert main(["generate", "--checkpoint", str(tiny_run), "--mask", str(folder), "--out", str(out),
                 "--quiet", "--steps", "1"]) == 1
    assert json.loads((tmp_path / "out" / "ct.json").read_text())["seed"] == 3


def test_report_only_generation_with_slices(tiny_run, tmp_path):
    out = tmp_path / "p.nii.gz"
    assert main(["generate", "--checkpoint", str(tiny_run), "--slices", "37", "--report", "Normal CT.",
                 "--out", str(out), "--steps", "2", "--no-pictures", "--quiet"]) == 0
    ct = read_volume(out)
    assert ct.canonical().shape[0] == 37


def test_bad_masks_get_clear_messages(gen, real_mask):
    with pytest.raises(MaskError, match=r"labels \[200\] are not in vocabulary 'total'"):
        arr = real_mask.array.copy()
        arr[0, 0, 0] = 200
        gen.generate(Volume(arr, real_mask.affine), "")
    with pytest.raises(MaskError, match="empty"):
        gen.generate(Volume(np.zeros_like(real_mask.array), real_mask.affine), "")
    tilted = make_affine((0, 1, 2), (0, 0, 0), (3, 3, 3), (0.8, 0.0, 0.0), (0, 0, 0))  # 46 degrees
    with pytest.raises(MaskError, match="degrees from axial"):
        gen.generate(Volume(real_mask.array, tilted), "")
    with pytest.raises(MaskError, match="non-integer"):
        gen.generate(Volume(real_mask.array + 0.5, real_mask.affine), "")
    result = gen.generate(real_mask, "", steps=1)
    assert any("a body envelope was estimated" in n for n in result.info["notes"])
    # the example's TotalSegmentator labels are finer than the model's: generation says which were merged
    merged = [n for n in result.info["notes"] if n.startswith("labels merged")]
    assert len(merged) == 1 and "bone <- " in merged[0] and "rib_left_7" in merged[0]
    assert "kidney <- kidney_right, kidney_left, adrenal_gland_right, adrenal_gland_left;" in merged[0]


def test_wrong_dimensionality_is_refused(tiny_run, tmp_path, capsys):
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4, 3), np.uint8), np.eye(4)), str(tmp_path / "m4d.nii.gz"))
    assert main(["generate", "--checkpoint", str(tiny_run), "--mask", str(tmp_path / "m4d.nii.gz"),
                 "--out", str(tmp_path / "o.nii.gz"), "--quiet"]) == 1
    assert "expected a 3D volume" in capsys.readouterr().out


def test_partial_mask_works(gen, real_mask):
    liver_only = np.where(real_mask.array == total().id_of("liver"), real_mask.array, 0)
    result = gen.generate(Volume(liver_only, real_mask.affine), "", steps=2)
    assert result.ct.shape == real_mask.shape
    assert "labels used: body, liver" in result.info["notes"][-1]


def test_drift_bench_command_compares_same_mask_slices(tiny_run, real_dir, tmp_path):
    """`tracect bench drift` end to end on the real slab (tiny model): the mask's period is found, the
    early window starts where it holds the last window's mask slices, and the burn-in is recorded."""
    import json

    from tracect.cli.main import main

    mask = str(real_dir / "seg.nii.gz")
    for warmup, extra in ((None, ["--mirror"]), ("0", [])):
        out = tmp_path / f"drift_{warmup}.json"
        args = ["bench", "drift", "--checkpoint", str(tiny_run), "--mask", mask, "--slices", "130", "--out", str(out)]
        assert main(args + extra + ([] if warmup is None else ["--warmup", warmup])) == 0
        r = json.loads(out.read_text())
        period = r["period"]
        Z = r["slices"]
        assert period == (60 if extra else 30) and Z == 130
        assert r["warmup"] == (16 if warmup is None else 0) and r["windows"] == Z - 1 + r["warmup"]
        assert set(r["per_organ"]) and set(r["per_organ"]) <= set(r["per_organ_first_window"])
        for v in r["per_organ"].values():
            assert v["first_start"] == (Z - 64) % period and v["abs_diff_hu"] == abs(v["last_hu"] - v["first_hu"])
        assert all(len(c) == Z // period for c in r["per_copy_mean_hu"].values())  # full copies


def test_drift_metric_known_answers(real_mask):
    from tracect.bench.drift import organ_drift, repeat_slab

    long = repeat_slab(real_mask, 200)
    assert long.shape[0] == 200 and np.array_equal(long.array[:30], real_mask.canonical().array)
    labels = long.array.astype(np.int64)
    flat = np.where(labels > 0, 50.0, -1000.0)
    ramp = flat + np.linspace(0, 60, 200)[:, None, None]  # +60 HU from top to bottom
    names = {5: "liver", 1: "spleen"}
    assert all(v["abs_diff_hu"] < 1e-6 for v in organ_drift(flat, labels, names, 64).values())
    drift = organ_drift(ramp, labels, names, 64)
    assert set(drift) == {"liver", "spleen"}
    assert all(35 < v["abs_diff_hu"] < 60 for v in drift.values())

    # the period is found; the phase-matched early window sees identical mask slices, so a volume
    # that depends on the mask slice alone shows no drift, while a trend along z still does
    from tracect.bench.drift import mask_period, per_copy_means

    period = mask_period(labels)
    assert period == 30
    by_phase = np.where(labels > 0, 50.0 + np.arange(200)[:, None, None] % 30 * 5.0, -1000.0)
    assert max(v["abs_diff_hu"] for v in organ_drift(by_phase, labels, names, 64).values()) > 5
    assert all(v["abs_diff_hu"] < 1e-6 for v in organ_drift(by_phase, labels, names, 64, period=period).values())
    assert all(35 < v["abs_diff_hu"] < 60 for v in organ_drift(ramp, labels, names, 64, period=period).values())
    curves = per_copy_means(ramp, labels, names, period)
    assert all(len(c) == 6 and np.all(np.diff(c) > 0) for c in curves.values())
    assert mask_period(np.arange(40)[:, None, None] * np.ones((1, 2, 2))) is None
    mirrored = repeat_slab(real_mask, 200, mirror=True).array
    assert mask_period(mirrored) == 60 and np.array_equal(mirrored[30:60], mirrored[:30][::-1])


def test_coherence_metric_sees_shuffled_slices(real_dir):
    from tracect.bench.modes import coherence

    ct = read_volume(real_dir / "ct.nii.gz").canonical().array.astype(np.float32)
    body = ct > -500
    smooth = coherence(ct, body)
    order = np.random.default_rng(0).permutation(ct.shape[0])
    shuffled = coherence(ct[order], body[order])
    assert shuffled["adjacent_mae_hu"] > 1.5 * smooth["adjacent_mae_hu"]
    assert smooth["warp_error"] < 1.0
    same = coherence(np.repeat(ct[:1], 5, 0), np.repeat(body[:1], 5, 0))
    assert same["adjacent_mae_hu"] == 0.0


def test_a_cohort_in_lockstep_gives_each_volume_as_alone(gen, real_mask):
    """Volumes of different lengths and reports advance together, their windows sharing each network
    call; each comes out as it does alone (its own generator), and the batches really are shared."""
    from tracect.generate.sampling import Sampling

    src = real_mask.canonical()
    masks = [Volume(np.concatenate([src.array] * 2)[:n], src.affine) for n in (5, 41, 12)]
    reports = ["Arterial phase CT.", "", "Non-contrast CT. Fatty liver."]
    sampling = Sampling(steps=3, guidance=2.0)
    alone = [gen.generate(m, r, seed=10 + k, sampling=sampling) for k, (m, r) in enumerate(zip(masks, reports))]
    rows = []
    original = gen.model.forward

    def spy(x, *args, **kwargs):
        rows.append(x.shape[0])
        return original(x, *args, **kwargs)

    gen.model.forward = spy
    try:
        plans = (gen.plan(m, r, seed=10 + k, sampling=sampling, key=k) for k, (m, r) in enumerate(zip(masks, reports)))
        together = {p.key: v for p, v in gen.generate_many(plans, sampling, batch_volumes=2)}
    finally:
        del gen.model.forward
    assert sorted(together) == [0, 1, 2]
    for k, a in enumerate(alone):
        b = together[k]
        assert b.ct.shape == masks[k].shape and b.info["windows"] == a.info["windows"]
        assert np.abs(b.canonical.array - a.canonical.array).max() < 1e-3
        assert b.info["batch_volumes"] == 2 and b.info["sampling"] == a.info["sampling"]
    windows = sum(a.info["windows"] for a in alone)
    # every window ran its 3 steps, each guided step on a doubled batch; two volumes shared most calls
    assert sum(rows) == 2 * 3 * windows and set(rows) == {2, 4}
    left, queue, rounds = [], [a.info["windows"] for a in alone], 0  # lockstep: a finished volume's place is refilled
    while queue or left:
        while len(left) < 2 and queue:
            left.append(queue.pop(0))
        left = [w - 1 for w in left if w > 1]
        rounds += 1
    assert len(rows) == 3 * rounds < 3 * windows


def test_guidance_in_one_call_equals_two_calls(gen):
    """Classifier-free guidance from one doubled batch is the same arithmetic as two calls."""
    import torch

    from tracect.model.conditioning import build_condition, make_denoise

    K, S = gen.config.model.frames, gen.config.model.image_size
    g = torch.Generator().manual_seed(0)
    mask = torch.randint(0, 17, (3, K, S, S), generator=g)
    cond = build_condition(gen.text, mask, ["Arterial phase.", "", "Fatty liver."], torch.rand(3, 3, generator=g) + 1,
                           torch.rand(3, K, generator=g), "cpu", null=True)
    x, t = torch.randn(3, K, S, S, generator=g), torch.rand(3, generator=g)
    with torch.no_grad():
        guided = make_denoise(gen.model, cond, 10, guidance=3.0)(x, t)
        with_report = gen.model(x, t * 10, *cond.inputs())
        without = gen.model(x, t * 10, *cond.inputs(with_report=False))
    assert torch.allclose(guided, without + 3.0 * (with_report - without), atol=1e-5)
    assert not torch.allclose(with_report, without)


def test_output_is_resampled_in_slabs_as_from_the_whole_grid():
    """The CT on the mask's grid is made a slab at a time (no float copy of the output): the same voxels
    as resampling onto the whole grid at once, rounded and clipped, for a grid of another spacing,
    extent and slice count that no slab size divides."""
    from tracect.data.grid import AIR_HU
    from tracect.data.resample import resample_to_grid
    from tracect.data.resample import resample_to_int16
    from tracect.io.volume import Volume

    rng = np.random.default_rng(0)
    src = Volume((rng.normal(0, 400, (23, 20, 18))).astype(np.float32), np.diag([2.5, 1.2, 1.3, 1.0]))
    affine = np.diag([0.9, 0.7, 0.8, 1.0])
    affine[:3, 3] = [-1.3, 0.4, -0.6]
    shape = (3 * 16 + 5, 37, 31)
    whole = resample_to_grid(src, affine, shape, order=1, cval=AIR_HU, antialias=False).array
    expected = np.clip(np.rint(whole), -1024, 3071).astype(np.int16)
    got = resample_to_int16(src, affine, shape, cval=AIR_HU, slab=16)
    assert got.dtype == np.int16 and got.shape == shape
    assert np.abs(got.astype(int) - expected).max() <= 1 and (got != expected).mean() < 1e-3


def test_exported_weights_generate_as_the_run(tiny_run, gen, real_mask, tmp_path):
    """An exported model (EMA weights in float16, config, data without the cache's path) loads like a
    checkpoint and gives the run's volume but for the weights' rounding."""
    from tracect.model.weights import checkpoint_hash, export_weights

    out = export_weights(tiny_run, tmp_path / "exported", recipe="test")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "data.json", "ema.safetensors"]
    data = json.loads((out / "data.json").read_text())
    assert "cache" not in data and data["export"] == {"step": 4, "dtype": "float16", "recipe": "test"}
    assert data["prepare"] == gen.data["prepare"]
    exported = Generator.from_checkpoint(out, device="cpu")
    assert exported.checkpoint_sha256 == checkpoint_hash(out) != gen.checkpoint_sha256
    a = gen.generate(real_mask, "report", seed=3, steps=3)
    b = exported.generate(real_mask, "report", seed=3, steps=3)
    diff = np.abs(a.ct.array.astype(np.float32) - b.ct.array.astype(np.float32))
    assert a.ct.array.shape == b.ct.array.shape
    assert 0 < diff.mean() < 5.0, diff.mean()  # float16 weights: rounding, not another model
    assert b.info["checkpoint_sha256"] == exported.checkpoint_sha256


@pytest.mark.parametrize("pixel_mm", [0.7, 3.0])
def test_body_envelope_grows_the_organs_hull_by_the_measured_margins_in_millimetres(pixel_mm):
    """The estimated body is each slice's organ hull grown, in each direction, by the measured margin
    in mm (a `total` mask's, or the subcutaneous layer alone), at any pixel size."""
    from tracect.data.body import SUBCUTANEOUS_MM, TOTAL_MASK_MM, envelope_from_organs

    n = int(round(240 / pixel_mm))
    yy, xx = np.mgrid[:n, :n] * pixel_mm
    organ = (yy - 120) ** 2 + (xx - 120) ** 2 <= 40**2  # a disk of radius 40 mm
    labels = np.stack([organ, np.zeros_like(organ), organ])  # the empty slice takes its neighbour's
    spacing = (5.0, pixel_mm, pixel_mm)
    c = int(round(120 / pixel_mm))

    def reach_mm(env, step):  # how far the envelope reaches from the centre along a column or row
        line = env[c:, c] if step == "posterior" else env[c::-1, c] if step == "anterior" else env[c, c:]
        return np.flatnonzero(line)[-1] * pixel_mm

    for wall_labelled, margin in ((False, np.asarray(TOTAL_MASK_MM)), (True, np.asarray(SUBCUTANEOUS_MM))):
        env = envelope_from_organs(labels, spacing, wall_labelled=wall_labelled)
        # canonical rows run anterior -> posterior; directions 0 (anterior), 90 (side), 180 (posterior)
        for direction, expected in (("anterior", margin[0]), ("side", margin[4]), ("posterior", margin[-1])):
            assert abs(reach_mm(env[1], direction) - (40 + expected)) < 1.5 * pixel_mm, (direction, wall_labelled)
        assert np.array_equal(env[0], env[1]) and np.array_equal(env[1], env[2])
    assert not envelope_from_organs(np.zeros_like(labels), spacing).any()


def test_the_margin_profile_measures_how_far_a_body_reaches_beyond_a_hull_per_direction():
    """What ``scripts/body_estimate_check.py`` measures SUBCUTANEOUS_MM and TOTAL_MASK_MM with: a body that
    reaches 12 mm beyond an inner disk in front and 4 mm behind reads 12 and 4 at 0 and 180 degrees."""
    from tracect.data.body import PROFILE_DEG, envelope_with_margin, surface_margin_profile

    pixel_mm = 0.5
    n = 400
    yy, xx = np.mgrid[:n, :n] * pixel_mm
    inside = (yy - 100) ** 2 + (xx - 100) ** 2 <= 40**2
    # an ellipse 8 mm taller than the disk on each side, its centre 4 mm anterior: front 12, back 4 mm
    body = ((yy - 96) / 48) ** 2 + ((xx - 100) / 44) ** 2 <= 1
    prof = surface_margin_profile(inside[None], body[None], (3.0, pixel_mm, pixel_mm))
    assert prof.shape == (len(PROFILE_DEG),)
    assert abs(prof[0] - 12) < 1.0 and abs(prof[-1] - 4) < 1.0 and abs(prof[4] - 4) < 1.0, prof
    assert np.all(prof[:3] > prof[5:].max() + 2), prof  # front and back not swapped
    # and growing the disk by that profile gives back the body
    est = envelope_with_margin(inside[None], (3.0, pixel_mm, pixel_mm), prof)[0]
    assert 2 * (est & body).sum() / (est.sum() + body.sum()) > 0.99
    with pytest.raises(ValueError, match="one value per direction"):
        envelope_with_margin(inside[None], (3.0, pixel_mm, pixel_mm), [10.0])


def test_a_given_body_replaces_the_estimate(gen, real_mask, tmp_path, capsys):
    """--body: the body is the given one (and the notes say so); off the mask's grid it is refused."""
    from tracect.io.readers import write_volume

    body = np.zeros(real_mask.array.shape, np.uint8)
    body[:, 10:-10, 10:-10] = 1
    given = Volume(body, real_mask.affine, {"source": "body.nii.gz"})
    result = gen.generate(real_mask, "", steps=1, body=given)
    assert any(n.startswith("body: the given body mask (body.nii.gz)") for n in result.info["notes"])
    assert not any("envelope" in n for n in result.info["notes"])
    with pytest.raises(MaskError, match="resample it onto the mask's grid"):
        gen.generate(real_mask, "", steps=1, body=Volume(body[:, :-1], real_mask.affine))
    write_volume(given, tmp_path / "body.nii.gz")
    mask_path = tmp_path / "mask.nii.gz"
    write_volume(real_mask, mask_path)
    gen_dir = gen.checkpoint.parent.parent if gen.checkpoint.parent.name == "checkpoints" else gen.checkpoint
    assert main(["generate", "--checkpoint", str(gen_dir), "--mask", str(mask_path), "--body",
                 str(tmp_path / "body.nii.gz"), "--steps", "1", "--no-pictures", "--quiet",
                 "--out", str(tmp_path / "ct.nii.gz")]) == 0
    notes = json.loads((tmp_path / "ct.json").read_text())["notes"]
    assert any(n.startswith("body: the given body mask") for n in notes)
    assert main(["generate", "--checkpoint", str(gen_dir), "--slices", "4", "--body", "b.nii.gz",
                 "--out", str(tmp_path / "x.nii.gz")]) == 1
    assert "--body goes with --mask" in capsys.readouterr().err
