"""The two comparison benchmarks run end to end at toy sizes and write their tables."""

from __future__ import annotations

import json

import pytest
import yaml

from tracect.config import load_config


def test_efficiency_bench_measures_each_model_in_a_subprocess(tmp_path):
    from tracect.cli.main import main

    assert main(["bench", "efficiency", "--slices", "8", "--size", "16", "--steps", "1", "--threads", "1",
                 "--repeats", "2", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "efficiency.json").read_text())
    assert {(x["model"], x["mode"]) for x in r["rows"]} == {
        ("frame-pair", "sequential"), ("frame-pair", "parallel"), ("frame-4", "sequential"), ("frame-4", "parallel"),
        ("3d", "sequential"), ("3d", "parallel")}
    for x in r["rows"]:
        assert x["status"] == "ok" and x["seconds"] > 0 and x["flops"] > 0 and x["slices_generated"] == 8
        assert len(x["seconds_runs"]) == 2 and min(x["seconds_runs"]) <= x["seconds"] <= max(x["seconds_runs"])
        # the whole call's peak holds the sampling stage's and the volume's arrays
        assert x["peak_mib"] >= x["working_mib"] >= 0 and x["arrays_mib"] > 0
    row = {(x["model"], x["mode"]): x for x in r["rows"]}
    # sequential: 8 slices after a burn-in of 7 (the mask's slices 7..1) = 15 chained slices
    assert row["frame-pair", "sequential"]["windows"] == 14 and row["frame-4", "sequential"]["windows"] == 5
    assert row["frame-pair", "parallel"]["windows"] == 7 and row["frame-4", "parallel"]["windows"] == 3
    assert row["frame-4", "parallel"]["sampling"]["chunk"] == 8 and row["3d", "sequential"]["windows"] == 1
    assert row["3d", "parallel"]["sampling"] == {"mode": "parallel", "steps": 1, "overlap": 8, "chunk": 1, "window": 32}
    # FLOPs follow the windows: a K = 4 call costs about what a K = 2 call does
    per_window = {k: x["flops"] / x["windows"] for k, x in row.items() if k[0] != "3d"}
    assert max(per_window.values()) / min(per_window.values()) < 1.2
    assert r["matmul_peak_flops_per_s"]["float32"] > 1e8
    assert set(r["ratios"]) == {"frame-pair", "frame-4"} and 8 in {int(k) for k in r["ratios"]["frame-4"]["vs_3d"]}
    assert (tmp_path / "efficiency.png").stat().st_size > 1000
    md = (tmp_path / "efficiency.md").read_text()
    assert "| frame-pair | sequential | 8 | 14 |" in md and "| frame-4 | parallel (chunk 8) | 8 | 3 |" in md
    assert "| 3d | parallel (overlap 8, chunk 1, window 32) | 8 | 1 |" in md


def test_efficiency_bench_measures_a_latent_model_at_the_slices_size(tmp_path, capsys):
    """A latent frame pair is measured at the slices' size (its frames are latents a quarter of it) from a
    mask of any size, its decoding in the finishing stage; a pixel model can be given larger masks."""
    from tracect.bench.measure import in_fresh_process

    def one(model, preset, size, mask_size):
        spec = {"model": model, "preset": preset, "mode": "sequential", "n": 6, "size": size, "mask_size": mask_size,
                "steps": 1, "device": "cpu", "threads": 1, "repeats": 1}
        r = in_fresh_process("tracect.bench.efficiency", ["--one", json.dumps(spec)], timeout=600)
        assert r.status == "ok", r.note
        return r.value

    latent = one("frame-pair-latent", "tiny-latent", 32, 32)
    pixel = one("frame-pair", "tiny", 16, 32)
    for row in (latent, pixel):
        assert row["slices_generated"] == 6 and row["finish_working_mib"] >= 0 and row["seconds"] > 0
    # the latent model's result: 32² slices on the mask's grid, from 8² latent frames
    assert latent["arrays_mib"] > 0 and latent["flops"] > 0
    from tracect.cli.main import main

    assert main(["bench", "efficiency", "--only", "frame-pair-latent:parallel", "--out", str(tmp_path)]) != 0
    assert "not among" in capsys.readouterr().err


def test_peak_memory_blocks_nest():
    """An outer block keeps the peak of an inner block that has ended before another inner block reset
    the process's high-water mark (the whole generate call holds its sampling stage's peak)."""
    import numpy as np

    from tracect.bench.measure import PeakRSS

    with PeakRSS() as whole:
        with PeakRSS() as first:
            big = np.ones(64 * 2 ** 20 // 8)  # 64 MiB, touched
            del big
        with PeakRSS() as second:
            small = np.ones(1024)
            del small
    assert first.peak - first.start > 50 * 2 ** 20
    assert second.peak < first.peak and whole.peak >= first.peak


def test_efficiency_ratios_take_each_side_at_its_best():
    from tracect.bench.efficiency import markdown, ratios

    def row(model, mode, n, seconds, peak, working, arrays=1.0):
        return {"model": model, "mode": mode, "n": n, "status": "ok", "seconds": seconds, "peak_mib": peak,
                "working_mib": working, "arrays_mib": arrays}

    rows = [row("3d", "sequential", 32, 2.0, 400.0, 390.0), row("3d", "parallel", 32, 3.0, 200.0, 150.0),
            row("3d", "sequential", 256, 16.0, 3000.0, 2900.0), row("3d", "parallel", 256, 20.0, 1000.0, 900.0),
            row("frame-4", "parallel", 32, 0.5, 50.0, 20.0), row("frame-4", "sequential", 32, 1.0, 20.0, 5.0, 0.5),
            row("frame-4", "parallel", 256, 4.0, 100.0, 60.0, 8.0), row("frame-4", "sequential", 256, 8.0, 24.0, 5.5, 4.0),
            row("frame-pair", "sequential", 32, 4.0, 10.0, 5.0)]
    r = ratios(rows)
    assert set(r) == {"frame-4", "frame-pair"}
    v = r["frame-4"]["vs_3d"][32]
    # time: fastest frame-4 (parallel, 0.5 s) over faster 3D (whole volume, 2 s); memory: leanest over leaner
    assert v["time_ratio"] == 0.25 and v["time_settings"] == ["parallel", "sequential"]
    assert v["memory_ratio"] == 0.1 and v["memory_settings"] == ["sequential", "parallel"]
    assert r["frame-4"]["vs_3d"][256]["memory_ratio"] == 0.024
    flat = r["frame-4"]["memory_flatness"]
    assert flat["sequential"]["n"] == [32, 256] and flat["sequential"]["working_ratio"] == 1.1
    assert flat["parallel"]["working_ratio"] == 3.0
    assert flat["sequential"]["peak_less_arrays_mib"] == [19.5, 20.0]
    assert r["frame-pair"]["vs_3d"][32]["time_ratio"] == 2.0 and "memory_flatness" not in r["frame-pair"]
    failed = {"model": "3d", "mode": "sequential", "n": 512, "status": "oom"}
    md = markdown({"device_name": "cpu", "device": "cpu", "threads": 1, "torch_version": "x", "size": 64, "steps": 2,
                   "repeats": 3, "matmul_peak_flops_per_s": {"float32": 1e11}, "rows": [failed], "ratios": r})
    assert "| 3d | sequential | 512 | | **oom** |" in md
    assert "| frame-4 | 32 | 0.25 | parallel / sequential | 0.100 | sequential / parallel |" in md
    assert "median of 3 run(s)" in md


def test_working_memory_is_flat_in_slices_for_the_chain_and_grows_for_parallel(tmp_path):
    """At 128 px a volume's slices weigh enough to show: the sequential chain's working memory stays
    flat from 16 to 64 slices, while parallel mode, which holds the whole volume's noisy state and fused
    estimate, grows by about that much -- the measurement sees an O(N) array when there is one."""
    from tracect.bench.measure import FIXED_MMAP_THRESHOLD, in_fresh_process

    # the tiny network without attention (at 128 px its attention level would hold 4096 positions)
    cfg = load_config("tiny").replace(model={"attention_levels": (False, False)})
    preset = tmp_path / "tiny-no-attention.yaml"
    preset.write_text(yaml.safe_dump(cfg.to_json()))

    def working(mode, n):
        spec = {"model": "frame-pair", "preset": str(preset), "mode": mode, "n": n, "size": 128, "steps": 1,
                "device": "cpu", "threads": 1, "repeats": 1}
        # (with glibc's adaptive mmap threshold the sampling peak varied by +-1.5 MiB from process to
        # process, more than the 0.75 MiB the chain may grow by; fixed, by +-0.1 MiB)
        r = in_fresh_process("tracect.bench.efficiency", ["--one", json.dumps(spec)], timeout=600,
                             env=FIXED_MMAP_THRESHOLD)
        assert r.status == "ok", r.note
        return r.value

    seq = {n: working("sequential", n) for n in (16, 64)}
    par = {n: working("parallel", n) for n in (16, 64)}
    slice_mib = 128 * 128 * 4 / 2 ** 20  # one float32 slice of the generation grid
    grew_seq = seq[64]["working_mib"] - seq[16]["working_mib"]
    grew_par = par[64]["working_mib"] - par[16]["working_mib"]
    assert grew_seq < 0.25 * 48 * slice_mib, (seq[16]["working_mib"], seq[64]["working_mib"])
    assert grew_par > 1.0 * 48 * slice_mib, (par[16]["working_mib"], par[64]["working_mib"])
    assert seq[64]["arrays_mib"] > 2.5 * seq[16]["arrays_mib"]


@pytest.mark.slow
def test_quality_bench_smoke(tmp_path):
    """Four tiny models, three small phantom draws at 32 px, seconds of training: every figure is produced
    (the four-frame model also in parallel mode, a second sampling of the same run), the segmenter says it
    learned from another draw, and the paired differences rest on the held-out masks."""
    from tracect.bench.quality import run_quality

    presets = {}
    for name, preset, frames in (("frame-pair", "tiny", 2), ("frame-4", "tiny", 4), ("slice", "tiny-slice", 1),
                                 ("3d", "tiny-3d", 8)):
        cfg = load_config(preset).replace(model={"image_size": 32, "frames": frames}, train={"max_steps": 3})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg.to_json()))
        presets[name] = str(path)
    r = run_quality(tmp_path / "q", minutes=0.05, cases=6, heldout=3, segmenter_cases=5, presets=presets, size=32,
                    threads=1, log=None, probe_seconds=5,
                    segmenter={"max_steps": 5, "max_minutes": None, "features": (8, 8, 8, 16, 16, 8)})
    assert set(r["models"]) == {"frame-pair", "frame-4", "frame-4 parallel", "slice", "3d"}
    assert r["models"]["frame-4 parallel"]["model"] == "frame-4"
    assert r["models"]["frame-4 parallel"]["sampling"] == {"mode": "parallel", "chunk": 8}
    assert r["models"]["frame-4"]["sampling"] == {"mode": "sequential"}
    for name, m in r["models"].items():
        assert m["dice_mean"]["n"] == 3 and m["flow_epe_px"]["n"] == 3, name
        assert m["flow_epe_frozen_px"]["mean"] > 0 and m["adjacent_dhu_reference"]["mean"] > 0
        assert m["segmenter"]["disjoint_from_generators"] is True
        assert (tmp_path / "q" / "evaluation" / name / "report.html").exists()
        assert len(list((tmp_path / "q" / "generated" / name).glob("*.grid.nii.gz"))) == 5
    for t in r["training"].values():  # each run went to its planned steps (its schedule's end)
        assert t["steps"] == t["planned_steps"]
    assert set(r["paired"]) == {"frame-4", "frame-4 parallel", "slice", "3d"}
    assert r["paired"]["3d"]["dice_mean"]["n"] == 3
    table = (tmp_path / "q" / "quality.md").read_text()
    assert "flow EPE of a frozen volume" in table and "n=3" in table and "Paired differences" in table


@pytest.mark.slow
def test_quality_bench_judges_a_latent_model_beside_the_pixel_one(tmp_path, monkeypatch):
    """A latent frame pair trains on the same cases prepared at its autoencoder's size and encoded by it,
    and is judged on the same held-out masks, paired with the pixel frame pair, sharpness included (the
    output folder given relative to the working directory, as a user types it)."""
    from tracect.bench.quality import run_quality
    from tracect.cli.main import main
    from tracect.phantom import PhantomConfig, write_dataset

    write_dataset(tmp_path / "ph", 2, seed=5, config=PhantomConfig(size=32, slices=(12, 16)), progress=False)
    assert main(["autoencoder", "train", "--data", str(tmp_path / "ph"), "--config", "ae-tiny",
                 "--out", str(tmp_path / "ae"), "--quiet"]) == 0
    presets = {}
    for name, preset, size in (("frame-pair", "tiny", 32), ("frame-pair-latent", "tiny-latent", 8)):
        cfg = load_config(preset).replace(model={"image_size": size}, train={"max_steps": 3})
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg.to_json()))
        presets[name] = str(tmp_path / f"{name}.yaml")
    monkeypatch.chdir(tmp_path)
    r = run_quality("q", minutes=0.05, cases=4, heldout=3, segmenter_cases=4, presets=presets, size=32,
                    threads=1, log=None, probe_seconds=5, autoencoder=tmp_path / "ae",
                    segmenter={"max_steps": 5, "max_minutes": None, "features": (8, 8, 8, 16, 16, 8)})
    latent = json.loads((tmp_path / "q" / "latent_cache32" / "latent.json").read_text())
    assert latent["factor"] == 4 and r["autoencoder"] == str(tmp_path / "ae")
    assert not (tmp_path / "q" / "cache32" / "latent.json").exists()  # the pixel cache stays as it was
    assert set(r["models"]) == {"frame-pair", "frame-pair-latent"}
    for name, m in r["models"].items():
        assert m["dice_mean"]["n"] == 3 and m["inplane_hf_ratio"]["n"] == 3, name
        assert m["inplane_hf_ratio"]["mean"] > 0
    paired = r["paired"]["frame-pair-latent"]
    assert paired["dice_mean"]["n"] == 3 and paired["inplane_hf_ratio"]["n"] == 3
    assert "in-plane HF power" in (tmp_path / "q" / "quality.md").read_text()


def test_quality_table_shows_a_missing_interval_as_such():
    from tracect.bench.quality import _f

    assert _f({"mean": 0.5, "ci95": [0.4, 0.6], "n": 4}) == "0.500 [0.400, 0.600] n=4"
    assert _f({"mean": 0.5, "ci95": [None, None], "n": 1}) == "0.500 [no CI, n=1]"
    assert _f({"mean": None, "n": 0}) == "n/a" and _f(None) == "n/a"
