"""The frame-pair model: shapes, schedule algebra, losses, condition dropout, training and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tracect.config import ModelConfig, RunConfig, load_config
from tracect.diffusion.sampler import ddim_sample
from tracect.diffusion.schedule import Schedule
from tracect.config import DiffusionConfig
from tracect.model.denoiser import FrameDenoiser
from tracect.train.losses import flow_loss, region_loss, warp
from tracect.train.trainer import Trainer

TINY = dict(image_size=16, channels=(8, 16), attention_levels=(False, True), num_head_channels=8,
            norm_num_groups=4, mask_embed_dim=2, text_max_tokens=16, cross_attention_dim=16)


@pytest.fixture(scope="session")
def text():
    from tracect.model.text import TextEncoder

    return TextEncoder("minilm", max_tokens=16)


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory, real_dir):
    from tracect.data.prepare import PrepareConfig, prepare_dataset

    from conftest import link_real_case

    root = link_real_case(tmp_path_factory.mktemp("real") / "ds", real_dir,
                          report="Portal venous phase CT of the upper abdomen.")
    out = root.parent / "cache"
    prepare_dataset(root, out, PrepareConfig(size=16), progress=False)
    return out


@pytest.mark.parametrize("kind,k", [("slice", 1), ("pair", 2), ("pair", 3), ("3d", 8)])
def test_denoiser_shapes(kind, k):
    model = FrameDenoiser(ModelConfig(kind=kind, frames=k, flow_input=kind == "pair", **TINY))
    B = 3
    out = model(torch.randn(B, k, 16, 16), torch.rand(B) * 1000, torch.randint(0, 18, (B, k, 16, 16)),
                torch.randn(B, 16, 384), torch.randn(B, 384), torch.randn(B, 5),
                torch.zeros(B, k, dtype=torch.bool), torch.randn(B, k, 16, 16),
                torch.randn(B, k - 1, 2, 16, 16))
    assert out.shape == (B, k, 16, 16)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kind,k", [("pair", 2), ("3d", 4)])
def test_spade_reads_the_label_map_in_the_decoder_and_starts_as_the_plain_unet(kind, k):
    from monai.networks.blocks.spade_norm import SPADE

    cfg = ModelConfig(kind=kind, frames=k, findings=True, lesion_embed_dim=3, spade_channels=8, **TINY)
    torch.manual_seed(0)
    def made(cfg):  # MONAI zeroes the output and each resnet's last convolution; wake them so that
        m = FrameDenoiser(cfg)  # the decoder's norms show in the output (SPADE's scale and shift stay 0)
        with torch.no_grad():
            for name, p in m.unet.named_parameters():
                if "mlp_" not in name and not p.any():
                    torch.nn.init.normal_(p, std=0.1)
        return m

    model = made(cfg).eval()
    blocks = [m for m in model.unet.modules() if isinstance(m, SPADE)]
    # two per resnet of every decoder block, none in the encoder; 1x1, with no norm on scale and shift
    assert len(blocks) == 2 * sum(len(b.resnets) for b in model.unet.up_blocks) > 0
    assert all(m.mlp_gamma.conv.kernel_size == (1,) * model.spatial_dims for m in blocks)
    assert all(len(list(m.mlp_gamma.children())) == 1 for m in blocks)  # the conv alone
    per_label = cfg.mask_embed_dim + cfg.lesion_embed_dim
    assert blocks[0].mlp_shared.conv.in_channels == (per_label * k if kind == "pair" else per_label)
    B = 2
    x, t = torch.randn(B, k, 16, 16), torch.rand(B) * 1000
    mask = torch.randint(0, 17, (B, k, 16, 16))
    args = (torch.randn(B, 16, 384), torch.randn(B, 384), torch.randn(B, 5))
    lesion = torch.zeros(B, k, 16, 16, dtype=torch.long)
    h, labels = model._inputs(x, mask, None, None, None, lesion, torch.zeros(B, 20))
    # the label channels, in the network's layout, are the input's mask and lesion channels
    assert labels.shape == ((B, k * per_label, 16, 16) if kind == "pair" else (B, per_label, k, 16, 16))
    other = labels + torch.randn_like(labels)

    def out_with(seg):  # the same input channels, another map for the decoder
        model._inputs = lambda *a, **kw: (h, seg)
        try:
            with torch.no_grad():
                return model(x, t, mask, *args, findings=torch.zeros(B, 20), lesion=lesion)
        finally:
            del model._inputs

    # scale and shift start at zero: the map changes nothing until training moves them
    assert torch.equal(out_with(labels), out_with(other))
    for m in blocks:
        torch.nn.init.normal_(m.mlp_gamma.conv.weight, std=0.1)
        torch.nn.init.normal_(m.mlp_beta.conv.weight, std=0.1)
    assert out_with(labels).shape == (B, k, 16, 16)
    assert (out_with(labels) - out_with(other)).abs().max() > 1e-3
    # the gradient reaches the label map's layers from the start
    fresh = made(cfg)
    fresh(x, t, mask, *args, findings=torch.zeros(B, 20), lesion=lesion).square().mean().backward()
    grads = [m.mlp_gamma.conv.weight.grad for m in fresh.modules() if isinstance(m, SPADE)]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    with pytest.raises(ValueError, match="spade_channels"):
        ModelConfig(spade_channels=-1)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="model.frames"):
        ModelConfig(kind="slice", frames=2)
    with pytest.raises(ValueError, match="image_size"):
        ModelConfig(image_size=18, channels=(8, 16, 32), attention_levels=(False, False, True),
                    norm_num_groups=4)
    with pytest.raises(ValueError, match="unknown keys in 'train'"):
        RunConfig.from_json({"train": {"epochs": 3}})
    for preset in ("tiny", "cpu", "gpu"):
        cfg = load_config(preset)
        assert RunConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg


@pytest.mark.parametrize("param", ["eps", "v", "flow"])
def test_schedule_split_inverts_add_noise(param):
    sch = Schedule(DiffusionConfig(parametrization=param))
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(6, 2, 8, 8, generator=g) * 2 - 1, torch.randn(6, 2, 8, 8, generator=g)
    t = torch.tensor([0.01, 0.2, 0.5, 0.7, 0.9, 0.98])
    x_t = sch.add_noise(x0, eps, t)
    x0_hat, eps_hat = sch.split(x_t, sch.target(x0, eps, t), t)
    assert torch.allclose(x0_hat, x0, atol=1e-3) and torch.allclose(eps_hat, eps, atol=1e-3)


def test_sampler_is_deterministic_per_generator_and_keeps_known_frames():
    sch = Schedule(DiffusionConfig(parametrization="v"))
    model = lambda x, t: torch.tanh(x) * 0.5  # noqa: E731  any fixed function of its inputs
    known = torch.tensor([[True, False], [True, False], [False, False]])
    values = torch.rand(3, 2, 8, 8) * 2 - 1
    gens = lambda: [torch.Generator().manual_seed(s) for s in (1, 2, 3)]  # noqa: E731
    a = ddim_sample(model, sch, (3, 2, 8, 8), gens(), 5, known=known, known_values=values)
    b = ddim_sample(model, sch, (3, 2, 8, 8), gens(), 5, known=known, known_values=values)
    assert torch.equal(a, b)
    assert torch.equal(a[0, 0], values[0, 0]) and torch.equal(a[1, 0], values[1, 0])
    # a row does not depend on its batch mates
    single = ddim_sample(model, sch, (1, 2, 8, 8), [torch.Generator().manual_seed(3)], 5)
    assert torch.allclose(single[0], a[2], atol=1e-6)


def test_flow_loss_is_zero_for_frames_related_by_the_flow_and_grows_with_misalignment():
    g = torch.Generator().manual_seed(0)
    H = W = 24
    nxt = torch.nn.functional.avg_pool2d(torch.rand(2, 1, H, W, generator=g), 3, 1, 1).squeeze(1)
    ys, xs = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    flow = torch.stack([1.5 * torch.sin(ys / 5), 0.8 * torch.cos(xs / 4)])[None].repeat(2, 1, 1, 1)
    cur = warp(nxt, flow)
    body = torch.ones(2, 2, H, W, dtype=torch.bool)
    window = torch.stack([cur, nxt], dim=1)  # (B, K=2, H, W)
    assert flow_loss(window, flow[:, None], body).item() == 0.0
    losses = []
    for shift in (0.5, 1.0, 2.0, 4.0):
        off = flow.clone()
        off[:, 0] += shift
        losses.append(flow_loss(window, off[:, None], body).item())
    assert 0 < losses[0] < losses[1] < losses[2] < losses[3]
    # only the body counts
    outside = torch.zeros_like(body)
    assert flow_loss(torch.stack([torch.rand(2, H, W), nxt], 1), flow[:, None], outside).item() == 0.0


def test_region_loss_counts_each_regions_mean_once_whatever_its_area():
    g = torch.Generator().manual_seed(0)
    H = W = 16
    regions = torch.zeros(2, 2, H, W, dtype=torch.long)
    regions[:, :, :, 8:] = 1  # a large region: half the frame
    regions[:, :, 2:4, 2:4] = 2  # a small one: 4 pixels
    target = torch.rand(2, 2, H, W, generator=g)
    unknown = torch.ones(2, 2, dtype=torch.bool)
    # texture moved around inside each region: the means agree, the loss is 0
    shuffled = target.clone()
    for b in range(2):
        for k in range(2):
            for r in range(3):
                sel = regions[b, k] == r
                shuffled[b, k][sel] = target[b, k][sel][torch.randperm(int(sel.sum()), generator=g)]
    assert not torch.equal(shuffled, target)
    assert region_loss(shuffled, target, regions, unknown, 3).item() < 1e-10
    # the same offset costs the same in a 4-pixel region and in a 128-pixel one: (0.3^2) / 3 regions
    for r in (1, 2):
        off = target + 0.3 * (regions == r).float()
        assert region_loss(off, target, regions, unknown, 3).item() == pytest.approx(0.09 / 3, rel=1e-5)
    # the pixel MSE of the small region's offset is 32 times smaller than the large one's
    small = target + 0.3 * (regions == 2).float()
    assert ((small - target) ** 2).mean().item() == pytest.approx(0.09 * 4 / 256, rel=1e-5)
    # only the unknown frames count, and an absent region counts nothing
    off = target.clone()
    off[:, 0] += 0.5
    assert region_loss(off, target, regions, torch.tensor([[False, True]] * 2), 3).item() < 1e-10
    assert region_loss(off, target, regions, torch.tensor([[True, False]] * 2), 5).item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="pixel frames"):
        region_loss(target[:, :, None], target[:, :, None], regions, unknown, 3)


def test_region_loss_weight_adds_its_term_with_lesions_as_regions_of_their_own(real_cache, tmp_path, text,
                                                                               monkeypatch):
    """``train.region_loss_weight``: the step's loss is the diffusion and flow terms plus the weight
    times :func:`region_loss` of the predicted clean frames, with a lesion's pixels apart from their
    organ's; 0 (the default) leaves the loss as it was."""
    import tracect.train.trainer as trainer_module

    seen = []
    real = trainer_module.region_loss

    def spy(x0, target, regions, unknown, n_regions):
        seen.append((regions.clone(), n_regions))
        return real(x0, target, regions, unknown, n_regions)

    monkeypatch.setattr(trainer_module, "region_loss", spy)
    losses = {}
    for w in (0.0, 3.0):
        tr = Trainer(tiny_config(region_loss_weight=w, batch_size=4), real_cache, tmp_path / f"w{w}", text=text,
                     progress=False)
        batch = next(tr.batches())
        batch["lesion"] = torch.zeros_like(batch["mask"])
        batch["lesion"][0, :, 4:7, 5:9] = 1  # a lesion (the real case has none)
        with torch.no_grad():
            losses[w] = tr._micro_loss(batch, key=11)
    (l0, s0), (l3, s3) = losses[0.0], losses[3.0]
    assert s0["loss_region"] == 0.0 and s3["loss_region"] > 0
    assert s3["loss_diffusion"] == pytest.approx(s0["loss_diffusion"], rel=1e-6)
    assert l3.item() == pytest.approx(l0.item() + 3.0 * s3["loss_region"], rel=1e-5)
    assert len(seen) == 1  # weight 0: not computed
    regions, n = seen[0]
    n_labels = tr.config.model.num_classes
    assert n == 2 * n_labels and regions.shape == batch["mask"].shape
    lesion = batch["lesion"] > 0
    assert lesion.sum() == 24
    assert torch.equal(regions[~lesion], batch["mask"][~lesion])
    assert torch.equal(regions[lesion], batch["mask"][lesion] + n_labels)
    with pytest.raises(ValueError, match="region_loss_weight"):
        tiny_config(region_loss_weight=-1.0)


def test_a_run_begun_before_a_metrics_column_existed_keeps_its_rows_on_resume(tmp_path):
    from tracect.train.run_files import trim_metrics
    from tracect.train.trainer import METRICS

    old = [k for k in METRICS if k != "loss_region"]
    path = tmp_path / "metrics.csv"
    path.write_text(",".join(old) + "\n" + "".join(",".join([str(s)] + ["0.5"] * (len(old) - 1)) + "\n"
                                                     for s in (1, 2, 3)) + "4,0.5\n")  # 4: cut short
    trim_metrics(path, 2, METRICS)
    rows = path.read_text().splitlines()
    assert rows[0] == ",".join(METRICS)
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    assert all(r.endswith(",") for r in rows[1:])  # the new column empty in the old rows


def tiny_config(**train) -> RunConfig:
    cfg = load_config("tiny")
    return cfg.replace(train={"max_steps": 8, "checkpoint_every": 4, "val_every": 1000, **train})


def test_condition_dropout_rates(real_cache, tmp_path, text):
    cfg = tiny_config(p_drop_report=0.3, p_drop_mask=0.1, p_drop_geometry=0.5, p_known=0.6, batch_size=8)
    tr = Trainer(cfg, real_cache, tmp_path / "run", text=text, progress=False)
    rates = {"drop_report": [], "drop_mask": [], "drop_geometry": [], "known_frac": []}
    batch = next(tr.batches())
    for _ in range(150):
        _, stats = tr._micro_loss(batch)
        for k in rates:
            rates[k].append(stats[k])
    mean = {k: float(np.mean(v)) for k, v in rates.items()}
    assert abs(mean["drop_report"] - 0.3) < 0.05
    assert abs(mean["drop_mask"] - 0.1) < 0.04
    assert abs(mean["drop_geometry"] - 0.5) < 0.05
    # K=2: a window with revealed frames shows exactly one of its two frames
    assert abs(mean["known_frac"] - 0.6 * 0.5) < 0.05


def test_loss_falls_when_overfitting_one_batch(real_cache, tmp_path, text):
    cfg = tiny_config(lr=3e-3, warmup_steps=1, max_steps=200, flow_loss_weight=0.0, p_drop_report=0.0,
                      p_known=0.0, batch_size=8)
    tr = Trainer(cfg, real_cache, tmp_path / "run", text=text, progress=False)
    batch = next(tr.batches())
    g0 = tr.generator.get_state()

    def fixed_loss():
        tr.generator.set_state(g0)  # same t and noise every time
        with torch.no_grad():
            return tr._micro_loss(batch)[0].item()

    before = fixed_loss()
    for _ in range(60):
        tr.generator.set_state(g0)
        tr.train_step([batch])
    after = fixed_loss()
    assert after < 0.5 * before, (before, after)


def _weights(run):
    from tracect.model.weights import resolve_checkpoint

    ckpt = resolve_checkpoint(run)
    return load_file(str(ckpt / "model.safetensors")), load_file(str(ckpt / "ema.safetensors"))


def test_resume_reproduces_the_uninterrupted_run(real_cache, tmp_path, text):
    cfg = tiny_config(max_steps=8, checkpoint_every=4)
    Trainer(cfg, real_cache, tmp_path / "straight", text=text, progress=False).fit()
    Trainer(cfg, real_cache, tmp_path / "split", text=text, progress=False).fit(max_steps=4)
    resumed = Trainer(cfg, real_cache, tmp_path / "split", text=text, progress=False, resume=True)
    assert resumed.state.step == 4 and resumed.state.consumed == 16
    resumed.fit()
    (m1, e1), (m2, e2) = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    for a, b in ((m1, m2), (e1, e2)):
        assert a.keys() == b.keys()
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    rows = (tmp_path / "split" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(i) for i in range(1, 9)]


def test_channels_last_trains_the_same_model(real_cache, tmp_path, text):
    """The memory layout is a speed setting: the same steps give the same weights to float rounding,
    and a checkpoint trained either way generates the same volume."""
    runs = {}
    for cl in (False, True):
        cfg = tiny_config(max_steps=3, channels_last=cl)
        Trainer(cfg, real_cache, tmp_path / f"cl{cl}", text=text, progress=False).fit()
        runs[cl] = _weights(tmp_path / f"cl{cl}")
    (m1, e1), (m2, e2) = runs[False], runs[True]
    for a, b in ((m1, m2), (e1, e2)):
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5


def test_known_frame_jitter_shifts_each_label_of_the_known_frames_only(real_cache, tmp_path, text):
    """``train.known_jitter_hu``: in a share of the windows, every label but the air outside the body
    moves by one offset of its own (HU -> unit of the cache's window), drawn from the window's
    generator; the network sees the shifted known frames."""
    from tracect.train.distributed import sample_generators

    cfg = tiny_config(known_jitter_hu=100.0, p_known_jitter=1.0, p_known=1.0, batch_size=4)
    tr = Trainer(cfg, real_cache, tmp_path / "run", text=text, progress=False)
    batch = next(tr.batches())
    img, mask = batch["image"], batch["mask"]
    lo, hi = tr.cache.config.hu_window
    shifted = tr._jitter_known(img, mask, sample_generators(7, range(len(img))))
    again = tr._jitter_known(img, mask, sample_generators(7, range(len(img))))
    assert torch.equal(shifted, again)  # the window's generator decides
    inside = (img > -1) & (img < 1) & (shifted > -1) & (shifted < 1)  # unclipped pixels
    offsets = []
    for b in range(len(img)):
        for label in mask[b].unique().tolist():
            sel = (mask[b] == label) & inside[b]
            if sel.sum() == 0:
                continue
            d = (shifted[b] - img[b])[sel] * (hi - lo) / 2.0  # HU
            assert d.max() - d.min() < 1e-2  # one offset per label and window
            if label == 0:
                assert d.abs().max() < 1e-6  # the air outside the body stays air
            else:
                offsets.append(float(d[0]))
    assert len(offsets) >= 4 and 30.0 < np.std(offsets) < 300.0  # about 100 HU
    weights = {}
    for name, jitter in (("plain", 0.0), ("jitter", 100.0)):
        cfg = tiny_config(known_jitter_hu=jitter, p_known_jitter=1.0, p_known=1.0, max_steps=2)
        Trainer(cfg, real_cache, tmp_path / name, text=text, progress=False).fit()
        weights[name] = _weights(tmp_path / name)[0]
    # the network saw other known frames (its output layer starts at zero: the first step's loss
    # cannot tell, the weights after two steps can)
    assert max((weights["plain"][k] - weights["jitter"][k]).abs().max().item() for k in weights["plain"]) > 1e-6
    off = Trainer(tiny_config(known_jitter_hu=100.0, p_known_jitter=0.0), real_cache, tmp_path / "off", text=text,
                  progress=False)
    assert torch.equal(off._jitter_known(img, mask, sample_generators(7, range(len(img)))), img)
    with pytest.raises(ValueError, match="known_jitter_hu"):
        tiny_config(known_jitter_hu=-1.0)


def test_new_run_refuses_an_existing_run_folder(real_cache, tmp_path, text):
    cfg = tiny_config(max_steps=2)
    Trainer(cfg, real_cache, tmp_path / "r", text=text, progress=False).fit()
    with pytest.raises(FileExistsError):
        Trainer(cfg, real_cache, tmp_path / "r", text=text, progress=False)


def test_train_cli_on_the_real_case_and_load_in_a_fresh_process(real_cache, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "tracect.cli.main", "train", "--config", "tiny", "--data",
                        str(real_cache), "--out", str(run), "--quiet", "--max-steps", "4"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert (run / "samples" / "step_0000004.png").is_file()
    assert (run / "latest").read_text().strip() == "step_0000004"
    metrics = (run / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("step,loss") and len(metrics) == 5
    code = ("import sys, torch; from tracect.model.weights import load_model; "
            "m, cfg, ck = load_model(sys.argv[1]); "
            "out = m(torch.zeros(1, 2, 16, 16), torch.zeros(1), torch.zeros(1, 2, 16, 16, dtype=torch.long), "
            "torch.zeros(1, 16, 384), torch.zeros(1, 384), torch.zeros(1, 5)); "
            "print(cfg.name, tuple(out.shape), ck.name)")
    r = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["tiny", "(1,", "2,", "16,", "16)", "step_0000004"]


def test_text_encoder_offline_in_a_fresh_process():
    code = ("from tracect.model.text import TextEncoder; t = TextEncoder('minilm', 32); "
            "a, p = t.encode(['A 14 mm cyst in the right hepatic lobe.', 'Arterial phase.', '']); "
            "import torch; print(tuple(a.shape), tuple(p.shape), "
            "bool(torch.cosine_similarity(p[0], p[1], 0) < 0.95), float(a[2, 5:].abs().sum()))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HOME": "/nonexistent-hf-home", "HTTPS_PROXY": "http://127.0.0.1:9"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["(3,", "32,", "384)", "(3,", "384)", "True", "0.0"]


def test_pickle_checkpoints_are_refused(tmp_path):
    from tracect.model.weights import CheckpointError, load_model

    torch.save({"x": 1}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(tmp_path / "model.pt")


def test_sentence_units_give_one_vector_per_sentence():
    from tracect.model.text import TextEncoder, split_sentences

    text = TextEncoder("minilm", max_tokens=8, units="sentences")
    report = "EXAMINATION: Non-contrast CT.\nFINDINGS: A 14 mm cyst in the right hepatic lobe. No other lesion."
    assert split_sentences(report) == ["EXAMINATION: Non-contrast CT.", "FINDINGS: A 14 mm cyst in the right "
                                       "hepatic lobe.", "No other lesion."]
    tokens, pooled = text.encode([report, "", "No other lesion."])
    assert tokens.shape == (3, 8, 384)
    norms = tokens[0].norm(dim=-1)
    assert torch.allclose(norms[:3], torch.ones(3), atol=1e-5) and float(norms[3:].sum()) == 0.0
    assert float(tokens[1].abs().sum()) == 0.0 and float(pooled[1].abs().sum()) == 0.0  # empty = null
    assert torch.allclose(tokens[0, 2], tokens[2, 0], atol=1e-5)  # a sentence's vector ignores its context
    assert torch.allclose(pooled[0], tokens[0, :3].mean(0), atol=1e-6)


def test_the_two_warps_agree():
    """The cached flows are made and checked with ``tracect.data.flow.warp`` (OpenCV) and the training
    loss applies them with ``tracect.train.losses.warp`` (torch): one convention, the same samples."""
    from tracect.data.flow import warp as warp_cv

    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    H, W = 24, 32
    frame = gaussian_filter(rng.normal(size=(H, W)), 1.5).astype(np.float32)
    frame /= np.abs(frame).max()
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    flow = np.stack([1.7 * np.sin(ys / 4.0), -2.3 * np.cos(xs / 5.0)]).astype(np.float32)  # (2, H, W): dx, dy

    def torch_warp(f):
        return warp(torch.from_numpy(frame)[None], torch.from_numpy(np.ascontiguousarray(f))[None])[0].numpy()

    a = warp_cv(frame, flow)
    inside = (xs + flow[0] >= 0) & (xs + flow[0] <= W - 1) & (ys + flow[1] >= 0) & (ys + flow[1] <= H - 1)
    assert inside.mean() > 0.8
    # OpenCV interpolates with fixed-point weights (1/32): agreement to a few hundredths of the range
    assert np.abs(a - torch_warp(flow))[inside].max() < 0.03
    # and the test can tell: the channels swapped, or the flow reversed, disagree by far more
    for wrong in (flow[::-1], -flow):
        assert np.abs(a - torch_warp(wrong))[inside].max() > 0.3


def test_parallel_mode_fuses_the_windows_estimates_of_a_shared_slice():
    """One DDIM step from t = 1 to 0 lands on the fused clean estimate: each slice gets the mean of the
    estimates of the windows that hold it (the windows' own estimates are set apart on purpose)."""
    from tracect.generate.strategies import Chain, parallel, window_starts

    sch = Schedule(DiffusionConfig(parametrization="flow"))  # x0 = x_t - t * velocity; at t = 1 exactly
    Z, K, H, W = 7, 3, 2, 2
    chain = Chain(torch.zeros(Z, H, W, dtype=torch.uint8), torch.linspace(0, 1, Z), torch.ones(3), "", K, 1,
                  torch.Generator().manual_seed(0))
    starts = window_starts(Z, K, 1)

    def denoiser_for(chains, window_starts_, known, values):
        def denoise(x, t):
            # a velocity whose clean estimate is (window index + 1) / 10 everywhere in the window
            target = torch.tensor([starts.index(s0) + 1 for s0 in window_starts_], dtype=x.dtype) / 10
            return (x - target.reshape(-1, 1, 1, 1)) / t.reshape(-1, 1, 1, 1)
        return denoise

    out = parallel(chain, denoiser_for, sch, steps=1, device="cpu", chunk=2).out
    expected = torch.zeros(Z)
    count = torch.zeros(Z)
    for i, s0 in enumerate(starts):
        expected[s0:s0 + K] += (i + 1) / 10
        count[s0:s0 + K] += 1
    assert torch.allclose(out.mean((1, 2)), expected / count, atol=1e-5)
    assert count.max() == 2 and count.min() == 1  # some slices shared by two windows, some by one


def test_the_progress_bar_shows_the_time_budget_when_minutes_bound_the_run(real_cache, tmp_path, text, capsys):
    cfg = tiny_config(max_steps=6000, max_minutes=0.02)
    Trainer(cfg, real_cache, tmp_path / "r", text=text, progress=True).fit()
    err = capsys.readouterr().err
    assert "0.02 min budget" in err and "/1 s" in err and "/6000 [" not in err
    Trainer(tiny_config(max_steps=3), real_cache, tmp_path / "s", text=text, progress=True).fit()
    assert "/3 [" in capsys.readouterr().err  # bounded by steps: steps out of max_steps
