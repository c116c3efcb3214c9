"""The two comparison benchmarks run end to end at toy sizes and write their tables."""

from __future__ import annotations

import json

import pytest
import yaml

from tracect.config import load_config


def test_efficiency_bench_measures_each_model_in_a_subprocess(tmp_path):
    from tracect.cli.main import main

    assert main(["bench", "efficiency", "--slices", "8", "--size", "16", "--steps", "1", "--threads", "1",
                 "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "efficiency.json").read_text())
    assert {(x["model"], x["mode"]) for x in r["rows"]} == {
        ("frame-pair", "sequential"), ("frame-pair", "parallel"), ("frame-4", "sequential"), ("frame-4", "parallel"),
        ("3d", "sequential")}
    for x in r["rows"]:
        assert x["status"] == "ok" and x["seconds"] > 0 and x["flops"] > 0 and x["slices_generated"] == 8
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
