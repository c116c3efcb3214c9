"""The slice autoencoder and the latent frame model: shapes, training habits, and generation at the
slices' full size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tracect.autoencoder.config import AERunConfig, AutoencoderConfig, load_ae_config
from tracect.autoencoder.latents import mask_fractions, pool_body, pool_flow
from tracect.autoencoder.model import SliceAutoencoder
from tracect.cli.main import main


def test_shapes_and_factor():
    for channels, factor in (((16,), 4), ((16, 16), 8)):
        cfg = AutoencoderConfig(image_size=32, channels=channels, num_res_blocks=1, latent_channels=4, norm_num_groups=8)
        assert cfg.factor == factor and cfg.latent_size == 32 // factor
        ae = SliceAutoencoder(cfg)
        x = torch.rand(3, 1, 32, 32) * 2 - 1
        mu, sigma = ae.encode(x)
        assert mu.shape == sigma.shape == (3, 4, 32 // factor, 32 // factor)
        assert ae.decode(mu).shape == x.shape
        g = torch.Generator().manual_seed(0)
        a = ae(x, torch.Generator().manual_seed(0))[0]
        assert torch.equal(a, ae(x, g)[0])  # the latent noise comes from the given generator
    with pytest.raises(ValueError, match="unshuffle"):
        AutoencoderConfig(unshuffle=3)
    with pytest.raises(ValueError, match="crop"):
        AERunConfig.from_json({"model": {"image_size": 32, "channels": [16], "norm_num_groups": 8},
                               "train": {"crop": 6}})
    cfg = load_ae_config("ae-cpu")
    assert (cfg.model.factor, cfg.model.latent_size, cfg.model.latent_channels) == (4, 64, 8)
    assert load_ae_config("ae-gpu").model.latent_size == 128


def test_training_ends_on_whole_slices():
    """Crops with their own warm-up and decay, then whole slices at as many pixels per step, the rate
    decayed on from where the crops left it; the crop phase's schedule does not depend on what follows."""
    from tracect.autoencoder.train import phase_at
    from tracect.train.trainer import lr_at

    cfg = load_ae_config("ae-cpu")
    tc = cfg.train
    end = tc.max_steps - tc.full_slice_steps
    assert end == 7000 and phase_at(0, cfg)[:2] == (128, 16)
    assert phase_at(end, cfg)[:2] == (256, 4)  # 4 x 256² = 16 x 128² pixels per step
    crops_only = cfg.replace(train={"max_steps": end, "full_slice_steps": 0})
    for step in (0, 100, 3000, end - 1):
        assert phase_at(step, cfg) == phase_at(step, crops_only)
        assert phase_at(step, cfg)[2] == pytest.approx(lr_at(step, crops_only.train))
    lrs = [phase_at(s, cfg)[2] for s in range(end, tc.max_steps)]
    assert lrs[0] == pytest.approx(tc.lr / 10) and lrs[-1] == pytest.approx(tc.lr / 100, rel=0.01)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    with pytest.raises(ValueError, match="full_slice_steps"):
        cfg.replace(train={"full_slice_steps": tc.max_steps})


def test_label_fractions_keep_thin_structures():
    labels = torch.zeros(2, 8, 8, dtype=torch.uint8)
    labels[:, 2, :] = 5  # a one-pixel line: nearest-neighbour downsampling by 4 would miss it
    labels[:, 4:, 4:] = 3
    frac = mask_fractions(labels, 18, 4)
    assert frac.shape == (2, 18, 2, 2) and torch.allclose(frac.sum(1), torch.ones(2, 2, 2))
    assert torch.allclose(frac[0, 5, 0], torch.tensor([0.25, 0.25]))  # a quarter of the top blocks
    assert frac[0, 3, 1, 1] == 1.0 and frac[0, 3, 0, 0] == 0.0
    body = torch.zeros(8, 8, dtype=torch.bool)
    body[7, 7] = True
    assert pool_body(body, 4).tolist() == [[False, False], [False, True]]
    flow = torch.full((1, 2, 8, 8), 4.0)
    assert torch.allclose(pool_flow(flow, 4), torch.ones(1, 2, 2, 2))  # 4 px = one latent pixel


def test_flow_loss_on_latent_frames():
    from tracect.train.losses import flow_loss, warp

    g = torch.Generator().manual_seed(0)
    nxt = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 12, 12, generator=g), 3, 1, 1)  # (B, C, h, w)
    ys, xs = torch.meshgrid(torch.arange(12).float(), torch.arange(12).float(), indexing="ij")
    flow = torch.stack([0.7 * torch.sin(ys / 3), 0.4 * torch.cos(xs / 4)])[None].repeat(2, 1, 1, 1)
    window = torch.stack([warp(nxt, flow), nxt], dim=1)  # (B, K=2, C, h, w)
    body = torch.ones(2, 2, 12, 12, dtype=torch.bool)
    assert flow_loss(window, flow[:, None], body).item() < 1e-6
    assert flow_loss(window, -flow[:, None], body).item() > 1e-3


@pytest.fixture(scope="module")
def latent_setup(tmp_path_factory, real_dir):
    """The real case (and a phantom) at 32 px: an autoencoder trained 4 steps, a cache with latents, and a
    tiny latent model trained on it."""
    from tracect.config import load_config
    from tracect.data.prepare import PrepareConfig, prepare_dataset
    from tracect.phantom import PhantomConfig, write_dataset
    from tracect.train.trainer import Trainer

    from conftest import link_real_case

    root = tmp_path_factory.mktemp("latent")
    ds = link_real_case(root / "ds", real_dir, report="Arterial phase CT of the upper abdomen.")
    write_dataset(root / "ph", 2, seed=3, config=PhantomConfig(size=32, slices=(12, 16)), progress=False)
    assert main(["autoencoder", "train", "--data", str(ds), str(root / "ph"), "--config", "ae-tiny",
                 "--out", str(root / "ae"), "--holdout", "phantom_001", "--quiet"]) == 0
    prepare_dataset(ds, root / "cache", PrepareConfig(size=32, hu_window=(-1024.0, 2048.0)), progress=False)
    assert main(["autoencoder", "encode", "--autoencoder", str(root / "ae"), "--cache", str(root / "cache"),
                 "--quiet"]) == 0
    Trainer(load_config("tiny-latent"), root / "cache", root / "run", progress=False).fit()
    return root


def test_autoencoder_run_folder_and_exact_resume(latent_setup, tmp_path, real_dir):
    root = latent_setup
    info = json.loads((root / "ae" / "checkpoints" / "step_0000004" / "data.json").read_text())
    assert info["latent_scale"] > 0 and info["factor"] == 4 and info["data"]["held_out"] == ["ph/phantom_001"]
    assert "phantom_001" not in info["data"]["sources"]["ph"]["cases"]
    rows = (root / "ae" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,l1") and len(rows) == 5
    assert list((root / "ae" / "samples").glob("step_*.png"))  # the last step's pictures
    # 2 steps, resume, 2 more: the same weights as 4 straight
    from tracect.autoencoder.data import load_bank
    from tracect.autoencoder.train import AutoencoderTrainer

    cfg = load_ae_config("ae-tiny").replace(train={"holdout": ("phantom_001",)})
    bank = load_bank([root / "ds", root / "ph"], 32, cfg.model.hu_window, cfg.train.holdout, log=None)
    AutoencoderTrainer(cfg, bank, tmp_path / "split", device="cpu", progress=False, log=None).fit(max_steps=2)
    resumed = AutoencoderTrainer(cfg, bank, tmp_path / "split", device="cpu", resume=True, progress=False, log=None)
    assert resumed.state.step == 2
    resumed.fit()
    a = load_file(str(root / "ae" / "checkpoints" / "step_0000004" / "ema.safetensors"))
    b = load_file(str(tmp_path / "split" / "checkpoints" / "step_0000004" / "ema.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_autoencoder_evaluate_reports_figures_at_two_sizes(latent_setup, tmp_path, real_dir):
    assert main(["autoencoder", "evaluate", "--autoencoder", str(latent_setup / "ae"), "--data",
                 str(real_dir / "ct.nii.gz"), "--size", "32", "64", "--out", str(tmp_path), "--device", "cpu"]) == 0
    r = json.loads((tmp_path / "autoencoder_eval.json").read_text())
    for size in ("32", "64"):
        f = r["cases"]["ct"][size]
        assert f["slices"] > 10 and f["mae_hu_body"] > 0 and np.isfinite(f["psnr_db"]) and f["hf_ratio"] > 0
        assert (tmp_path / f"ct_{size}.png").stat().st_size > 1000 and (tmp_path / f"ct_{size}_spectrum.png").exists()
        # the yardstick keeps as many values as the latent (4 channels at /4: half the pixels per axis)
        y = f["yardstick_resized"]
        assert y["size"] == int(size) // 2 and 0 < y["mae_hu_body"] < 200 and 0 < y["hf_ratio"] < 1


def test_latent_model_generates_at_the_slices_full_size(latent_setup, real_dir):
    from tracect.generate.pipeline import Generator
    from tracect.generate.sampling import Sampling
    from tracect.io import read_mask

    gen = Generator.from_checkpoint(latent_setup / "run", device="cpu")
    assert gen.latent and gen.config.model.latent_channels == 4
    mask = read_mask(real_dir / "seg.nii.gz")
    r = gen.generate(mask, "Arterial phase CT.", seed=0)
    assert r.ct.shape == mask.shape and np.allclose(r.ct.affine, mask.affine)
    assert r.canonical.shape[1:] == (32, 32)  # the slices' size, not the 8x8 latents
    assert r.info["autoencoder_sha256"] == gen.autoencoder.sha256
    assert -1024 <= r.ct.array.min() and r.ct.array.max() <= 3071
    par = gen.generate(mask, "", seed=0, mode="parallel")
    assert par.canonical.shape == r.canonical.shape
    # lockstep gives each volume as alone
    s = Sampling()
    alone = [gen.generate(mask, rep, seed=k, sampling=s).canonical.array for k, rep in enumerate(("", "Fatty liver."))]
    plans = (gen.plan(mask, rep, seed=k, sampling=s, key=k) for k, rep in enumerate(("", "Fatty liver.")))
    for plan, v in gen.generate_many(plans, s, batch_volumes=2):
        assert np.abs(v.canonical.array - alone[plan.key]).max() < 0.5


def test_latent_model_refuses_other_autoencoder_weights(latent_setup, tmp_path):
    from tracect.generate.pipeline import Generator

    assert main(["autoencoder", "train", "--data", str(latent_setup / "ds"), "--config", "ae-tiny", "--out",
                 str(tmp_path / "other"), "--max-steps", "1", "--quiet"]) == 0
    with pytest.raises(ValueError, match="not the autoencoder"):
        Generator.from_checkpoint(latent_setup / "run", device="cpu", autoencoder=tmp_path / "other")
