"""Data-parallel training: 2 Gloo processes under torchrun take the same steps as 1 process with the
same global batch, and checkpoints move between 2-process and 1-process runs both ways."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tracect.config import load_config
from tracect.train.distributed import ShardSampler, StepLayout
from tracect.train.trainer import Trainer

from conftest import single_thread, toy_cache_at


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    yield from single_thread()


@pytest.fixture(scope="module")
def toy_cache(tmp_path_factory) -> Path:
    return toy_cache_at(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def text():
    from tracect.model.text import TextEncoder

    return TextEncoder("minilm", max_tokens=16)


def tiny(tmp_path: Path, **train) -> tuple:
    """The tiny preset for 5 steps; all of steps 1-3 in the warm-up, so their learning rates do not
    depend on max_steps (a run stopped with --max-steps 3 takes the same first steps)."""
    cfg = load_config("tiny").replace(train={"max_steps": 5, "warmup_steps": 3, "checkpoint_every": 3,
                                             "keep_checkpoints": 3, **train})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.to_json()))
    return cfg, path


def torchrun(config: Path, cache: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
           "-m", "tracect.cli.main", "train", "--config", str(config), "--data", str(cache), "--out", str(out),
           "--device", "cpu", "--quiet", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def checkpoint(run: Path, step: int) -> dict[str, torch.Tensor]:
    ckpt = run / "checkpoints" / f"step_{step:07d}"
    out = {}
    for name in ("model", "ema", "optimizer"):
        out.update({f"{name}.{k}": v for k, v in load_file(str(ckpt / f"{name}.safetensors")).items()})
    return out


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    assert not any(k.startswith(("model.module.", "ema.module.")) for k in a)  # unwrapped weights
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def metrics(run: Path) -> list[list[float]]:
    """(step, loss, loss_diffusion, loss_flow, lr, grad_norm) of each row of metrics.csv."""
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    return [[float(v) for v in r.split(",")[:6]] for r in rows]


@pytest.mark.parametrize("batch,accum,world", [(4, 1, 2), (2, 2, 2), (3, 2, 2), (6, 2, 4), (4, 3, 4),
                                               (6, 4, 8), (8, 1, 1)])
def test_each_step_is_the_one_process_step_split_over_ranks(batch, accum, world):
    stream = list(range(1000, 1000 + 5 * batch * accum))
    n = batch * accum
    shares = []
    for rank in range(world):
        L = StepLayout(batch, accum, world, rank)
        assert L.micro_batches * L.local_batch * world == n and L.local_batch <= batch
        it = iter(ShardSampler(stream, L))
        shares.append([[next(it) for _ in range(n // world)] for _ in range(5)])
        for i in range(L.micro_batches):  # each part lies inside one micro-batch of the one-process step
            whole, part = L.placement(i)
            assert len(whole) == batch and whole.start % batch == 0 and len(whole[part]) == L.local_batch
    for step in range(5):
        union = sorted(v for rank in range(world) for v in shares[rank][step])
        assert union == stream[step * n:(step + 1) * n]


def test_a_global_batch_that_does_not_split_is_refused_with_the_numbers():
    with pytest.raises(ValueError, match=r"4 x 1 = 4 windows cannot be split evenly over 3 processes"):
        StepLayout(4, 1, 3, 0)


def test_max_minutes_counts_the_whole_run_over_resumes(toy_cache, tmp_path, text):
    cfg, _ = tiny(tmp_path)
    Trainer(cfg, toy_cache, tmp_path / "r", text=text, progress=False).fit(max_steps=2)
    trained = json.loads((tmp_path / "r" / "checkpoints" / "step_0000002" / "trainer.json").read_text())
    budget = trained["elapsed_s"] / 60 * 0.99  # already spent by the first session
    resumed = Trainer(cfg.replace(train={"max_minutes": budget}), toy_cache, tmp_path / "r", text=text,
                      progress=False, resume=True)
    assert resumed.fit().step == 2


def test_two_gloo_processes_equal_one_and_their_checkpoint_resumes_in_one(toy_cache, tmp_path, text):
    # 4 windows per step: each rank takes 2 of the one micro-batch; the region term's share splits too
    cfg, cfg_path = tiny(tmp_path, region_loss_weight=2.0)
    Trainer(cfg, toy_cache, tmp_path / "one", text=text, progress=False).fit()  # steps 1-5 straight
    r = torchrun(cfg_path, toy_cache, tmp_path / "ddp", "--max-steps", "3")
    assert "global batch 4 windows, each process 1 micro-batch(es) of 2" in r.stderr
    assert max_difference(checkpoint(tmp_path / "one", 3), checkpoint(tmp_path / "ddp", 3)) <= 1e-5
    # rank 0 alone logs, the loss summed over the ranks
    one, ddp = metrics(tmp_path / "one")[:3], metrics(tmp_path / "ddp")
    assert [row[0] for row in ddp] == [1, 2, 3]
    assert all(abs(a - b) <= 1e-4 * max(1.0, abs(a)) for x, y in zip(one, ddp) for a, b in zip(x, y))

    trainer = json.loads((tmp_path / "ddp" / "checkpoints" / "step_0000003" / "trainer.json").read_text())
    assert trainer["world_size"] == 2 and trainer["consumed"] == 12
    resumed = Trainer(cfg, toy_cache, tmp_path / "ddp", text=text, progress=False, resume=True)
    assert resumed.state.consumed == 12
    resumed.fit()
    assert max_difference(checkpoint(tmp_path / "one", 5), checkpoint(tmp_path / "ddp", 5)) <= 1e-5


def test_a_one_process_checkpoint_resumes_in_two_processes(toy_cache, tmp_path, text):
    # 2 micro-batches of 2 per step: each rank takes one whole micro-batch
    cfg, cfg_path = tiny(tmp_path, batch_size=2, grad_accum=2)
    Trainer(cfg, toy_cache, tmp_path / "one", text=text, progress=False).fit()
    Trainer(cfg, toy_cache, tmp_path / "split", text=text, progress=False).fit(max_steps=3)
    r = torchrun(cfg_path, toy_cache, tmp_path / "split", "--resume")
    assert "resuming from" in r.stderr and "each process 1 micro-batch(es) of 2" in r.stderr
    assert max_difference(checkpoint(tmp_path / "one", 5), checkpoint(tmp_path / "split", 5)) <= 1e-5
    assert [row[0] for row in metrics(tmp_path / "split")] == [1, 2, 3, 4, 5]
