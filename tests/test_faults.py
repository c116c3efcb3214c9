"""Faults: SIGKILL at a random (seeded) moment, rerun, and the result equals an uninterrupted run.

``tests/test_prepare.py`` kills ``prepare`` right after its second case and compares the arrays; here
the moment is drawn at random, the kill is repeated, and every file of the cache is compared byte for
byte. Batch ``generate`` gets the same treatment.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import save_nifti, toy_case
from test_batch import ENV, one_thread, outputs_of, temporaries, train_tiny  # noqa: F401 (fixture)
from tracect.cli.main import main
from tracect.io import read_volume

TRACECT = [sys.executable, "-m", "tracect.cli.main"]


def kill_after(cmd: list[str], progress, at_least: int, rng: random.Random, limit_s: float = 120) -> int:
    """Start ``cmd``, wait until ``progress()`` reaches ``at_least``, then a random 0-0.2 s more (so
    the kill can land in the middle of a write), and SIGKILL it. Returns ``progress()`` after the kill;
    fails if the command ended on its own first."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + limit_s
        while progress() < at_least and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.2))
        assert proc.poll() is None, "the command finished before the kill: give it more work"
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    return progress()


def all_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -------------------------------------------------------------------------------- prepare


def test_prepare_killed_twice_then_resumed_gives_the_same_bytes(tmp_path):
    rng = random.Random(7)
    root = tmp_path / "ds"
    for i in range(8):
        hu, mask, aff = toy_case(seed=i, n_slices=40, size=96)
        save_nifti(root / "images" / f"c{i}.nii.gz", hu, aff)
        save_nifti(root / "masks" / f"c{i}.nii.gz", mask, aff)
    cmd = TRACECT + ["prepare", str(root), "--size", "32", "--quiet"]
    killed = tmp_path / "killed"
    done = lambda: len(list((killed / "cases").glob("c*")))  # noqa: E731 (complete cases only)
    first = kill_after(cmd + ["--out", str(killed)], done, rng.randint(1, 2), rng)
    second = kill_after(cmd + ["--out", str(killed)], done, first + 1, rng)
    assert 0 < first <= second < 8, (first, second)
    for case in (killed / "cases").glob("c*"):  # whatever is in place is whole
        assert (case / "meta.json").is_file() and len(list(case.glob("*.npy"))) == 4
    assert subprocess.run(cmd + ["--out", str(killed)], env=ENV, capture_output=True).returncode == 0
    assert main(["prepare", str(root), "--size", "32", "--quiet", "--out", str(tmp_path / "straight")]) == 0
    a, b = all_files(killed), all_files(tmp_path / "straight")
    assert a.keys() == b.keys() and len(a) == 8 * 5 + 3  # 4 arrays + meta per case; config, index, manifest
    assert [k for k in a if a[k] != b[k]] == []
    assert not temporaries(killed)


# ------------------------------------------------------------------------------- generate


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("tiny"))


def test_batch_generate_killed_twice_then_resumed_equals_one_run(run_dir, tmp_path):
    rng = random.Random(11)
    folder = tmp_path / "in"
    lines = []
    for i in range(14):
        _, mask, aff = toy_case(seed=i, n_slices=3 + i % 5, size=16)
        save_nifti(folder / "masks" / f"m{i}.nii.gz", mask, aff)
        lines.append({"name": f"m{i:02d}", "mask": f"masks/m{i}.nii.gz", "report": "Liver normal.", "seed": i})
    manifest = folder / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(d) + "\n" for d in lines))
    killed = tmp_path / "killed"
    cmd = TRACECT + ["generate", "--checkpoint", str(run_dir), "--manifest", str(manifest), "--out", str(killed),
                     "--quiet", "--steps", "6"]
    finished = lambda: len(list(killed.glob("m*.json")))  # noqa: E731 (the sidecar is written last)
    first = kill_after(cmd, finished, rng.randint(1, 3), rng)
    second = kill_after(cmd, finished, first + 1, rng)
    assert 0 < first <= second < len(lines), (first, second)
    for sidecar in killed.glob("m*.json"):  # a finished volume is whole
        assert read_volume(sidecar.with_suffix(".nii.gz")).shape[2] >= 3
    assert subprocess.run(cmd, env=ENV, capture_output=True).returncode == 0
    assert main(["generate", "--checkpoint", str(run_dir), "--manifest", str(manifest), "--quiet", "--steps", "6",
                 "--out", str(tmp_path / "straight")]) == 0
    a, b = outputs_of(killed), outputs_of(tmp_path / "straight")
    assert a.keys() == b.keys() and len(a) == 4 * len(lines)  # volume, sidecar, montage, fly-through
    assert [k for k in a if a[k] != b[k]] == []  # NIfTI byte for byte; sidecars up to timing and paths
    assert not temporaries(killed)
    summary = json.loads((killed / "summaries" / "shard-1-of-1.json").read_text())
    assert summary["done"] + summary["skipped"] == len(lines) and summary["skipped"] >= second
