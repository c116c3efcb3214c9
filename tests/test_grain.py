"""CT noise above the generation grid's resolution: measured spectrum, drawn grain, the pipeline's use."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tracect.generate.grain import (
    Grain,
    GrainSpectrum,
    add_grain,
    band,
    draw,
    measure_nps,
    patch_nps,
    radial,
)

FLAT = GrainSpectrum(freq=(0.0, 1.0), nps=(100.0, 100.0))  # 100 HU² mm² at every frequency up to 1 cycle/mm


def test_white_noise_measures_as_a_flat_spectrum_of_its_variance():
    """White noise of SD 10 HU on 0.7 mm pixels has an NPS of 10² x 0.7² = 49 HU² mm² at every frequency;
    measured in uniform soft tissue only: the air half of the volume gives no patch."""
    rng = np.random.default_rng(0)
    hu = np.full((6, 128, 128), 40.0, np.float32) + rng.normal(0, 10, (6, 128, 128)).astype(np.float32)
    hu[:, :, 64:] = -1000.0  # air: outside the soft tissue range
    s = measure_nps([("white", hu, (0.7, 0.7))])
    assert s.patches == (48,)  # 6 slices x 4 x 2 patches of 32 px in the 128 x 64 tissue half
    nps = np.asarray(s.nps)
    assert np.all(np.abs(nps / 49.0 - 1) < 0.2), nps.round(1)
    assert abs(np.median(nps) / 49.0 - 1) < 0.05


def test_patch_nps_is_normalised_so_its_integral_is_the_variance():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 7, (50, 32, 32))
    nps = patch_nps(x, (0.5, 0.8))
    df = 1 / (32 * 0.5) * 1 / (32 * 0.8)
    # the plane fit takes 3 of the 1024 degrees of freedom
    assert nps.sum() * df == pytest.approx(49 * (1 - 3 / 1024), rel=0.03)
    f, p = radial(nps, (0.5, 0.8))
    assert np.all(np.diff(f) > 0) and f[0] > 0 and len(f) == len(p)


def test_drawn_grain_has_the_spectrum_above_the_cutoff_and_none_below():
    rng = np.random.default_rng(2)
    spacing, cutoff = (0.8, 0.8), 0.12
    slices = np.stack([draw((128, 128), spacing, FLAT, cutoff, rng) for _ in range(24)])
    nps = patch_nps(slices, spacing)
    from tracect.generate.grain import _frequencies

    f = _frequencies((128, 128), spacing)
    above, below = f > 1.3 * cutoff, (f < 0.7 * cutoff) & (f > 0)
    assert nps[above].mean() == pytest.approx(100.0, rel=0.05)
    assert nps[below].mean() < 1.0
    # its variance: the spectrum times the band, summed over the slice's frequency plane
    expected = (FLAT.at(f) * band(f, cutoff)).sum() / (128 * 0.8 * 128 * 0.8)
    assert slices.var() == pytest.approx(expected, rel=0.05)
    assert abs(slices.mean()) < 0.05


def test_band_rises_smoothly_from_nothing_to_all():
    f = np.linspace(0, 1, 101)
    b = band(f, 0.4)
    assert b[f <= 0.3].max() == 0 and b[f >= 0.5].min() == 1
    assert np.all(np.diff(b) >= 0) and 0.4 < band(np.array([0.4]), 0.4)[0] < 0.6


def test_add_grain_is_reproducible_zero_mean_and_clipped():
    hu = np.full((8, 96, 96), 50, np.int16)
    hu[:, :, :20] = -1024  # air at the floor: its grain is cut there
    a = add_grain(hu, (0.7, 0.7), FLAT, 0.1, seed=3)
    assert a.dtype == np.int16 and np.array_equal(a, add_grain(hu, (0.7, 0.7), FLAT, 0.1, seed=3))
    assert not np.array_equal(a, add_grain(hu, (0.7, 0.7), FLAT, 0.1, seed=4))
    tissue = a[:, :, 30:].astype(float) - 50
    assert abs(tissue.mean()) < 0.5 and tissue.std() > 5
    assert a.min() >= -1024 and (a[:, :, :20] > -1024).any()


def test_spectrum_round_trips_and_rejects_what_is_not_one(tmp_path):
    s = GrainSpectrum(freq=(0.1, 0.2, 0.3), nps=(5.0, 4.0, 1.0), cases=("a", "b"), patches=(3, 4))
    s.save(tmp_path / "s.json")
    back = GrainSpectrum.load(tmp_path / "s.json")
    assert back == s and back.sha256 == s.sha256
    assert json.loads((tmp_path / "s.json").read_text())["sd_hu"] == pytest.approx(s.sd_hu, abs=1e-3)
    with pytest.raises(ValueError):
        GrainSpectrum(freq=(0.2, 0.1), nps=(1.0, 1.0))
    with pytest.raises(ValueError):
        GrainSpectrum(freq=(0.1, 0.2), nps=(1.0, -1.0))
    with pytest.raises(ValueError):
        Grain(s, cutoff_scale=0)


def test_shipped_spectrum_is_real_ct_without_the_held_out_case():
    s = GrainSpectrum.load()
    assert len(s.cases) == 5 and "crlm_1006" not in s.cases  # the real case every figure is judged on
    assert all(p > 0 for p in s.nps) and 5 < s.sd_hu < 30  # CT noise in soft tissue: about 10-20 HU
    # a 64² grid over 400 mm leaves almost the whole spectrum to the grain
    assert Grain().cutoff((6.25, 6.25)) == pytest.approx(0.08)


def test_generated_ct_with_grain_is_the_ct_without_plus_zero_mean_noise(gen, real_mask):
    base = gen.generate(real_mask, "CT of the upper abdomen.", seed=5)
    grainy = gen.generate(real_mask, "CT of the upper abdomen.", seed=5, grain=Grain())
    again = gen.generate(real_mask, "CT of the upper abdomen.", seed=5, grain=Grain())
    # the sampled volume is untouched; the grain lands on the mask's grid only
    assert np.array_equal(base.canonical.array, grainy.canonical.array)
    assert np.array_equal(grainy.ct.array, again.ct.array)
    body = real_mask.array > 0
    diff = grainy.ct.array.astype(float) - base.ct.array
    assert abs(diff[body].mean()) < 1.0 and diff[body].std() > 3.0
    assert base.info["grain"] is None
    rec = grainy.info["grain"]
    assert rec["spectrum_sha256"] == GrainSpectrum.load().sha256 and rec["cutoff_cycles_per_mm"] > 0


def test_cli_grain_writes_its_record_and_refuses_a_file_that_is_not_a_spectrum(tiny_run, real_dir, tmp_path, capsys):
    from tracect.cli.main import main

    args = ["generate", "--checkpoint", str(tiny_run), "--mask", str(real_dir / "seg.nii.gz"), "--steps", "1",
            "--no-pictures", "--quiet"]
    assert main(args + ["--grain", "--out", str(tmp_path / "g" / "ct.nii.gz")]) == 0
    side = json.loads((tmp_path / "g" / "ct.json").read_text())
    assert side["grain"]["spectrum_sha256"] == GrainSpectrum.load().sha256
    assert side["grain"]["cases"] == list(GrainSpectrum.load().cases)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"freq_cycles_per_mm": [0.3, 0.1], "nps_hu2_mm2": [1, 1]}))
    assert main(args + ["--grain", str(bad), "--out", str(tmp_path / "b" / "ct.nii.gz")]) != 0
    assert "--grain" in capsys.readouterr().err
    assert not (tmp_path / "b" / "ct.nii.gz").exists()


def test_fine_texture_ratio_scores_real_noise_one_a_smooth_copy_near_zero_and_a_coarse_grid_nothing():
    from scipy.ndimage import gaussian_filter

    from tracect.evaluate.realism import fine_texture_ratio

    rng = np.random.default_rng(5)
    noise = rng.normal(0, 10, (4, 128, 128)).astype(np.float32)
    lung = np.zeros(noise.shape, bool)
    lung[:, :, 96:] = True  # no patches there

    def ct(texture):
        return np.where(lung, -900.0, 40.0 + texture).astype(np.float32)

    real = ct(noise)
    assert fine_texture_ratio(real, real, (0.7, 0.7)) == pytest.approx(1.0)
    # the same soft tissue smoothed as a 64² grid's interpolation would be, roughly
    assert fine_texture_ratio(ct(gaussian_filter(noise, sigma=(0, 4, 4))), real, (0.7, 0.7)) < 0.02
    noisier = real + rng.normal(0, 10, real.shape).astype(np.float32)
    assert fine_texture_ratio(noisier, real, (0.7, 0.7)) == pytest.approx(2.0, rel=0.1)
    assert fine_texture_ratio(real, real, (3.0, 3.0)) is None  # Nyquist 0.17 cycles/mm: below the band
