"""Batch generation from a manifest: shards, resuming, failures that stay alone, up-front checks."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import save_nifti, toy_case
from tracect.cli.main import main
from tracect.generate import batch
from tracect.generate.batch import Job, ManifestError, Shard, run_jobs
from tracect.utils import preflight
from tracect.utils.paths import UnsafePathError

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


# ------------------------------------------------------------------------- shared helpers


def train_tiny(folder: Path) -> Path:
    """A tiny model (16x16 slices) trained for two steps on toy cases; quality is not the point."""
    from tracect.config import load_config
    from tracect.data.prepare import PrepareConfig, prepare_dataset
    from tracect.train.trainer import Trainer

    root = folder / "ds"
    for i in range(2):
        hu, mask, aff = toy_case(seed=i, n_slices=6, size=24)
        save_nifti(root / "images" / f"c{i}.nii.gz", hu, aff)
        save_nifti(root / "masks" / f"c{i}.nii.gz", mask, aff)
    prepare_dataset(root, folder / "cache", PrepareConfig(size=16), progress=False, log=lambda m: None)
    Trainer(load_config("tiny").replace(train={"max_steps": 2}), folder / "cache", folder / "run",
            device="cpu", progress=False).fit()
    return folder / "run"


def write_manifest(folder: Path, n_masks: int, bad: bool = True, slices_jobs: int = 1) -> Path:
    """``folder/jobs.jsonl``: ``n_masks`` small toy masks (16x16, 3-6 slices), optionally one unreadable
    mask, and ``slices_jobs`` phantom jobs."""
    lines = []
    for i in range(n_masks):
        _, mask, aff = toy_case(seed=i, n_slices=3 + i % 4, size=16)
        save_nifti(folder / "masks" / f"m{i}.nii.gz", mask, aff)
        lines.append({"name": f"m{i}", "mask": f"masks/m{i}.nii.gz", "report": "Liver normal.", "seed": i})
    if bad:
        (folder / "masks" / "bad.nii.gz").write_bytes(b"not a volume")
        lines.insert(1, {"name": "bad", "mask": "masks/bad.nii.gz", "seed": 0})
    for k in range(slices_jobs):
        lines.append({"name": f"p{k}", "slices": 3, "seed": 100 + k})
    path = folder / "jobs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in lines))
    return path


def outputs_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but the shard summaries; sidecars without their timing and the
    paths of the files they list (which name ``folder``)."""
    files = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_dir() or rel.startswith("summaries/"):
            continue
        data = p.read_bytes()
        if p.suffix == ".json":
            d = json.loads(data)
            d.pop("seconds", None)
            d["files"] = {k: Path(v).name for k, v in d.get("files", {}).items()}
            data = json.dumps(d, sort_keys=True).encode()
        files[rel] = data
    return files


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    from conftest import single_thread

    yield from single_thread()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def manifest(tmp_path):
    return write_manifest(tmp_path / "in", 4)


def generate(run_dir, manifest, out, *extra):
    return main(["generate", "--checkpoint", str(run_dir), "--manifest", str(manifest), "--out", str(out),
                 "--quiet", *extra])


# ------------------------------------------------------------------------------- manifest


def test_manifest_reads_jobs_and_resolves_paths_inside_its_folder(tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "b.txt").write_text("Fatty liver.\n")
    (tmp_path / "jobs.jsonl").write_text(
        '{"name": "a", "mask": "masks/a.nii.gz", "report": "Normal.", "seed": 3, "body": "masks/a_body.nii.gz"}\n\n'
        '{"slices": 40, "report_file": "reports/b.txt"}\n')
    a, b = Job.read_manifest(tmp_path / "jobs.jsonl")
    assert (a.name, a.mask, a.slices, a.report, a.seed) == ("a", str(tmp_path / "masks" / "a.nii.gz"),
                                                           None, "Normal.", 3)
    assert a.body == str(tmp_path / "masks" / "a_body.nii.gz")
    assert (b.name, b.mask, b.slices, b.seed, b.body) == ("vol_00003", None, 40, 0, None)
    assert b.report_file == tmp_path / "reports" / "b.txt"


@pytest.mark.parametrize("line, message", [
    ('{"mask": "a.nii.gz", "sead": 1}', r"unknown key\(s\) \['sead'\]"),
    ('{"mask": "a.nii.gz", "slices": 3}', "exactly one of 'mask' or 'slices'"),
    ('{"report": "x"}', "exactly one of 'mask' or 'slices'"),
    ('{"slices": 0}', "'slices' must be an integer >= 1"),
    ('{"slices": 3, "seed": 1.5}', "'seed' must be an integer"),
    ('{"slices": 3, "seed": true}', "'seed' must be an integer"),
    ('{"slices": 3, "seed": -1}', "'seed' must be an integer >= 0"),
    ('{"slices": 3, "report": "a", "report_file": "b"}', "'report' or 'report_file', not both"),
    ('{"slices": 3, "name": "sub/x"}', "must be a plain file name"),
    ('{"slices": 3, "name": ".hidden"}', "must be a plain file name"),
    ('{"slices": 3, "name": "A"}\n{"slices": 3, "name": "a"}', "already used on line 1"),
    ('{"mask": 5}', "'mask' must be a string"),
    ('{"slices": 3, "body": "b.nii.gz"}', "'body' goes with 'mask'"),
    ('[1, 2]', "expected a JSON object"),
    ('{"slices": 3', "invalid JSON"),
    ('', "no jobs"),
])
def test_manifest_errors_name_the_line(tmp_path, line, message):
    (tmp_path / "jobs.jsonl").write_text(line + "\n")
    with pytest.raises(ManifestError, match=message):
        Job.read_manifest(tmp_path / "jobs.jsonl")


def test_manifest_paths_stay_inside_unless_absolute_paths_are_allowed(tmp_path):
    outside = tmp_path / "elsewhere" / "m.nii.gz"
    folder = tmp_path / "cohort"
    folder.mkdir()
    for line in ('{"mask": "../elsewhere/m.nii.gz"}', '{"slices": 3, "report_file": "../r.txt"}'):
        (folder / "jobs.jsonl").write_text(line + "\n")
        with pytest.raises(UnsafePathError, match="outside"):
            Job.read_manifest(folder / "jobs.jsonl")
    (folder / "jobs.jsonl").write_text(json.dumps({"mask": str(outside)}) + "\n")
    with pytest.raises(UnsafePathError, match="absolute paths are not allowed"):
        Job.read_manifest(folder / "jobs.jsonl")
    assert Job.read_manifest(folder / "jobs.jsonl", allow_absolute=True)[0].mask == str(outside)


def test_cli_refuses_absolute_manifest_paths_without_the_flag(run_dir, tmp_path, capsys):
    _, mask, aff = toy_case(n_slices=3, size=16)
    save_nifti(tmp_path / "elsewhere" / "m.nii.gz", mask, aff)
    (tmp_path / "cohort").mkdir()
    manifest = tmp_path / "cohort" / "jobs.jsonl"
    manifest.write_text(json.dumps({"name": "m", "mask": str(tmp_path / "elsewhere" / "m.nii.gz")}) + "\n")
    assert generate(run_dir, manifest, tmp_path / "out", "--no-pictures") == 1
    assert "absolute paths are not allowed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything was made
    assert generate(run_dir, manifest, tmp_path / "out", "--no-pictures", "--allow-absolute-paths") == 0
    assert (tmp_path / "out" / "m.nii.gz").is_file()


# --------------------------------------------------------------------------------- shards


def test_shards_are_disjoint_and_cover_every_job():
    jobs = list(range(23))
    for n in (1, 2, 3, 7, 30):
        parts = [Shard(i, n).take(jobs) for i in range(1, n + 1)]
        assert sorted(j for p in parts for j in p) == jobs
        assert all(j % n == i for i, p in enumerate(parts) for j in p)


def test_shard_from_the_option_or_from_torchrun():
    assert Shard.parse("2/4") == Shard(2, 4) and str(Shard(2, 4)) == "2/4"
    for bad in ("0/2", "3/2", "1", "a/b", "1/2/3", "-1/2"):
        with pytest.raises(ValueError, match="shard"):
            Shard.parse(bad)
    assert Shard.resolve(None, {}) == Shard(1, 1)
    assert Shard.resolve(None, {"RANK": "2", "WORLD_SIZE": "3", "LOCAL_RANK": "0"}) == Shard(3, 3)
    assert Shard.resolve("1/2", {"WORLD_SIZE": "1"}) == Shard(1, 2)
    with pytest.raises(ValueError, match="use one of them"):
        Shard.resolve("1/2", {"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="RANK is not"):
        Shard.resolve(None, {"WORLD_SIZE": "2"})


def test_each_torchrun_process_gets_its_own_gpu(monkeypatch):
    import torch

    assert batch.device_for_process("auto", {}) == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert batch.device_for_process("auto", {"LOCAL_RANK": "1"}) == "cuda:1"
    assert batch.device_for_process("cuda", {"LOCAL_RANK": "0"}) == "cuda:0"
    assert batch.device_for_process("cpu", {"LOCAL_RANK": "1"}) == "cpu"
    with pytest.raises(ValueError, match="LOCAL_RANK 2 but only 2 GPU"):
        batch.device_for_process("auto", {"LOCAL_RANK": "2"})


def test_two_shards_make_exactly_what_one_makes(run_dir, manifest, tmp_path, capsys):
    assert generate(run_dir, manifest, tmp_path / "one") == 1  # the bad mask fails, the rest are made
    out = capsys.readouterr().out
    assert "done 5, skipped 0, failed 1" in out and "failed bad: bad.nii.gz: unreadable NIfTI" in out
    codes = [generate(run_dir, manifest, tmp_path / "two", "--shard", s) for s in ("1/2", "2/2")]
    assert codes == [0, 1]  # job 1 (0-based: the bad mask) is in shard 2
    one, two = outputs_of(tmp_path / "one"), outputs_of(tmp_path / "two")
    assert len(one) == 5 * 4 and one.keys() == two.keys()  # volume, sidecar, montage, fly-through
    assert all(one[k] == two[k] for k in one)  # byte for byte; sidecars up to their timing
    s1, s2 = (json.loads((tmp_path / "two" / "summaries" / f"shard-{i}-of-2.json").read_text()) for i in (1, 2))
    assert (s1["done"], s1["failed"], s2["done"], s2["failed"]) == (3, 0, 2, 1)
    assert s2["failures"][0]["job"] == "bad" and "unreadable NIfTI" in s2["failures"][0]["error"]
    assert batch.combine_summaries(tmp_path / "two" / "summaries", 2) == {
        "done": 5, "skipped": 0, "failed": 1, "not_started": 0, "shards": 2}
    assert not temporaries(tmp_path / "one") and not temporaries(tmp_path / "two")


def test_shard_needs_a_manifest_and_a_valid_spec(run_dir, manifest, tmp_path, capsys):
    assert main(["generate", "--checkpoint", str(run_dir), "--slices", "3", "--shard", "1/2",
                 "--out", str(tmp_path / "x.nii.gz")]) == 1
    assert "--shard needs --manifest" in capsys.readouterr().err
    assert generate(run_dir, manifest, tmp_path / "o", "--shard", "3/2") == 1
    assert "1 <= i <= n" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_splits_the_jobs_and_waits_for_every_process(run_dir, tmp_path):
    """Two processes under torchrun: the second holds only bad masks and fails at once, yet exits
    only after the first has made its volumes (torchrun stops every process when one fails)."""
    write_manifest(tmp_path / "in", 4)  # the mask files
    lines = []
    for i in range(4):  # even positions (shard 1): volumes; odd ones (shard 2): unreadable masks
        lines.append({"name": f"m{i}", "mask": f"masks/m{i}.nii.gz", "seed": i})
        lines.append({"name": f"bad{i}", "mask": "masks/bad.nii.gz"})
    manifest = tmp_path / "in" / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(d) + "\n" for d in lines))
    torchrun = Path(sys.executable).with_name("torchrun")
    tracect = Path(sys.executable).with_name("tracect")
    # 40 steps: the first process is still working when the second has failed all its jobs
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "--monitor-interval", "0.1",
                        str(tracect), "generate", "--checkpoint", str(run_dir), "--manifest", str(manifest),
                        "--out", str(tmp_path / "tr"), "--quiet", "--steps", "40"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode != 0 and "[shard 1/2] done 4, skipped 0, failed 0" in r.stdout, r.stdout + r.stderr
    assert "all 2 shards: done 4, skipped 0, failed 4" in r.stdout, r.stdout + r.stderr
    assert generate(run_dir, manifest, tmp_path / "one", "--steps", "40") == 1
    one, tr = outputs_of(tmp_path / "one"), outputs_of(tmp_path / "tr")
    assert one.keys() == tr.keys()
    assert all(one[k] == tr[k] for k in one if k.endswith(".nii.gz"))


# ------------------------------------------------------------------------ resume, failures


def test_rerun_skips_finished_volumes_and_retries_failures(run_dir, manifest, tmp_path, capsys):
    out = tmp_path / "out"
    assert generate(run_dir, manifest, out, "--no-pictures") == 1
    capsys.readouterr()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    assert generate(run_dir, manifest, out, "--no-pictures") == 1
    printed = capsys.readouterr().out
    assert "done 0, skipped 5, failed 1" in printed and "failed bad:" in printed
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    summary = json.loads((out / "summaries" / "shard-1-of-1.json").read_text())
    assert (summary["done"], summary["skipped"], summary["failed"]) == (0, 5, 1)


def test_remains_of_a_killed_run_are_replaced_and_never_counted(run_dir, manifest, tmp_path, capsys):
    out = tmp_path / "out"
    straight = tmp_path / "straight"
    assert generate(run_dir, manifest, straight, "--no-pictures") == 1
    out.mkdir()
    # what SIGKILL can leave: a volume written but not its sidecar, temporary files mid-write
    (out / "m0.nii.gz").write_bytes(b"half")
    leftovers = [".m1.tmp-abcd1234.nii.gz", ".m2.tmp-zz_99abc.json", ".m3_dicom.tmp-0123abcd"]
    for name in leftovers:
        (out / name).write_bytes(b"partial")
    (out / "summaries").mkdir()
    (out / "summaries" / ".shard-1-of-1.tmp-aaaabbbb.json").write_text("{")
    foreign = out / ".someone-else.tmp-abcdefgh.nii.gz"  # not one of ours: another process may own it
    foreign.write_bytes(b"x")
    capsys.readouterr()
    assert generate(run_dir, manifest, out, "--no-pictures") == 1
    assert "done 5, skipped 0, failed 1" in capsys.readouterr().out
    assert temporaries(out) == [foreign.name]
    foreign.unlink()
    a, b = outputs_of(out), outputs_of(straight)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a if k.endswith(".nii.gz"))


@pytest.mark.parametrize("batch_volumes", [1, 8])
def test_a_full_disk_mid_run_stops_with_a_summary(run_dir, manifest, tmp_path, monkeypatch, batch_volumes):
    """The first write fails with a full disk: that job failed, every job not yet written is not
    started. One volume at a time, the unreadable mask (second job) was never reached; in a cohort of
    8 it failed on its own while the cohort filled up."""
    from tracect.generate import outputs

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs, "write_outputs", full)
    jobs = Job.read_manifest(manifest)
    summary = run_jobs(jobs, run_dir, tmp_path / "out", pictures=False, device="cpu", progress=False,
                       log=lambda m: None, summary_path=tmp_path / "out" / "s.json", batch_volumes=batch_volumes)
    bad_reached = batch_volumes > 1
    expected = (0, 1 + bad_reached, len(jobs) - 1 - bad_reached)
    assert (summary["done"], summary["failed"], summary["not_started"]) == expected
    assert "No space left on device" in summary["stopped"]
    assert json.loads((tmp_path / "out" / "s.json").read_text())["not_started"] == expected[2]


def test_report_file_is_read_when_the_job_runs(run_dir, tmp_path):
    (tmp_path / "r.txt").write_text("Arterial phase.\n", encoding="utf-8")
    (tmp_path / "jobs.jsonl").write_text('{"name": "a", "slices": 2, "report_file": "r.txt"}\n'
                                         '{"name": "b", "slices": 2, "report_file": "missing.txt"}\n')
    summary = run_jobs(Job.read_manifest(tmp_path / "jobs.jsonl"), run_dir, tmp_path / "out", pictures=False,
                       device="cpu", progress=False, log=lambda m: None)
    assert summary["done"] == 1 and summary["failures"][0]["job"] == "b"
    assert json.loads((tmp_path / "out" / "a.json").read_text())["report"] == "Arterial phase."


# ---------------------------------------------------------------------------- preflight


def _chmod_blocks_writes(folder: Path) -> bool:
    """False where permission bits do not stop writes (root, some containers)."""
    try:
        (folder / "probe").write_text("x")
    except PermissionError:
        return True
    (folder / "probe").unlink()
    return False


def test_an_output_folder_that_cannot_be_made_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(preflight.PreflightError, match=r"cannot create the output folder .*file/out"):
        preflight.check_writable(tmp_path / "file" / "out")
    with pytest.raises(preflight.PreflightError, match="exists and is not a folder"):
        preflight.check_writable(tmp_path / "file")


def test_a_read_only_output_folder_is_named(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not _chmod_blocks_writes(locked):
            pytest.skip("permission bits do not stop this user's writes (root)")
        with pytest.raises(preflight.PreflightError, match=f"cannot write to the output folder {locked}"):
            preflight.check_writable(locked)
    finally:
        locked.chmod(0o700)


def _fake_disk(monkeypatch, free: int):
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=free))


def test_too_little_disk_space_says_needed_and_free(tmp_path, monkeypatch):
    _fake_disk(monkeypatch, 3 * 1024 ** 2)
    preflight.check_free_space(tmp_path, 2 * 1024 ** 2)
    with pytest.raises(preflight.PreflightError, match=r"need about 10\.5 MiB, 3\.0 MiB free"):
        preflight.check_free_space(tmp_path, 10 * 1024 ** 2)


def test_generate_checks_the_disk_before_loading_the_model(run_dir, manifest, tmp_path, monkeypatch, capsys):
    from tracect.generate import pipeline

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the checks")

    monkeypatch.setattr(pipeline.Generator, "from_checkpoint", must_not_load)
    _fake_disk(monkeypatch, 1024)
    assert generate(run_dir, manifest, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert f"not enough free space in {tmp_path / 'out'}: 6 volume(s) need about" in err
    assert "1.0 KiB free" in err
    (tmp_path / "file").write_text("x")
    assert generate(run_dir, manifest, tmp_path / "file" / "out") == 1
    assert "cannot create the output folder" in capsys.readouterr().err


def test_prepare_checks_the_disk_and_the_folder_first(toy_dataset, tmp_path, monkeypatch, capsys):
    from tracect.data import prepare

    monkeypatch.setattr(prepare, "prepare_case", lambda *a: pytest.fail("work started before the checks"))
    _fake_disk(monkeypatch, 1024)
    assert main(["prepare", str(toy_dataset), "--out", str(tmp_path / "cache"), "--size", "16", "--quiet"]) == 1
    assert "3 case(s) need about" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["prepare", str(toy_dataset), "--out", str(tmp_path / "file" / "c"), "--quiet"]) == 1
    assert "cannot create the output folder" in capsys.readouterr().err


def test_size_estimates_from_headers(tmp_path, toy_dataset):
    from tracect.data.layout import load_dataset

    cases = load_dataset(toy_dataset).cases  # 10, 11 and 12 slices
    assert preflight.estimate_cache_bytes(cases, 16) == (10 + 11 + 12) * 16 * 16 * 8
    # 3 mm slices made 6 mm: half as many
    assert preflight.estimate_cache_bytes(cases[:1], 16, slice_thickness=6.0) == 5 * 16 * 16 * 8
    save_nifti(tmp_path / "m.nii.gz", np.zeros((20, 30, 7), np.uint8), np.eye(4))
    jobs = [(Job("a", str(tmp_path / "m.nii.gz"), None, "", 0), None), (Job("b", None, 5, "", 0), None),
            (Job("c", str(tmp_path / "nothing.nii.gz"), None, "", 0), None)]
    voxels = 20 * 30 * 7 + 5 * 64 * 64
    assert batch.estimate_output_bytes(jobs, pictures=False) == int(voxels * 1.5 * 2 + 3 * 16 * 1024)
