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
        ("3d", "sequential")}
    for x in r["rows"]:
        assert x["status"] == "ok" and x["seconds"] > 0 and x["flops"] > 0 and x["slices_generated"] == 8
        assert len(x["seconds_runs"]) == 2 and min(x["seconds_runs"]) <= x["seconds"] <= max(x["seconds_runs"])
        assert x["process_peak_less_arrays_mib"] > x["peak_mib"] >= 0  # the loaded process is in the former
    row = {(x["model"], x["mode"]): x for x in r["rows"]}
    # sequential: 8 slices after a burn-in of 7 (the mask's slices 7..1) = 15 chained slices
    assert row["frame-pair", "sequential"]["windows"] == 14 and row["frame-4", "sequential"]["windows"] == 5
    assert row["frame-pair", "parallel"]["windows"] == 7 and row["frame-4", "parallel"]["windows"] == 3
    assert row["frame-4", "parallel"]["chunk"] == 8 and row["3d", "sequential"]["windows"] == 1
    # FLOPs follow the windows: a K = 4 call costs about what a K = 2 call does
    per_window = {k: x["flops"] / x["windows"] for k, x in row.items() if k[0] != "3d"}
    assert max(per_window.values()) / min(per_window.values()) < 1.2
    assert r["matmul_peak_flops_per_s"]["float32"] > 1e8
    assert set(r["ratios"]) == {"frame-pair", "frame-4"} and "sequential" in r["ratios"]["frame-4"]
    assert (tmp_path / "efficiency.png").stat().st_size > 1000
    md = (tmp_path / "efficiency.md").read_text()
    assert "| frame-pair | sequential | 8 | 14 |" in md and "| frame-4 | parallel (8 / call) | 8 | 3 |" in md


def test_efficiency_ratios_are_per_frame_model_against_3d():
    from tracect.bench.efficiency import markdown, ratios

    def row(model, mode, n, seconds, peak, process):
        return {"model": model, "mode": mode, "n": n, "status": "ok", "seconds": seconds, "peak_mib": peak,
                "process_peak_less_arrays_mib": process}

    rows = [row("3d", "sequential", 32, 2.0, 200.0, 800.0), row("3d", "sequential", 256, 16.0, 1000.0, 1600.0),
            row("frame-4", "parallel", 32, 0.5, 50.0, 650.0), row("frame-4", "parallel", 256, 4.0, 100.0, 682.5),
            row("frame-pair", "sequential", 32, 4.0, 10.0, 600.0)]
    r = ratios(rows)
    assert set(r) == {"frame-4", "frame-pair"}
    assert r["frame-4"]["parallel"][32] == {"time_ratio": 0.25, "memory_ratio": 0.25}
    assert r["frame-4"]["parallel"][256] == {"time_ratio": 0.25, "memory_ratio": 0.1}
    flat = r["frame-4"]["memory_flatness"]["parallel"]
    assert flat["n"] == [32, 256] and flat["ratio"] == 2.0 and abs(flat["process_ratio"] - 1.05) < 1e-12
    assert r["frame-pair"]["sequential"][32]["time_ratio"] == 2.0 and "memory_flatness" not in r["frame-pair"]
    failed = {"model": "3d", "mode": "sequential", "n": 512, "status": "oom"}
    md = markdown({"device_name": "cpu", "device": "cpu", "threads": 1, "torch_version": "x", "size": 64, "steps": 2,
                   "repeats": 3, "matmul_peak_flops_per_s": {"float32": 1e11}, "rows": [failed], "ratios": r})
    assert "| 3d | sequential | 512 | | **oom** |" in md and "| frame-4 | 256 | parallel | 0.25 | 0.100 |" in md
    assert "median of 3 run(s)" in md


@pytest.mark.slow
def test_quality_bench_smoke(tmp_path):
    """Four tiny models, a 6-case phantom at 32 px, seconds of training: every figure is produced, for
    the four-frame model also in parallel mode (a second sampling of the same run)."""
    from tracect.bench.quality import run_quality

    presets = {}
    for name, preset, frames in (("frame-pair", "tiny", 2), ("frame-4", "tiny", 4), ("slice", "tiny-slice", 1),
                                 ("3d", "tiny-3d", 8)):
        cfg = load_config(preset).replace(model={"image_size": 32, "frames": frames}, train={"max_steps": 3})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg.to_json()))
        presets[name] = str(path)
    r = run_quality(tmp_path / "q", minutes=0.05, cases=6, presets=presets, size=32, threads=1, log=None,
                    segmenter={"max_steps": 5, "max_minutes": None, "features": (8, 8, 8, 16, 16, 8)})
    assert set(r["models"]) == {"frame-pair", "frame-4", "frame-4 parallel", "slice", "3d"}
    assert r["models"]["frame-4 parallel"]["model"] == "frame-4"
    assert r["models"]["frame-4 parallel"]["sampling"] == {"mode": "parallel", "chunk": 8}
    assert r["models"]["frame-4"]["sampling"] == {"mode": "sequential"}
    for name, m in r["models"].items():
        assert m["dice"]["n"] >= 1 and m["flow_epe_px"]["n"] >= 1, name
        assert m["seconds_per_volume"] > 0 and m["phase_auroc"] is not None
        assert (tmp_path / "q" / "evaluation" / name / "report.html").exists()
    table = (tmp_path / "q" / "quality.md").read_text()
    assert "flow EPE" in table and "3d" in table


def test_quality_table_shows_a_missing_interval_as_such():
    from tracect.bench.quality import _f

    assert _f({"mean": 0.5, "ci95": [0.4, 0.6], "n": 4}) == "0.500 [0.400, 0.600]"
    assert _f({"mean": 0.5, "ci95": [None, None], "n": 1}) == "0.500 [no CI, n=1]"
    assert _f({"mean": None, "n": 0}) == "n/a" and _f(None) == "n/a"
