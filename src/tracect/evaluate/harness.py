"""`tracect evaluate`: every figure of the evaluation for a set of generated volumes.

Each generated volume is compared on its *evaluation grid*: the cache grid of its conditioning mask
(body crop, ``size`` x ``size`` in-plane, the mask's slice spacing), built with the segmenter's
preparation settings so that the segmenter, the flows and the training-slice bank all see data as in
training. Figures are defined in docs/evaluation.md.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tracect import __version__
from tracect.evaluate import metrics as M
from tracect.evaluate import realism
from tracect.evaluate.adherence import adherence_scores, adherence_summary, findings_from_report
from tracect.evaluate.entries import EvalEntry, EvaluationError, case_of
from tracect.evaluate.metrics import json_number, mean_or_nan

MISSING = None  # a figure that could not be computed: None in JSON, with a note saying why


# ------------------------------------------------------------------------------------------ features


class TorchScriptFeatures:
    """Slice features from a local TorchScript file (e.g. an Inception network the user has):
    the module takes ``(N, 3, S, S)`` in [0, 1] and returns ``(N, D)``. Nothing is downloaded."""

    def __init__(self, path: str | Path, size: int = 299):
        import torch

        path = Path(path)
        if not path.is_file():
            raise EvaluationError(f"feature extractor {path} does not exist (tracect never downloads weights)")
        self.module = torch.jit.load(str(path), map_location="cpu").eval()
        self.size = size
        stem = path.name.lower()
        self.name = "inception" if "inception" in stem else "torchscript"
        self.note = f"{self.name} features from the local file {path.name}"

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import torch

        from tracect.evaluate.segmenter import resize2d

        out = []
        with torch.no_grad():
            for s in range(0, len(images), 32):
                x = torch.from_numpy(np.ascontiguousarray(images[s:s + 32], np.float32))[:, None]
                x = resize2d((x + 1) / 2, self.size)
                out.append(self.module(x.repeat(1, 3, 1, 1)).reshape(len(x), -1).double().numpy())
        return np.concatenate(out)


def reformats(unit: np.ndarray, body: np.ndarray, every: int = 2) -> dict[str, np.ndarray]:
    """2D views for the Fréchet distance: axial slices, and coronal / sagittal reformats through the
    body (every ``every``-th), each ``(N, h, w)``; reformats show incoherence along z."""
    area = body.reshape(len(body), -1).mean(1)
    ax = unit[area >= 0.1]
    cor_keep = np.where(body.any((0, 2)))[0][::every]
    sag_keep = np.where(body.any((0, 1)))[0][::every]
    return {"axial": ax, "coronal": np.stack([unit[:, i, :] for i in cor_keep]) if len(cor_keep) else unit[:0, 0],
            "sagittal": np.stack([unit[:, :, i] for i in sag_keep]) if len(sag_keep) else unit[:0, 0]}


def _resize_stack(images: np.ndarray, size: int) -> np.ndarray:
    import torch

    from tracect.evaluate.segmenter import resize2d

    if len(images) == 0:
        return np.zeros((0, size, size), np.float32)
    return resize2d(torch.from_numpy(np.ascontiguousarray(images, np.float32))[:, None], size)[:, 0].numpy()


# ------------------------------------------------------------------------------------------ one case


@dataclass
class CaseGrid:
    """A case on its evaluation grid: HU ``(Z, H, W)`` generated and reference, labels, spacing, and how
    each CT got there (``path``)."""

    generated: np.ndarray
    labels: np.ndarray
    spacing: tuple
    reference: np.ndarray | None = None
    affine: np.ndarray = field(default=None, repr=False)
    path: dict = field(default_factory=dict)


def case_grid(entry: EvalEntry, prepare, vocab) -> CaseGrid:
    """Read, remap and resample one entry onto its evaluation grid.

    Each CT goes through one resampling at most: the reference from the mask's grid (as ``prepare`` does
    with training data), the generated CT from its generation grid (``NAME.grid.nii.gz``), not at all
    when that grid is the evaluation grid (a model evaluated with its own grid settings). Without the
    generation-grid file the generated CT comes from the mask-grid file, a second resampling, and
    ``path`` says so."""
    from tracect.data.grid import AIR_HU, output_grid
    from tracect.data.resample import resample_to_grid
    from tracect.generate.masks import prepare_mask
    from tracect.io.pairing import GridMismatchError, check_same_grid, compare_grids
    from tracect.io.readers import read_mask, read_volume
    from tracect.io.volume import Volume
    from tracect.labels.vocabulary import get_vocabulary

    mask = read_mask(entry.mask, get_vocabulary(entry.vocabulary))
    gm = prepare_mask(mask, get_vocabulary(entry.vocabulary), vocab)
    canon = gm.labels
    affine, shape = output_grid(canon, canon.array > 0, prepare)
    labels = resample_to_grid(canon, affine, shape, order=0, dtype=np.uint8).array

    def onto(path, what):
        # a CT scored against a mask must lie on the mask's grid (stored in any axis order); it then
        # takes the mask's affine, so generated and reference go through one and the same resampling
        ct = read_volume(path)
        check_same_grid(ct, mask, (f"{what} {Path(path).name}", "mask"))
        return resample_to_grid(Volume(ct.canonical().array, canon.affine), affine, shape, order=1,
                                cval=AIR_HU).array

    try:
        path = {"reference": "mask grid -> evaluation grid"}
        grid_file = entry.generation_grid_file
        if grid_file is not None:
            native = read_volume(grid_file).canonical()
            if compare_grids(native, Volume(labels, affine)).same():
                gen, path["generated"] = native.array.astype(np.float32), "generation grid = evaluation grid"
            else:
                gen = resample_to_grid(native, affine, shape, order=1, cval=AIR_HU).array
                path["generated"] = "generation grid -> evaluation grid"
        else:
            gen = onto(entry.generated, "generated CT")
            path["generated"] = "generation grid -> mask grid -> evaluation grid (no NAME.grid.nii.gz)"
        ref = onto(entry.reference, "reference CT") if entry.reference is not None else None
    except GridMismatchError as e:
        raise EvaluationError(f"{entry.name}: {e}") from None
    return CaseGrid(gen, labels, Volume(labels, affine).spacing, ref, affine, path)


def _fine_texture(entry: EvalEntry) -> tuple[float | None, str | None]:
    """:func:`realism.fine_texture_ratio` of the generated CT and its reference on the mask's grid ->
    ``(ratio, None)``, or ``(None, why not)``."""
    from tracect.io.pairing import compare_grids
    from tracect.io.readers import read_volume

    ref = read_volume(entry.reference).canonical()
    lo, hi = realism.FINE_BAND
    if not realism.resolves(ref.spacing[1:]):  # too coarse: skip reading the generated CT
        return None, (f"fine_texture_ratio: the mask's grid ({max(ref.spacing[1:]):.2f} mm in-plane) cannot "
                      f"resolve {lo}-{hi} cycles/mm")
    gen = read_volume(entry.generated).canonical()
    if not compare_grids(gen, ref).same():
        return None, "fine_texture_ratio: the generated CT is not on the reference's grid"
    ratio = realism.fine_texture_ratio(gen.array, ref.array, ref.spacing[1:])
    return ratio, (None if ratio is not None else "fine_texture_ratio: too few patches of uniform soft tissue")


def evaluate_case(entry: EvalEntry, grid: CaseGrid, segmenter, vocab, window) -> tuple[dict, dict]:
    """Per-case figures (JSON-ready) and the arrays the set-level figures need."""
    from tracect.data.grid import hu_to_unit
    from tracect.evaluate.segmenter import organ_names

    names = organ_names(vocab)
    body = grid.labels > 0
    unit = hu_to_unit(grid.generated, window)
    row: dict = {"case": entry.name, "generated": str(entry.generated), "mask": str(entry.mask),
                 "reference": str(entry.reference) if entry.reference else None, "report": entry.report,
                 "seed": entry.seed, "grid": list(grid.generated.shape),
                 "spacing_mm": [round(float(s), 4) for s in grid.spacing], "resampling": grid.path, "notes": []}
    ref_unit = hu_to_unit(grid.reference, window) if grid.reference is not None else None
    if segmenter is not None:
        d, h, missed = M.per_organ_overlap(segmenter.predict(unit, affine=grid.affine), grid.labels, names,
                                           grid.spacing)
        row["dice"], row["hd95_mm"], row["missed_organs"] = d, {k: json_number(v) for k, v in h.items()}, missed
        row["dice_mean"] = json_number(mean_or_nan([v for v in d.values() if np.isfinite(v)]))
        if ref_unit is not None:
            dr, _, _ = M.per_organ_overlap(segmenter.predict(ref_unit, affine=grid.affine), grid.labels, names,
                                           grid.spacing)
            row["dice_reference"] = dr  # the segmenter on the real CT of this mask: its Dice on real volumes
            row["dice_reference_mean"] = json_number(mean_or_nan([v for v in dr.values() if np.isfinite(v)]))
    else:
        row["dice"] = row["hd95_mm"] = {}
        row["dice_mean"] = MISSING
        row["notes"].append("Dice/HD95: no segmenter given (train one with `tracect segmenter train`)")
    row["warp_error"] = M.warp_error(unit, body)
    prof = M.ssim_profile(unit, body)
    row["ssim_profile"], row["ssim_mean"] = prof, json_number(mean_or_nan(prof))
    # how much the volume changes along z: a volume smoothed along z scores a perfect warping error and
    # a high SSIM; these show it as too little change and too little through-plane detail
    row["adjacent_dhu"] = M.adjacent_abs_diff(grid.generated, body)
    row["z_hf"] = M.through_plane_hf(unit, body)
    row["hu"] = M.organ_hu_stats(grid.generated, grid.labels, names)
    if ref_unit is not None:
        row["flow_epe_px"] = M.flow_epe(unit, ref_unit, body)
        row["flow_epe_frozen_px"] = M.frozen_epe(ref_unit, body)  # what slices that never change score
        row["warp_error_reference"] = M.warp_error(ref_unit, body)
        rp = M.ssim_profile(ref_unit, body)
        row["ssim_profile_reference"], row["ssim_mean_reference"] = rp, json_number(mean_or_nan(rp))
        row["adjacent_dhu_reference"] = M.adjacent_abs_diff(grid.reference, body)
        row["z_hf_reference"] = M.through_plane_hf(ref_unit, body)
        row["adjacent_dhu_ratio"] = row["adjacent_dhu"] / row["adjacent_dhu_reference"]
        row["z_hf_ratio"] = row["z_hf"] / row["z_hf_reference"]
        # in-plane sharpness: the generated slices' high-frequency power over the real CT's (1 = as fine a
        # texture and noise; a blur, an upsampled coarse grid, scores well below 1)
        row["inplane_hf_ratio"] = M.inplane_hf_ratio(grid.generated, grid.reference, body)
        ref_stats = M.organ_hu_stats(grid.reference, grid.labels, names)
        for organ, s in row["hu"].items():
            r = ref_stats.get(organ)
            s["reference_median"] = r["median"] if r else None
            s["reference_iqr"] = r["iqr"] if r else None
            s["abs_median_error"] = abs(s["median"] - r["median"]) if r else None
        errs = [s["abs_median_error"] for s in row["hu"].values() if s.get("abs_median_error") is not None]
        row["hu_abs_error_mean"] = json_number(mean_or_nan(errs))
        # each tissue's HU distribution against the real CT's in the real CT's own tissue regions
        tissues = realism.tissue_map(grid.reference, grid.spacing)
        ref_q = realism.tissue_quantiles(grid.reference, tissues)
        row["tissue_w1"] = realism.tissue_distances(realism.tissue_quantiles(grid.generated, tissues), ref_q)
        row["tissue_w1_mean"] = json_number(realism.mean_distance(row["tissue_w1"]))
        # noise and texture inside the real CT's soft tissue, free of the edges between tissues
        row["soft_tissue_hf_ratio"] = json_number(realism.tissue_hf_ratio(grid.generated, grid.reference, tissues))
        # and at the mask's own resolution, which the evaluation grid cannot hold (None on a coarse grid)
        fine, why = _fine_texture(entry)
        row["fine_texture_ratio"] = json_number(fine)
        if why:
            row["notes"].append(why)
    else:
        for key in ("flow_epe_px", "flow_epe_frozen_px", "warp_error_reference", "ssim_profile_reference",
                    "adjacent_dhu_reference", "z_hf_reference", "adjacent_dhu_ratio", "z_hf_ratio", "inplane_hf_ratio"):
            row[key] = MISSING
        row["hu_abs_error_mean"] = row["tissue_w1_mean"] = row["soft_tissue_hf_ratio"] = MISSING
        row["fine_texture_ratio"] = MISSING
        ref_q = None
        row["notes"].append("flow EPE and reference HU: no reference CT for this mask")
    row["findings"] = findings_from_report(entry.report)
    row["adherence_scores"] = adherence_scores(grid.generated, grid.labels, vocab)
    arrays = {"unit": unit, "body": body, "ref_unit": ref_unit, "ref_tissue_quantiles": ref_q}
    return row, arrays


# ------------------------------------------------------------------------------------------ the set


COHERENCE = ("flow_epe_px", "flow_epe_frozen_px", "warp_error", "warp_error_reference", "ssim_mean",
             "ssim_mean_reference", "adjacent_dhu", "adjacent_dhu_reference", "adjacent_dhu_ratio", "z_hf",
             "z_hf_reference", "z_hf_ratio", "inplane_hf_ratio")


def _aggregate(rows: list[dict], groups: list) -> dict:
    """Means over masks with Student-t intervals (``groups``: the mask of each volume; volumes of one
    mask are one unit, and ``n`` counts masks)."""
    def ci(values):
        return M.mean_ci(values, groups=groups)

    agg = {k: ci([r.get(k) for r in rows])
           for k in ("dice_mean", "dice_reference_mean", "hu_abs_error_mean", "tissue_w1_mean",
                     "soft_tissue_hf_ratio", "fine_texture_ratio") + COHERENCE}
    agg["tissue_w1"] = {t: ci([r.get("tissue_w1", {}).get(t) for r in rows]) for t in realism.TISSUES}
    organs = sorted({o for r in rows for o in r.get("dice", {})})
    agg["dice_per_organ"] = {o: ci([r["dice"].get(o) for r in rows]) for o in organs}
    agg["hd95_per_organ_mm"] = {o: ci([r["hd95_mm"].get(o) for r in rows]) for o in organs}
    agg["missed_organs"] = sum(len(r.get("missed_organs", [])) for r in rows)
    hu_organs = sorted({o for r in rows for o in r.get("hu", {})})
    agg["hu_per_organ"] = {o: {"median": ci([r["hu"].get(o, {}).get("median") for r in rows]),
                               "reference_median": ci([r["hu"].get(o, {}).get("reference_median") for r in rows]),
                               "abs_median_error": ci([r["hu"].get(o, {}).get("abs_median_error") for r in rows])}
                           for o in hu_organs}
    return _clean(agg)


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return json_number(float(x))
    if isinstance(x, np.integer):
        return int(x)
    return x


def training_bank(entries: list[EvalEntry], training_cache: str | Path | None) -> tuple[np.ndarray, str, set]:
    """Signatures ``(N, 1024)`` of every training slice (the checkpoint's cache, train split), the
    cache's path and its training case ids."""
    from tracect.data.cache import PreparedCache

    if training_cache is None:
        for e in entries:
            if e.checkpoint:
                ck = Path(e.checkpoint)
                for cand in (ck / "data.json", ck.parent / "data.json", ck.parent.parent / "data.json"):
                    if cand.is_file():
                        training_cache = json.loads(cand.read_text()).get("cache")
                        break
            if training_cache:
                break
    if training_cache is None or not Path(training_cache).is_dir():
        return np.zeros((0, 1024), np.float32), "", set()
    cache = PreparedCache(training_cache)
    sigs, cases = [], set()
    for i, m in enumerate(cache.cases):
        if m["split"] == "train":
            arr = cache.case(i)
            sigs.append(M.slice_signatures(np.asarray(arr.image, np.float32), np.asarray(arr.body) > 0))
            cases.add(m["case"])
    return (np.concatenate(sigs) if sigs else np.zeros((0, 1024), np.float32)), str(training_cache), cases


def real_adherence(reference: str | Path, vocab, prepare, limit: int = 200) -> list[dict]:
    """The adherence measurements on the real volumes of a dataset (image, mask and report each)."""
    from tracect.data.layout import load_dataset

    ds = load_dataset(reference)
    rows = []
    for c in ds.cases[:limit]:
        if c.image is None or c.mask is None or not c.report:
            continue
        if ds.vocabulary.name not in ("total", "tracect"):
            raise EvaluationError(f"{reference}: masks in vocabulary '{ds.vocabulary.name}'; real-volume adherence "
                                  "reads masks in the 'total' or 'tracect' vocabulary")
        e = EvalEntry(c.case_id, c.image, c.mask, c.report, vocabulary=ds.vocabulary.name)
        g = case_grid(e, prepare, vocab)
        rows.append({"case": c.case_id, "findings": findings_from_report(c.report),
                     "scores": adherence_scores(g.generated, g.labels, vocab)})
    return rows


def evaluate(entries: list[EvalEntry], out: str | Path, *, segmenter=None, features: str | None = None,
             reference_dataset: str | Path | None = None, training_cache: str | Path | None = None,
             ncc_threshold: float = 0.95, html: bool = True, progress: bool = True, log=print) -> dict:
    """Evaluate ``entries``; write ``out/metrics.json`` (and ``out/report.html``); return the metrics."""
    from tqdm import tqdm

    from tracect.data.grid import PrepareConfig
    from tracect.evaluate.segmenter import Segmenter
    from tracect.labels.vocabulary import Vocabulary, get_vocabulary
    from tracect.utils.atomic import write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(segmenter, (str, Path)):
        segmenter = Segmenter.load(segmenter)
    if segmenter is not None:
        prepare = PrepareConfig.from_json(segmenter.info["prepare"])
        vocab = Vocabulary.from_json(segmenter.info["vocabulary"])
    else:
        prepare, vocab = PrepareConfig(), get_vocabulary("tracect")
    window = prepare.hu_window
    notes: list[str] = []

    rows, arrays, viewer = [], [], []
    for e in tqdm(entries, desc="evaluate", unit="volume", disable=not progress):
        grid = case_grid(e, prepare, vocab)
        row, arr = evaluate_case(e, grid, segmenter, vocab, window)
        rows.append(row)
        arrays.append(arr)
        viewer.append((e.name, grid))

    # Fréchet distance on axial slices and coronal / sagittal reformats, generated vs reference
    extractor, fe_info = None, {"name": None, "note": ""}
    if features:
        extractor = TorchScriptFeatures(features)
        fe_info = {"name": extractor.name, "note": extractor.note}
    elif segmenter is not None and hasattr(segmenter, "features"):
        extractor = segmenter.features
        fe_info = {"name": "segmenter-encoder",
                   "note": "pooled deepest encoder block of the tracect segmenter (trained on the cache): "
                           "NOT Inception features; figures are comparable only between runs that use the "
                           "same segmenter"}
    distribution: dict = {"feature_extractor": fe_info["name"]}
    # the Fréchet distance and the real-slice yardstick compare the volumes made for a reference (its
    # mask and its report: counterfactual reports have none) with the references, each reference once
    with_ref = [a for e, a in zip(entries, arrays) if e.reference is not None]
    seen, refs = set(), []
    for e, a in zip(entries, arrays):
        if e.reference is not None and str(e.reference) not in seen:
            seen.add(str(e.reference))
            refs.append(a)
    if extractor is None:
        distribution["note"] = "no feature extractor: give --segmenter or --features FILE"
    elif not refs:
        distribution["note"] = "no reference CTs: give --reference"
    else:
        size = segmenter.config.size if segmenter is not None else 64
        for view in ("axial", "coronal", "sagittal"):
            g = np.concatenate([_resize_stack(reformats(a["unit"], a["body"])[view], size) for a in with_ref])
            r = np.concatenate([_resize_stack(reformats(a["ref_unit"], a["body"])[view], size) for a in refs])
            distribution[f"fd_{view}"] = json_number(M.frechet_distance(extractor(g), extractor(r)))
            distribution[f"n_{view}"] = [int(len(g)), int(len(r))]

    # the yardstick of the tissue distances: each real CT against the next one, each in its own tissues
    real_pairs = [realism.tissue_distances(a["ref_tissue_quantiles"], b["ref_tissue_quantiles"])
                  for a, b in zip(refs, refs[1:])]
    distribution["tissue_w1_real_vs_real"] = {
        "pairs": len(real_pairs), "mean": M.mean_ci([realism.mean_distance(d) for d in real_pairs]),
        **{t: M.mean_ci([d[t] for d in real_pairs]) for t in realism.TISSUES},
        "note": "Wasserstein-1 (HU) between two different real CTs' tissue HU distributions, each in its own "
                "tissue regions (consecutive reference CTs): what another real patient scores"}

    # diversity: volumes that share mask and report (different seeds)
    groups: dict = {}
    for e, a in zip(entries, arrays):
        groups.setdefault((e.mask_sha256 or str(e.mask), e.report), []).append((a["unit"], a["body"]))
    pairs = [(v[i], v[j]) for v in groups.values() for i in range(len(v)) for j in range(i + 1, len(v))
             if v[i][0].shape == v[j][0].shape]
    diversity = {"pairs": len(pairs)}
    if pairs:
        vals = [M.volume_ms_ssim(a[0], b[0], a[1]) for a, b in pairs]
        diversity.update(ms_ssim=M.mean_ci(vals), note="mean axial MS-SSIM between volumes of the same mask and "
                         "report with different seeds (1 = identical; lower = more diverse)")
    else:
        diversity["note"] = "no two volumes share mask and report: generate some with several seeds"

    # memorisation: nearest training slice of each generated slice vs of each real held-out slice
    bank, bank_src, train_cases = training_bank(entries, training_cache)
    privacy: dict = {"threshold": ncc_threshold, "training_cache": bank_src or None, "training_slices": int(len(bank))}
    if len(bank):
        def dist(sigs):
            ncc = M.nearest_ncc(sigs, bank)
            if not len(ncc):
                return None
            return {"n": int(len(ncc)), "median": float(np.median(ncc)), "p90": float(np.percentile(ncc, 90)),
                    "p99": float(np.percentile(ncc, 99)), "max": float(ncc.max()),
                    "fraction_above_threshold": float((ncc >= ncc_threshold).mean())}
        privacy["generated"] = dist(np.concatenate([M.slice_signatures(a["unit"], a["body"]) for a in arrays]))
        if train_cases and any(case_of(e.name, train_cases) for e in entries if e.reference is not None):
            privacy["warning"] = "some reference cases were in the training split: they are not held out"
        privacy["real_held_out"] = (dist(np.concatenate([M.slice_signatures(a["ref_unit"], a["body"]) for a in refs]))
                                    if refs else None)
        privacy["note"] = ("highest normalised cross-correlation (32x32, zero-mean) of each slice with any "
                           "training slice; real held-out slices are the yardstick")
    else:
        privacy["note"] = "no training cache found (give --training-cache or evaluate volumes with a checkpoint)"

    adherence = {"generated": adherence_summary([{"findings": r["findings"], "scores": r["adherence_scores"]}
                                                 for r in rows])}
    if reference_dataset is not None:
        adherence["real"] = adherence_summary(real_adherence(reference_dataset, vocab, prepare))
    else:
        adherence["real"] = None
        notes.append("report adherence on real volumes: no --reference dataset")

    metrics = _clean({
        "tracect_version": __version__, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"cases": len(entries), "grid_size": prepare.size, "hu_window": list(window),
                     "reference_dataset": str(reference_dataset) if reference_dataset else None,
                     "ncc_threshold": ncc_threshold},
        "feature_extractor": fe_info,
        "segmenter": (segmenter_record(segmenter, bank_src) if segmenter is not None else None),
        "cases": rows, "aggregate": _aggregate(rows, [e.mask_sha256 or str(e.mask) for e in entries]),
        "distribution": distribution, "adherence": adherence,
        "diversity": diversity, "privacy": privacy, "notes": notes,
    })
    write_json(out / "metrics.json", metrics)
    if html:
        write_html(out / "report.html", metrics, viewer, vocab)
    if log:
        a = metrics["aggregate"]
        log(f"evaluated {len(rows)} volumes: Dice {a['dice_mean']['mean']}, flow EPE {a['flow_epe_px']['mean']} px, "
            f"warp error {a['warp_error']['mean']}; {out / 'metrics.json'}")
    return metrics


def segmenter_record(segmenter, generator_cache: str) -> dict:
    """What the segmenter is and what it learned from, and whether that was disjoint from the generators'
    training data (the dataset behind their training cache)."""
    info = segmenter.info
    mine = info.get("dataset")
    theirs = None
    if generator_cache and (Path(generator_cache) / "manifest.json").is_file():
        theirs = json.loads((Path(generator_cache) / "manifest.json").read_text()).get("dataset")
    # a cache may come from several dataset folders (a list): disjoint when none is shared
    folders = lambda x: {Path(p).resolve() for p in ([x] if isinstance(x, str) else x)}  # noqa: E731
    disjoint = None if not (mine and theirs) else not (folders(mine) & folders(theirs))
    note = ("segmenter trained on another dataset than the generators: it has not seen their training volumes"
            if disjoint else "the segmenter was trained on the generators' own training dataset: its Dice favours "
            "volumes that resemble their training cases" if disjoint is False else
            "unknown whether the segmenter saw the generators' training data")
    return {"name": segmenter.name, "checkpoint": str(segmenter.path), "trained_on": mine,
            "generators_trained_on": theirs, "disjoint_from_generators": disjoint, "note": note,
            "reference_dice": info.get("reference_dice"), "reference_split": info.get("reference_split")}


def write_html(path: Path, metrics: dict, viewer, vocab) -> Path:
    from tracect.evaluate.report import ViewerCase, write_report

    names = {i: n for i, n in vocab.labels.items() if i != 0}
    cases = [ViewerCase(name, g.generated, g.labels, tuple(float(s) for s in g.spacing), g.reference, names)
             for name, g in viewer]
    return write_report(path, metrics, cases)
