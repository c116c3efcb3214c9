"""The command line: help is instant, info and convert do what the README shows."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

from tracect.cli.main import main
from tracect.io import read_volume


def test_help_is_fast_and_lists_commands():
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "tracect.cli.main", "--help"], capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    assert out.returncode == 0
    for cmd in ("info", "convert", "phantom", "prepare", "demo", "bench"):
        assert cmd in out.stdout
    # no torch/transformers import behind --help (a loose bound: interpreter start-up dominates)
    check = subprocess.run([sys.executable, "-c", "import sys, tracect.cli.main; "
                            "print('torch' in sys.modules, 'transformers' in sys.modules)"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "False False", elapsed


def test_info_json_on_real_ct_and_mask(real_dir, capsys):
    assert main(["info", str(real_dir / "ct.nii.gz"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["kind"] == "image" and d["shape"] == [122, 101, 30] and d["spacing"] == [3.0, 3.0, 3.0]
    assert d["orientation"] == "RAS" and d["dtype"] == "int16" and (d["min"], d["max"]) == (-1100, 1207)
    assert main(["info", str(real_dir / "seg.nii.gz"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["kind"] == "mask" and len(m["labels"]) == 41 and m["unknown_labels"] == []
    assert m["labels"]["5"]["name"] == "liver" and m["labels"]["5"]["voxels"] > 1000


def test_info_text_and_errors(real_dir, tmp_path, capsys):
    assert main(["info", str(real_dir / "seg.nii.gz")]) == 0
    assert "liver" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "missing.nii.gz")]) == 1
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b garbage")
    assert main(["info", str(tmp_path / "bad.nii.gz")]) == 1
    assert "unreadable NIfTI" in capsys.readouterr().err


def test_convert_nrrd_to_nifti_and_back(real_dir, tmp_path):
    assert main(["convert", str(real_dir / "ct.nii.gz"), str(tmp_path / "ct.nrrd")]) == 0
    assert main(["convert", str(tmp_path / "ct.nrrd"), str(tmp_path / "ct.nii.gz")]) == 0
    a, b = read_volume(real_dir / "ct.nii.gz"), read_volume(tmp_path / "ct.nii.gz")
    assert np.array_equal(a.array, b.array) and np.allclose(a.affine, b.affine, atol=1e-4)
    assert main(["convert", str(tmp_path / "ct.nrrd"), str(tmp_path / "ct.nii.gz")]) == 1  # exists
    assert main(["convert", str(tmp_path / "ct.nrrd"), str(tmp_path / "ct.nii.gz"), "--overwrite"]) == 0


def test_demo_generates_from_the_shipped_weights(tmp_path, capsys):
    """`tracect demo` without --train needs no training: it generates from the weights in the package
    (the same model on any machine), a volume longer than any it was trained on, with its pictures."""
    from tracect.cli.demo import shipped_weights
    from tracect.model.weights import checkpoint_hash

    shipped = shipped_weights()
    record = json.loads((shipped / "data.json").read_text())["export"]
    assert record["recipe"].startswith("tracect demo --train") and record["step"] > 0
    assert sum(p.stat().st_size for p in shipped.iterdir()) < 20 * 2**20  # the repository's budget
    # (2 sampler steps instead of the model's 12: what is checked here does not depend on them)
    assert main(["demo", "--out", str(tmp_path / "d"), "--slices", "8", "--steps", "2"]) == 0
    side = json.loads((tmp_path / "d" / "generated_ct.json").read_text())
    assert side["checkpoint_sha256"] == checkpoint_hash(shipped) and side["steps"] == 2
    assert side["generation_grid"]["shape"][0] > record["longest_volume"]
    for name in ("generated_ct.nii.gz", "generated_ct.png", "summary.txt", "heldout_reference_ct.nii.gz"):
        assert (tmp_path / "d" / name).is_file(), name
    assert main(["demo", "--out", str(tmp_path / "d"), "--train-steps", "5"]) == 1  # goes with --train
    assert "--train" in capsys.readouterr().err


def test_train_time_bound_can_be_lifted():
    """`--max-minutes none` trains exactly --max-steps (a machine-independent recipe); 0 or less is refused."""
    import pytest

    from tracect.cli.main import build_parser
    from tracect.cli.train import overrides

    parse = build_parser().parse_args
    base = ["train", "--config", "tiny", "--data", "c", "--out", "r", "--max-steps", "10"]
    assert overrides(parse(base + ["--max-minutes", "none"])) == {"max_steps": 10, "max_minutes": None}
    assert overrides(parse(base + ["--max-minutes", "2.5"])) == {"max_steps": 10, "max_minutes": 2.5}
    assert overrides(parse(["train", "--config", "tiny", "--data", "c", "--out", "r"])) == {}
    with pytest.raises(SystemExit):
        parse(base + ["--max-minutes", "0"])
