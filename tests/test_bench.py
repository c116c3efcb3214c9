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
    assert {(x["model"], x["mode"]) for x in r["rows"]} == {("frame-pair", "sequential"), ("frame-pair", "parallel"),
                                                            ("3d", "sequential")}
    for x in r["rows"]:
        assert x["status"] == "ok" and x["seconds"] > 0 and x["flops"] > 0 and x["slices_generated"] == 8
    pair = next(x for x in r["rows"] if x["mode"] == "sequential" and x["model"] == "frame-pair")
    d3 = next(x for x in r["rows"] if x["model"] == "3d")
    assert pair["windows"] == 7 and d3["windows"] == 1
    assert r["matmul_peak_flops_per_s"]["float32"] > 1e8
    assert "sequential" in r["ratios"] and (tmp_path / "efficiency.png").stat().st_size > 1000
    assert "| frame-pair | sequential | 8 |" in (tmp_path / "efficiency.md").read_text()


@pytest.mark.slow
def test_quality_bench_smoke(tmp_path):
    """Three tiny models, a 6-case phantom at 32 px, seconds of training: every figure is produced."""
    from tracect.bench.quality import run_quality

    presets = {}
    for name, preset in (("frame-pair", "tiny"), ("slice", "tiny-slice"), ("3d", "tiny-3d")):
        cfg = load_config(preset).replace(model={"image_size": 32}, train={"max_steps": 3})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg.to_json()))
        presets[name] = str(path)
    r = run_quality(tmp_path / "q", minutes=0.05, cases=6, presets=presets, size=32, threads=1, log=None,
                    segmenter={"max_steps": 5, "max_minutes": None, "features": (8, 8, 8, 16, 16, 8)})
    assert set(r["models"]) == {"frame-pair", "slice", "3d"}
    for name, m in r["models"].items():
        assert m["dice"]["n"] >= 1 and m["flow_epe_px"]["n"] >= 1, name
        assert m["seconds_per_volume"] > 0 and m["phase_auroc"] is not None
        assert (tmp_path / "q" / "evaluation" / name / "report.html").exists()
    table = (tmp_path / "q" / "quality.md").read_text()
    assert "flow EPE" in table and "3d" in table
