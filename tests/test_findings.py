"""The report's structured findings: parsing, the findings vector, lesion maps in the cache and at
generation, and the adherence measurements that read them."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from tracect.data.findings import (FINDINGS_DIM, LESION_KINDS, PHASES, Findings, Lesion, findings_vector,
                                   parse_findings, report_vectors)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    from conftest import single_thread

    yield from single_thread()


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("seed", [1, 3, 4, 11, 26])
def test_phantom_reports_read_back_as_their_findings(seed):
    from tracect.phantom import make_case

    case = make_case("c", seed)
    f, truth = parse_findings(case.report), case.findings
    assert f.contrast_phase == truth["contrast_phase"]
    assert bool(f.fatty_liver) == truth["fatty_liver"]
    assert sorted((x.organ, x.kind, x.diameter_mm) for x in f.lesions) == \
        sorted((x["organ"], x["kind"], x["diameter_mm"]) for x in truth["lesions"])


def test_real_report_phrasing_and_negations():
    f = parse_findings("CT abdomen, portal venous phase. Hepatic steatosis. A 2.3 cm hypodense lesion in "
                       "segment 7. No splenic lesion. 8 mm cyst in the upper pole of the left kidney.")
    assert f.contrast_phase == "portal venous" and f.fatty_liver is True
    assert f.lesions == (Lesion("liver", "hypodense", 23.0, "right lobe"),
                         Lesion("kidney_left", "cyst", 8.0, "upper pole"))
    f = parse_findings("Non-contrast CT of the chest. No hepatic steatosis. No focal liver lesion.")
    assert f == Findings("non-contrast", False, ())
    f = parse_findings("CT with intravenous contrast in the arterial phase. The liver is normal in size and "
                       "attenuation. 12 mm arterially hyperenhancing lesion in the left hepatic lobe.")
    assert f.contrast_phase == "arterial" and f.fatty_liver is False
    assert f.lesions == (Lesion("liver", "hyperenhancing", 12.0, "left lobe"),)
    assert parse_findings("") == Findings()
    assert parse_findings("Unremarkable examination.") == Findings()


def test_an_impression_repeating_a_finding_counts_once():
    text = ("FINDINGS: 21 mm hypodense lesion in the spleen, not a simple cyst.\n"
            "IMPRESSION: 21 mm indeterminate hypodense lesion in the spleen; MRI recommended.")
    assert parse_findings(text).lesions == (Lesion("spleen", "hypodense", 21.0, None),)


def test_findings_vector_layout():
    assert findings_vector(Findings()).shape == (FINDINGS_DIM,) and not findings_vector(Findings()).any()
    v = findings_vector(Findings("arterial", True, (Lesion("spleen", "cyst", 15.0),)))
    assert v[PHASES.index("arterial")] == 1 and v[:len(PHASES)].sum() == 1
    assert v[len(PHASES)] == 1 and v[len(PHASES) + 1] == 0  # steatosis stated, not "normal liver"
    spleen = len(PHASES) + 2 + 1 * (2 + len(LESION_KINDS))
    assert v[spleen] == 1 and v[spleen + 1 + LESION_KINDS.index("cyst")] == 1
    assert v[spleen + 1 + len(LESION_KINDS)] == pytest.approx(0.5)
    assert v.sum() == pytest.approx(1 + 1 + 1 + 1 + 0.5)
    assert report_vectors(["", "Arterial phase."]).shape == (2, FINDINGS_DIM)


# ---------------------------------------------------------------- lesion placement


def _organ_block():
    """A (20, 32, 32) grid of 4 mm voxels: a 'liver' box on the patient's right, a 'kidney' each side."""
    labels = np.zeros((20, 32, 32), np.uint8)
    labels[2:18, 4:28, 16:30] = 1  # liver, +x side (RAS: patient's right)
    labels[4:16, 20:28, 2:8] = 2  # kidney on the -x side (left)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])[[2, 1, 0, 3]]  # array (z, y, x) -> world (x, y, z)
    affine[:3, 3] = [-64.0, -64.0, 0.0]
    return labels, affine, {"liver": 1, "kidney": 2}


def test_lesions_are_placed_in_the_named_organ_and_region_from_the_seed():
    from tracect.generate.lesions import place_lesions

    labels, affine, names = _organ_block()
    f = Findings(None, None, (Lesion("liver", "hypodense", 16.0, "upper pole"), Lesion("kidney_left", "cyst", 12.0),
                              Lesion("spleen", "cyst", 10.0)))
    m1, placed, notes = place_lesions(f, labels, affine, names, np.random.default_rng(0))
    m2, placed2, _ = place_lesions(f, labels, affine, names, np.random.default_rng(0))
    assert np.array_equal(m1, m2) and placed == placed2  # one seed, one placement
    assert len(placed) == 2 and len(notes) == 1 and "spleen" in notes[0]
    liver, kidney = placed
    assert set(np.unique(labels[m1 == 1 + LESION_KINDS.index("hypodense")])) == {1}
    assert set(np.unique(labels[m1 == 1 + LESION_KINDS.index("cyst")])) == {2}
    # a 16 mm ball on 4 mm voxels: about pi/6 * 4^3 = 33 voxels, all inside the liver
    assert 15 <= liver["voxels"] <= 40 and liver["diameter_mm"] == 16.0
    # "upper pole": the organ's top third; world z (superior) grows with the array's z here (slices 2..17)
    assert liver["center_index"][0] >= 17 - 16 / 3 - 1


def test_a_lesion_without_room_shrinks_and_a_missing_side_is_said():
    from tracect.generate.lesions import place_lesions

    labels, affine, names = _organ_block()
    m, placed, notes = place_lesions(Findings(None, None, (Lesion("kidney_right", "cyst", 40.0),)), labels, affine,
                                     names, np.random.default_rng(1))
    assert placed == [] and "kidney right" in notes[0]  # the only kidney is on the left
    m, placed, _ = place_lesions(Findings(None, None, (Lesion("kidney_left", "cyst", 40.0),)), labels, affine,
                                 names, np.random.default_rng(1))
    assert placed and placed[0]["diameter_mm"] < 40.0 and m.any()


# ---------------------------------------------------------------- the cache's lesion map


@pytest.fixture(scope="module")
def lesion_cache(tmp_path_factory):
    """Phantom cases with lesions prepared at 32 px (cases 1 and 3 of seed 0 have lesions)."""
    from tracect.data.prepare import PrepareConfig, prepare_dataset
    from tracect.phantom import PhantomConfig, write_dataset

    root = tmp_path_factory.mktemp("lesions")
    write_dataset(root / "ph", 4, seed=0, config=PhantomConfig(size=32, slices=(24, 28)))
    prepare_dataset(root / "ph", root / "cache", PrepareConfig(size=32), progress=False)
    return root


def test_prepare_draws_the_datasets_lesions_inside_their_organs(lesion_cache):
    from tracect.data.cache import PreparedCache
    from tracect.data.windows import FrameWindows

    findings = {json.loads(x)["case"]: json.loads(x) for x in (lesion_cache / "ph" / "findings.jsonl").read_text().splitlines()}
    cache = PreparedCache(lesion_cache / "cache")
    with_lesions = [c for c, f in findings.items() if f["lesions"]]
    assert with_lesions, "the fixture's draw must hold a lesion"
    voc = cache.vocabulary
    for i, meta in enumerate(cache.cases):
        arr = cache.case(i)
        if meta["case"] not in with_lesions:
            assert arr.lesion is None
            continue
        les = np.asarray(arr.lesion)
        assert les.shape == arr.mask.shape and les.any()
        codes = {1 + LESION_KINDS.index(x["kind"]) for x in findings[meta["case"]]["lesions"]}
        assert set(np.unique(les[les > 0])) <= codes
        organs = {("kidney" if x["organ"].startswith("kidney") else x["organ"]) for x in findings[meta["case"]]["lesions"]}
        inside = np.asarray(arr.mask)[les > 0]
        assert {voc.labels[int(v)] for v in np.unique(inside)} <= organs  # inside the named organs only
    ds = FrameWindows(lesion_cache / "cache", k=2, split=None)
    item = ds[0]
    assert item["lesion"].shape == item["mask"].shape and item["lesion"].dtype == torch.int64


def test_findings_jsonl_with_a_bad_lesion_is_refused(tmp_path, toy_dataset):
    from tracect.data.layout import DatasetError, load_dataset

    (toy_dataset / "findings.jsonl").write_text(json.dumps({"case": "a", "lesions": [{"organ": "liver", "kind": "tumour",
                                                             "diameter_mm": 10, "center_ras_mm": [0, 0, 0]}]}) + "\n")
    with pytest.raises(DatasetError, match="findings.jsonl:1"):
        load_dataset(toy_dataset)


# ---------------------------------------------------------------- conditioning and the network


def _tiny_findings_config(size=32, lesion_embed_dim=0):
    from tracect.config import load_config

    cfg = load_config("tiny")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, findings=True, image_size=size,
                                                              lesion_embed_dim=lesion_embed_dim),
                               diffusion=dataclasses.replace(cfg.diffusion, guidance=2.0))


def test_dropped_and_null_reports_carry_no_findings_and_no_lesions():
    from tracect.model.conditioning import build_condition
    from tracect.model.text import TextEncoder

    text = TextEncoder(max_tokens=16)
    mask = torch.ones(2, 2, 8, 8, dtype=torch.long)
    lesion = torch.zeros(2, 2, 8, 8, dtype=torch.long)
    lesion[:, :, 3:5, 3:5] = 2
    reports = ["Arterial phase. 20 mm hypodense lesion in the liver."] * 2
    cond = build_condition(text, mask, reports, torch.full((2, 3), 4.0), torch.zeros(2, 2), "cpu", null=True,
                           findings=True, lesion=lesion, drop_report=torch.tensor([False, True]))
    assert cond.findings[0].sum() > 0 and cond.findings[1].sum() == 0
    assert cond.lesion[0].any() and not cond.lesion[1].any()
    guided = cond.guided_inputs()
    findings, les = guided[7], guided[8]
    assert findings.shape == (4, FINDINGS_DIM) and not findings[2:].any() and torch.equal(findings[:2], cond.findings)
    assert not les[2:].any() and torch.equal(les[:2], cond.lesion)
    plain = build_condition(text, mask, reports, torch.full((2, 3), 4.0), torch.zeros(2, 2), "cpu", lesion=lesion)
    assert plain.findings is None and plain.lesion is None  # a model without findings sees neither


@pytest.mark.parametrize("lesion_embed_dim", [0, 3])
def test_a_findings_model_hears_the_findings_and_the_lesion_map(lesion_embed_dim):
    from tracect.train.trainer import build_model

    torch.manual_seed(0)
    model = build_model(_tiny_findings_config(16, lesion_embed_dim)).eval()
    # the lesion map in channels of its own (2 frames x 3) or added to the mask's embedding (none more)
    plain = build_model(dataclasses.replace(_tiny_findings_config(16), model=dataclasses.replace(
        _tiny_findings_config(16).model, findings=False)))
    assert model.unet.conv_in.conv.in_channels - plain.unet.conv_in.conv.in_channels == 2 * lesion_embed_dim
    assert model.lesion_embed.weight.shape[1] == (lesion_embed_dim or model.config.mask_embed_dim)
    with torch.no_grad():  # MONAI's zero-initialised output and the new paths made non-trivial, as training would
        for p in model.parameters():
            p.normal_(0.0, 0.2)
        model.lesion_embed.weight[0].zero_()
    assert not model.lesion_embed.weight[0].any()  # "no lesion" embeds to zero
    x, t = torch.randn(1, 2, 16, 16), torch.tensor([5.0])
    mask = torch.ones(1, 2, 16, 16, dtype=torch.long)
    tokens, pooled = torch.zeros(1, 16, 384), torch.zeros(1, 384)
    no_lesion = torch.zeros(1, 2, 16, 16, dtype=torch.long)
    lesion = no_lesion.clone()
    lesion[..., 6:10, 6:10] = 1
    f0, f1 = torch.zeros(1, FINDINGS_DIM), torch.zeros(1, FINDINGS_DIM)
    f1[0, 0] = 1
    with torch.no_grad():
        base = model(x, t, mask, tokens, pooled, None, None, None, None, f0, no_lesion)
        assert torch.equal(base, model(x, t, mask, tokens, pooled, None, None, None, None, f0, None))
        assert not torch.allclose(base, model(x, t, mask, tokens, pooled, None, None, None, None, f1, no_lesion))
        assert not torch.allclose(base, model(x, t, mask, tokens, pooled, None, None, None, None, f0, lesion))


def test_per_label_findings_shift_only_their_labels_embedding():
    from tracect.train.trainer import build_model

    cfg = _tiny_findings_config(16)
    cfg = cfg.replace(model={"findings_per_label": True})
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    plain = build_model(_tiny_findings_config(16)).eval()
    assert model.label_findings.shape == (cfg.model.num_classes + 1, FINDINGS_DIM, cfg.model.mask_embed_dim)
    mask = torch.zeros(2, 2, 8, 8, dtype=torch.long)
    mask[:, :, 2:6, 2:6] = 3  # label 3 in the middle, label 0 around it
    findings = torch.zeros(2, FINDINGS_DIM)
    findings[0, 1] = 1.0  # window 0 states a finding, window 1 none
    with torch.no_grad():
        plain.mask_embed.weight.copy_(model.mask_embed.weight)
        # zero at the start: the same embedding as the model without the per-label maps
        assert torch.equal(model.mask_channels(mask, torch.float32, findings), plain.mask_channels(mask, torch.float32))
        model.label_findings[3, 1] = torch.arange(1.0, cfg.model.mask_embed_dim + 1)
        shifted = model.mask_channels(mask, torch.float32, findings)  # (B, K, E, H, W)
    base = plain.mask_channels(mask, torch.float32)
    delta = shifted - base
    assert torch.equal(delta[1], torch.zeros_like(delta[1]))  # no finding: no shift
    inside = (mask[0] == 3).unsqueeze(1).expand_as(delta[0])  # (K, E, H, W)
    assert torch.equal(delta[0][~inside], torch.zeros_like(delta[0][~inside]))  # other labels untouched
    expected = torch.arange(1.0, cfg.model.mask_embed_dim + 1).reshape(1, -1, 1, 1).expand(2, -1, 4, 4)
    assert torch.equal(delta[0][:, :, 2:6, 2:6], expected)
    # label fractions (a latent pixel) mix the shifted embeddings by area, as the ids do
    fractions = torch.nn.functional.one_hot(mask, cfg.model.num_classes + 1).movedim(-1, 2).float()
    with torch.no_grad():
        assert torch.allclose(model.mask_channels(fractions, torch.float32, findings), shifted)
    with pytest.raises(ValueError, match="findings_per_label"):
        _tiny_findings_config(16).replace(model={"findings": False, "findings_per_label": True})


def test_generation_places_the_reports_lesions_and_records_them(tmp_path, lesion_cache):
    from tracect.generate.pipeline import Generator
    from tracect.phantom import make_mask
    from tracect.train.trainer import Trainer

    cfg = _tiny_findings_config(32)
    Trainer(cfg, lesion_cache / "cache", tmp_path / "run", progress=False).fit(max_steps=2)
    gen = Generator.from_checkpoint(tmp_path / "run")
    mask = make_mask(80, seed=3, size=32)
    report = "Non-contrast CT. 20 mm hypodense lesion in the right hepatic lobe. Small cyst in the spleen."
    out = gen.generate(mask, report, seed=5, steps=2)
    again = gen.generate(mask, report, seed=5, steps=2)
    info = out.info
    assert info["findings"]["contrast_phase"] == "non-contrast"
    assert [x["organ"] for x in info["lesions"]] == ["liver", "spleen"]
    assert info["lesions"] == again.info["lesions"] and np.array_equal(out.ct.array, again.ct.array)
    liver = gen.vocabulary.id_of("liver")
    c = info["lesions"][0]["center_index"]
    assert out.labels.array[tuple(c)] == liver
    chest = make_mask(40, seed=3, size=32)  # above the liver: nothing to place the lesion in, and it says so
    none = gen.generate(chest, report, seed=5, steps=2)
    assert none.info["lesions"] == [] and any("not drawn" in n and "liver" in n for n in none.info["notes"])


# ---------------------------------------------------------------- adherence measurements


def test_lesion_rule_reads_a_region_against_its_organ():
    from tracect.evaluate.adherence import LESION_CONTRAST_HU, lesion_contrast, lesion_shown

    hu = np.full((6, 10, 10), 60.0)
    organ = np.zeros(hu.shape, bool)
    organ[1:5, 2:8, 2:8] = True
    region = np.zeros(hu.shape, bool)
    region[2:4, 4:6, 4:6] = True
    hu[region] = 60.0 - LESION_CONTRAST_HU - 5
    c = lesion_contrast(hu, organ, region)
    assert c == pytest.approx(-LESION_CONTRAST_HU - 5)
    assert lesion_shown(c, "cyst") and lesion_shown(c, "hypodense") and not lesion_shown(c, "hyperenhancing")
    assert not lesion_shown(-LESION_CONTRAST_HU + 1, "hypodense")
    from tracect.evaluate.adherence import LESION_MIN_HU

    assert lesion_shown(-40.0, "cyst", region_hu=5.0)
    assert not lesion_shown(-400.0, "cyst", region_hu=LESION_MIN_HU - 300)  # air where a cyst was described
    assert not np.isfinite(lesion_contrast(hu, organ, np.zeros_like(region)))


def test_intervals_for_a_median_and_a_proportion():
    from tracect.evaluate.metrics import median_interval, proportion_interval

    assert median_interval(np.arange(24)) == (6.0, 17.0)  # ranks 7 and 18 of 24: the sign test's 95.7%
    assert np.isnan(median_interval([1, 2, 3])[0])
    lo, hi = proportion_interval(22, 24)
    assert lo == pytest.approx(0.730, abs=1e-3) and hi == pytest.approx(0.990, abs=1e-3)
    assert proportion_interval(0, 10)[0] == 0.0 and proportion_interval(10, 10)[1] == 1.0


def test_adherence_reads_reports_with_the_findings_rules():
    from tracect.evaluate.adherence import findings_from_report

    f = findings_from_report("Portal venous phase. 3 cm mass in the lower pole of the right kidney.")
    assert f == {"contrast_phase": "portal venous", "fatty_liver": False, "lesion_organs": ["kidney"]}


def test_the_3d_and_slice_baselines_take_the_lesion_map_too():
    from tracect.config import load_config
    from tracect.train.trainer import build_model

    for preset, dim in (("tiny-3d", 0), ("tiny-slice", 0), ("tiny-3d", 2), ("tiny-slice", 2)):
        cfg = load_config(preset)
        cfg = cfg.replace(model={"findings": True, "lesion_embed_dim": dim})
        model = build_model(cfg).eval()
        K = 8 if cfg.model.kind == "3d" else 1
        S = cfg.model.image_size
        lesion = torch.zeros(1, K, S, S, dtype=torch.long)
        lesion[..., 4:8, 4:8] = 3
        with torch.no_grad():
            out = model(torch.randn(1, K, S, S), torch.tensor([3.0]), torch.ones(1, K, S, S, dtype=torch.long),
                        torch.zeros(1, cfg.model.text_max_tokens, 384), torch.zeros(1, 384), None, None, None, None,
                        torch.zeros(1, FINDINGS_DIM), lesion)
        assert out.shape == (1, K, S, S)


def test_lesion_guidance_weighs_only_the_lesion_pixels():
    from tracect.model.conditioning import WindowCondition, make_denoise

    class Fixed(torch.nn.Module):  # with the report: 1 everywhere; without: 0
        def forward(self, x, t, mask, tokens, pooled, *rest):
            return (tokens[:, :1, :1].reshape(-1, 1, 1, 1) * torch.ones_like(x))

    B, K, S = 1, 2, 8
    lesion = torch.zeros(B, K, S, S, dtype=torch.long)
    lesion[..., 2:4, 2:4] = 1
    cond = WindowCondition(torch.ones(B, K, S, S, dtype=torch.long), torch.ones(B, 4, 3), torch.ones(B, 3), None,
                           null_tokens=torch.zeros(B, 4, 3), null_pooled=torch.zeros(B, 3),
                           findings=torch.zeros(B, FINDINGS_DIM), lesion=lesion)
    out = make_denoise(Fixed(), cond, 10, guidance=3.0, lesion_guidance=1.0)(torch.zeros(B, K, S, S), torch.ones(B))
    assert torch.all(out[lesion > 0] == 1.0) and torch.all(out[lesion == 0] == 3.0)
    same = make_denoise(Fixed(), cond, 10, guidance=3.0)(torch.zeros(B, K, S, S), torch.ones(B))
    assert torch.all(same == 3.0)


def test_lesion_windows_repeat_and_their_pixels_weigh_more(lesion_cache):
    from tracect.data.windows import FrameWindows
    from tracect.train.losses import diffusion_loss

    once = FrameWindows(lesion_cache / "cache", k=2, split=None)
    thrice = FrameWindows(lesion_cache / "cache", k=2, split=None, lesion_repeat=3)
    n = thrice.n_lesion_windows
    assert n > 0 and once.n_lesion_windows == n
    assert len(thrice) == len(once) + 2 * n
    assert np.array_equal(thrice.index[:len(once)], once.index)  # every window once, in order, first
    extra = thrice.index[len(once):]
    assert all(thrice[len(once) + i]["lesion"].any() for i in range(n))  # the repeats show a lesion
    assert np.array_equal(extra[:n], extra[n:])
    shown = sum(bool(once[i]["lesion"].any()) for i in range(len(once)))
    assert shown == n  # and every window that shows one is repeated
    with pytest.raises(ValueError, match="lesion_repeat"):
        FrameWindows(lesion_cache / "cache", k=2, split=None, lesion_repeat=0)

    pred, target = torch.zeros(2, 2, 4, 4), torch.ones(2, 2, 4, 4)
    unknown = torch.tensor([[True, True], [True, False]])
    assert diffusion_loss(pred, target, unknown, torch.ones(2, 2, 4, 4)) == diffusion_loss(pred, target, unknown)
    w = torch.ones(2, 2, 4, 4)
    w[0, 0, 0, 0] = 17.0  # one pixel of 16 counts 17 times: that frame's mean error 2, the others' 1
    assert torch.isclose(diffusion_loss(pred, target, unknown, w), torch.tensor((2 + 1 + 1) / 3))


def test_lesion_settings_are_checked():
    from tracect.config import ModelConfig, TrainConfig

    with pytest.raises(ValueError, match="lesion_embed_dim"):
        ModelConfig(lesion_embed_dim=-1)
    with pytest.raises(ValueError, match="lesion_window_repeat"):
        TrainConfig(lesion_window_repeat=0)
    with pytest.raises(ValueError, match="lesion_loss_weight"):
        TrainConfig(lesion_loss_weight=0.5)


def test_the_presets_lesion_guidance_is_the_default_and_an_option_overrides_it():
    from tracect.config import load_config
    from tracect.generate.sampling import Sampling

    cpu = load_config("cpu").diffusion
    assert cpu.guidance == 3.0 and Sampling().resolved(cpu).lesion_guidance == 1.0
    assert Sampling(lesion_guidance=3.0).resolved(cpu).lesion_guidance == 3.0
    assert Sampling().resolved(load_config("tiny").diffusion).lesion_guidance is None  # guidance everywhere
    with pytest.raises(ValueError, match="lesion_guidance"):
        load_config("cpu").replace(diffusion={"lesion_guidance": -1.0})


def test_the_cpu_report_preset_is_the_cpu_recipe_with_per_label_findings():
    from tracect.config import load_config
    from tracect.train.trainer import build_model

    cpu, report = load_config("cpu"), load_config("cpu-report")
    assert report.model.findings_per_label and report.model.lesion_embed_dim == 4 and report.model.mask_embed_dim == 16
    assert report.diffusion.guidance == 1.0 and report.train.lesion_loss_weight == 10.0
    # the same network widths, schedule and step budget as `cpu`: only the conditioning differs
    assert (report.model.channels, report.model.image_size, report.train.max_steps, report.train.batch_size) == \
        (cpu.model.channels, cpu.model.image_size, cpu.train.max_steps, cpu.train.batch_size)
    model = build_model(report)
    assert model.label_findings.shape == (report.model.num_classes + 1, FINDINGS_DIM, 16)
    assert not model.label_findings.any()


def test_the_cpu_real_preset_is_the_recipe_the_real_data_table_measured():
    """`cpu-real` is what scripts/real_data_table.py --pseudo-repeat 4 trained (the `cpu` network and
    schedule, 4,000 steps, real windows x4), sampled with guidance 1."""
    from dataclasses import replace

    from tracect.config import load_config

    cpu, real = load_config("cpu"), load_config("cpu-real")
    assert real.model == cpu.model and real.train.pseudo_window_repeat == 4 and real.train.max_steps == 4000
    assert real.diffusion.guidance == 1.0 and replace(real.diffusion, guidance=cpu.diffusion.guidance) == cpu.diffusion
    assert replace(real.train, pseudo_window_repeat=1, max_steps=cpu.train.max_steps) == cpu.train
