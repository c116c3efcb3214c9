"""Baselines of issue 6: the per-slice model and the 3D model train and sample through the same API."""

from __future__ import annotations

import numpy as np
import pytest

from tracect.config import load_config
from tracect.generate.pipeline import Generator
from tracect.io import Volume, read_mask


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory, real_dir):
    from tracect.data.prepare import PrepareConfig, prepare_dataset

    from conftest import link_real_case

    root = link_real_case(tmp_path_factory.mktemp("base") / "ds", real_dir)
    prepare_dataset(root, root.parent / "cache", PrepareConfig(size=16), progress=False)
    return root.parent / "cache"


@pytest.mark.parametrize("preset", ["tiny-slice", "tiny-3d"])
def test_baseline_trains_and_generates_any_length(preset, tiny_cache, real_dir, tmp_path):
    from tracect.train.trainer import Trainer

    config = load_config(preset).replace(train={"max_steps": 3})
    Trainer(config, tiny_cache, tmp_path / "run", progress=False).fit()
    gen = Generator.from_checkpoint(tmp_path / "run", device="cpu")
    assert gen.config.model.kind == config.model.kind
    src = read_mask(real_dir / "seg.nii.gz").canonical()
    for n in (1, 13, 45):  # 45: longer than the real case and not a multiple of the 3D block
        mask = Volume(np.concatenate([src.array] * 2)[:n], src.affine)
        for mode in ("sequential", "parallel"):
            r = gen.generate(mask, "", seed=0, mode=mode, steps=2)
            assert r.ct.shape == mask.shape and np.allclose(r.ct.affine, mask.affine)
            if config.model.kind == "3d":
                assert r.info["windows"] == 1  # the whole volume in one network window
                if n > 8 and mode == "parallel":  # or in windows of its training block, fused
                    w = gen.generate(mask, "", seed=0, mode=mode, steps=2, window=8, overlap=2)
                    assert w.ct.shape == mask.shape and w.info["windows"] == len(range(0, n - 8, 6)) + 1
                elif n > 8:
                    with pytest.raises(ValueError, match="parallel"):
                        gen.generate(mask, "", seed=0, mode=mode, steps=2, window=8, overlap=2)
            else:
                assert r.info["windows"] == r.canonical.shape[0]  # one independent window per slice


def test_baseline_presets_share_the_frame_pair_network():
    pair, sl, d3 = (load_config(p).model for p in ("cpu", "cpu-slice", "cpu-3d"))
    for m in (sl, d3):
        assert (m.channels, m.attention_levels, m.num_res_blocks, m.cross_attention_dim, m.text_units, m.findings) == \
               (pair.channels, pair.attention_levels, pair.num_res_blocks, pair.cross_attention_dim, pair.text_units,
                pair.findings)
    assert (sl.frames, sl.known_frames) == (1, False)
    assert d3.kind == "3d" and not d3.known_frames
    assert load_config("cpu-slice").train.flow_loss_weight == 0


def test_four_frame_windows_train_and_chain(tiny_cache, real_dir, tmp_path):
    """K = 4 (three new slices per network call): trains with the flow loss over its three pairs,
    chains sequentially with the burn-in and in parallel mode, and keeps the mask's grid."""
    from tracect.train.trainer import Trainer

    config = load_config("tiny").replace(model={"frames": 4}, train={"max_steps": 2})
    Trainer(config, tiny_cache, tmp_path / "run", progress=False).fit()
    gen = Generator.from_checkpoint(tmp_path / "run", device="cpu")
    assert gen.config.model.frames == 4
    src = read_mask(real_dir / "seg.nii.gz").canonical()
    for n in (1, 4, 5, 45):
        mask = Volume(np.concatenate([src.array] * 2)[:n], src.affine)
        seq = gen.generate(mask, "", seed=0, steps=2)
        par = gen.generate(mask, "", seed=0, steps=2, mode="parallel", chunk=2)
        Z = seq.canonical.shape[0]
        B = min(16, Z - 1)  # burn-in slices
        assert seq.info["warmup"] == B and par.info["warmup"] == 0
        chained = Z + B
        assert seq.info["windows"] == (1 if chained <= 4 else len(range(0, chained - 4 + 1, 3)) + ((chained - 4) % 3 > 0))
        for r in (seq, par):
            assert r.ct.shape == mask.shape and np.allclose(r.ct.affine, mask.affine)
    with pytest.raises(ValueError, match="warmup"):
        gen.generate(mask, "", seed=0, steps=1, warmup=-1)
