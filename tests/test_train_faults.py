"""``tracect train`` killed with SIGKILL at a random moment and re-run with ``--resume`` ends where an
uninterrupted run ends, and leaves no temporary or partial file in its run folder."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tracect.config import load_config
from tracect.train.run_files import remove_leftovers
from tracect.train.trainer import Trainer

from conftest import single_thread, toy_cache_at

STEPS = 16


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    yield from single_thread()


@pytest.fixture(scope="module")
def toy_cache(tmp_path_factory) -> Path:
    return toy_cache_at(tmp_path_factory.mktemp("toy"))


def train_cli(config: Path, cache: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tracect.cli.main", "train", "--config", str(config), "--data", str(cache),
            "--out", str(out), "--device", "cpu", "--quiet", *extra]


def _latest_step(run: Path) -> int:
    try:
        return int((run / "latest").read_text().strip().removeprefix("step_"))
    except (FileNotFoundError, ValueError):
        return -1


def weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = run / "checkpoints" / (run / "latest").read_text().strip()
    return {f"{n}.{k}": v for n in ("model", "ema", "optimizer")
            for k, v in load_file(str(ckpt / f"{n}.safetensors")).items()}


def test_sigkill_at_a_random_moment_then_resume_equals_the_uninterrupted_run(toy_cache, tmp_path):
    from tracect.model.text import TextEncoder

    # checkpoints often, so a kill may land inside one (or inside the removal of an old one)
    cfg = load_config("tiny").replace(train={"max_steps": STEPS, "checkpoint_every": 2, "keep_checkpoints": 2})
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(cfg.to_json()))
    # checkpoints do not touch the training state: the reference skips all but the last
    Trainer(cfg.replace(train={"checkpoint_every": STEPS}), toy_cache, tmp_path / "straight",
            text=TextEncoder("minilm", max_tokens=16), progress=False).fit()

    # the moment: a random time (up to about a step) after a random checkpoint, so it falls anywhere in
    # the run whatever the machine's speed
    rng = random.Random()
    target, jitter = rng.randrange(2, STEPS - 7, 2), rng.uniform(0.0, 0.1)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(train_cli(cfg_path, toy_cache, run), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while _latest_step(run) < target:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, f"no checkpoint of step {target} within 180 s"
            time.sleep(0.01)
        time.sleep(jitter)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    note = f"killed {jitter:.3f} s after checkpoint {target}, with {_latest_step(run)} the latest"
    assert proc.returncode == -signal.SIGKILL, note
    assert _latest_step(run) < STEPS, note

    r = subprocess.run(train_cli(cfg_path, toy_cache, run, "--resume"), env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stderr
    a, b = weights(tmp_path / "straight"), weights(run)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6, note

    leftovers = [p for p in run.rglob("*") if ".tmp-" in p.name]
    assert not leftovers, (note, leftovers)
    for ckpt in (run / "checkpoints").iterdir():  # every checkpoint whole and readable
        assert ckpt.name.startswith("step_"), (note, ckpt)
        for name in ("model", "ema", "optimizer", "rng"):
            load_file(str(ckpt / f"{name}.safetensors"))
        for name in ("trainer", "config", "data"):
            json.loads((ckpt / f"{name}.json").read_text())
    rows = (run / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == [str(i) for i in range(1, STEPS + 1)], note
    assert all(len(row.split(",")) == len(rows[0].split(",")) for row in rows), note


def test_leftovers_of_a_killed_run_are_removed_and_nothing_else(tmp_path):
    run = tmp_path / "run"
    ckpts = run / "checkpoints"
    files = ("model.safetensors", "ema.safetensors", "optimizer.safetensors", "rng.safetensors",
             "trainer.json", "config.json")
    for step in (2, 3, 4):
        (ckpts / f"step_{step:07d}").mkdir(parents=True)
        for f in files if step != 2 else files[:2]:  # step 2: its removal was cut short
            (ckpts / f"step_{step:07d}" / f).write_text("x")
    (run / "latest").write_text("step_0000003\n")  # step 4 renamed into place, pointer not yet moved
    stale = [ckpts / ".step_0000005.tmp-ab12cd34", run / ".latest.tmp-k2j4h6g8",
             run / "samples" / ".step_0000004.tmp-zzzz1111.png"]
    stale[0].mkdir()
    (stale[0] / "model.safetensors").write_text("half")
    stale[1].write_text("step_00")
    stale[2].parent.mkdir()
    stale[2].write_text("")
    (run / "samples" / "step_0000003.png").write_text("png")
    (run / "metrics.csv").write_text("step\n")

    removed = remove_leftovers(run)
    assert sorted(removed) == sorted(stale + [ckpts / "step_0000002"])
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_0000003", "step_0000004"]
    assert (run / "samples" / "step_0000003.png").is_file() and (run / "metrics.csv").is_file()
