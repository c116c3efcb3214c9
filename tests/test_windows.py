"""Training windows: shapes for any K, determinism, resumable and shardable order."""

from __future__ import annotations

import itertools

import pytest
import torch

from tracect.data.prepare import PrepareConfig, prepare_dataset
from tracect.data.windows import FrameWindows, WindowSampler


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from conftest import save_nifti, toy_case

    root = tmp_path_factory.mktemp("w") / "ds"
    for i in range(3):
        hu, mask, aff = toy_case(seed=i, n_slices=8 + i)
        save_nifti(root / "images" / f"c{i}.nii.gz", hu, aff)
        save_nifti(root / "masks" / f"c{i}.nii.gz", mask, aff)
    out = root.parent / "cache"
    prepare_dataset(root, out, PrepareConfig(size=16), progress=False)
    return out


@pytest.mark.parametrize("k", [1, 2, 3])
def test_window_shapes(cache, k):
    ds = FrameWindows(cache, k=k, split=None)
    assert len(ds) == sum(n - k + 1 for n in (8, 9, 10))
    item = ds[len(ds) - 1]
    assert item["image"].shape == (k, 16, 16) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (k, 16, 16) and item["mask"].dtype == torch.int64
    assert item["body"].dtype == torch.bool
    assert item["flow"].shape == (k - 1, 2, 16, 16)
    assert item["position"].shape == (k,) and float(item["position"][-1]) == 1.0  # last slice of its case
    assert item["spacing"].shape == (3,)
    assert item["case"] == "c2" and isinstance(item["report"], str)
    # consecutive windows share slices
    a, b = ds[0], ds[1]
    if k > 1:
        assert torch.equal(a["image"][1:], b["image"][:-1])


def test_batches_collate(cache):
    loader = torch.utils.data.DataLoader(FrameWindows(cache, k=2, split=None), batch_size=4,
                                         sampler=WindowSampler(24, seed=1))
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 2, 16, 16) and batch["flow"].shape == (4, 1, 2, 16, 16)
    assert len(batch["report"]) == 4


def test_sampler_is_seeded_resumable_and_sharded():
    take = lambda s, n: list(itertools.islice(iter(s), n))  # noqa: E731
    a = take(WindowSampler(10, seed=3), 35)
    assert a == take(WindowSampler(10, seed=3), 35)
    assert a != take(WindowSampler(10, seed=4), 35)
    assert sorted(a[:10]) == list(range(10)) and sorted(a[10:20]) == list(range(10))  # epochs
    assert a[17:] == take(WindowSampler(10, seed=3, start=17), 18)  # resume mid-epoch
    r0 = take(WindowSampler(10, seed=3, rank=0, world_size=2), 5)
    r1 = take(WindowSampler(10, seed=3, rank=1, world_size=2), 5)
    assert sorted(r0 + r1) == list(range(10))
    with pytest.raises(ValueError):
        WindowSampler(10, rank=2, world_size=2)


def test_bench_windows_command(cache, tmp_path):
    import json

    from tracect.cli.main import main

    out = tmp_path / "w.json"
    assert main(["bench", "windows", "--cache", str(cache), "--workers", "0", "--batches", "3",
                 "--batch-size", "4", "--out", str(out)]) == 0
    (r,) = json.loads(out.read_text())
    assert r["window_shape"] == [2, 16, 16] and r["workers"] == 0
    assert len(r["windows_per_s_runs"]) == 3 and r["windows_per_s_median"] > 0
