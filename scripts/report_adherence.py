"""Does the volume follow the report? Counterfactual report pairs on held-out phantom masks.

For every held-out case (a phantom draw no model trained on) and one seed per case, each model
generates a slab of the case's mask (``--slab`` slices centred on the liver, so that aorta, liver,
spleen and kidneys are in view) four times, from reports written by the phantom's report writer with
the case's own random stream, which differ in one finding only:

- ``own``: the case's true findings;
- ``phase``: the contrast phase flipped (arterial <-> non-contrast);
- ``fatty``: steatosis flipped;
- ``lesion``: the case's lesions removed, or, for a lesion-free case, one 20 mm lesion added in a
  named organ (liver, spleen, left or right kidney in turn, as far as the slab shows them; hypodense and
  cyst in turn).

Measured on the generation grid (the mask's labels on it): aorta median HU, liver median HU, and
lesions by the rule of :func:`tracect.evaluate.adherence.lesion_shown`: the region where tracect placed
a report's lesion (a ball of its size inside the named organ, ``plan.lesions``) against the rest of the
organ. A case's volumes whose report has the lesion are probed there for it (detected in the named
organ); its volumes whose report has none are probed at the same places (a false detection). Per
finding: the share of pairs with an effect of the right sign and size (contrast: aorta +100 HU
arterial over non-contrast; steatosis: liver -25 HU; lesions: shown with, not shown without), the
median paired effect with its distribution-free 95% interval (sign test over the n masks), AUROC on
the own-report volumes, accuracy beside the majority-class rate. The yardstick: the same
measurements on the held-out cases' real CT (whole volumes): the phantom's true lesions for
detection, and 20 mm places drawn by the same placement rule in organs without a lesion for false
detections.

The anatomy: on the own-report volumes, Dice of an evaluation segmenter (trained on a third phantom
draw, ``--segmenter``) and flow EPE against the real slab, as paired per-mask differences between the
runs (the first run named is the baseline, and every other run is compared with it).

    PYTHONPATH=src python scripts/report_adherence.py --heldout HELDOUT --segmenter SEG --work WORK \
        --runs before=src/tracect/weights/demo-cpu after=runs/cpu 'after_g5=runs/cpu;guidance=5' [--slab 32]

Writes ``WORK/report_adherence.json`` and ``WORK/report_adherence.md``; the generated rows of each run
are kept in ``WORK/rows_RUN.json`` and reused when the command is run again.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np

from tracect.data.findings import organ_group, parse_findings
from tracect.evaluate import metrics as M
from tracect.evaluate.adherence import lesion_contrast, lesion_shown
from tracect.io.volume import Volume

ORGAN_GROUPS = {"liver": ("liver",), "spleen": ("spleen",), "kidney": ("kidney", "kidney_left", "kidney_right")}
ADDED = [("liver", "right hepatic lobe"), ("spleen", "spleen"), ("kidney_left", "interpolar region of the left kidney"),
         ("kidney_right", "interpolar region of the right kidney")]
PHASE_EFFECT_HU, FATTY_EFFECT_HU = 100.0, 25.0


def crop(volume: Volume, z0: int, n: int) -> Volume:
    """Slices ``z0 .. z0+n-1`` of a canonical volume, on the same world grid."""
    shift = np.eye(4)
    shift[0, 3] = z0
    return Volume(np.ascontiguousarray(volume.array[z0:z0 + n]), volume.affine @ shift, dict(volume.meta))


def slab_start(labels: np.ndarray, liver_id: int, n: int) -> int:
    z = np.nonzero((labels == liver_id).any(axis=(1, 2)))[0]
    centre = int(np.round(z.mean())) if len(z) else labels.shape[0] // 2
    return int(np.clip(centre - n // 2, 0, max(labels.shape[0] - n, 0)))


def organ_voxels(labels: np.ndarray, names: dict[int, str], group: str) -> np.ndarray:
    ids = [i for i, name in names.items() if name in ORGAN_GROUPS[group]]
    return np.isin(labels, ids)


def measure(hu: np.ndarray, labels: np.ndarray, names: dict[int, str]) -> dict:
    """Aorta and liver median HU."""
    def med(group_names):
        sel = np.isin(labels, [i for i, n in names.items() if n in group_names])
        return float(np.median(hu[sel])) if sel.sum() >= 20 else float("nan")

    return {"aorta_hu": med(("aorta",)), "liver_hu": med(("liver",))}


def probe(hu: np.ndarray, labels: np.ndarray, names: dict[int, str], affine, placed: list[dict]) -> list[dict]:
    """Each placed lesion's region (a ball of its diameter at its centre, inside its organ group) in
    ``hu``: its contrast against the rest of the organ and whether the rule shows a lesion there."""
    from tracect.data.lesions import ball

    out = []
    for les in placed:
        group = organ_group(les["organ"])
        organ = organ_voxels(labels, names, group)
        region = ball(labels.shape, affine, les["center_index"], les["diameter_mm"])
        c = lesion_contrast(hu, organ, region)
        inside = region & organ
        level = float(np.median(hu[inside])) if inside.sum() >= 2 else float("nan")
        out.append({"organ": les["organ"], "kind": les["kind"], "contrast_hu": c, "region_hu": level,
                    "shown": lesion_shown(c, les["kind"], level)})
    return out


def variants(findings: dict, case_index: int, slab_groups: set[str]) -> dict[str, dict]:
    """The four findings of a case: own, and one finding changed in each of the others."""
    own = copy.deepcopy(findings)
    phase = dict(copy.deepcopy(own), contrast_phase="non-contrast" if own["contrast_phase"] == "arterial" else "arterial")
    fatty = dict(copy.deepcopy(own), fatty_liver=not own["fatty_liver"])
    if own["lesions"]:
        lesion = dict(copy.deepcopy(own), lesions=[])
    else:
        options = [(o, loc) for o, loc in ADDED if (organ_group(o)) in slab_groups]
        organ, loc = options[case_index % len(options)]
        kind = ("hypodense", "cyst")[case_index // len(options) % 2]
        lesion = dict(copy.deepcopy(own), lesions=[{"organ": organ, "location": loc, "kind": kind, "diameter_mm": 20.0}])
    return {"own": own, "phase": phase, "fatty": fatty, "lesion": lesion}


def load_cases(heldout: Path, n_slab: int, limit: int | None):
    from tracect.io.readers import read_mask, read_volume
    from tracect.labels.vocabulary import total
    from tracect.phantom.reports import write_report

    voc = total()
    findings = {json.loads(x)["case"]: json.loads(x) for x in (heldout / "findings.jsonl").read_text().splitlines() if x}
    cases = []
    for i, case in enumerate(sorted(findings)[:limit]):
        mask = read_mask(heldout / "masks" / f"{case}.nii.gz", voc).canonical()
        image = read_volume(heldout / "images" / f"{case}.nii.gz").canonical()
        z0 = slab_start(mask.array, voc.id_of("liver"), n_slab)
        slab_mask, slab_image = crop(mask, z0, n_slab), crop(image, z0, n_slab)
        tnames = voc.labels
        groups = {g for g in ORGAN_GROUPS
                  if organ_voxels(slab_mask.array, {i: ("kidney" if n.startswith("kidney_") else n) for i, n in tnames.items()}, g).sum() >= 20}
        reports = {k: write_report(v, np.random.default_rng(10_000 + i))
                   for k, v in variants(findings[case], i, groups).items()}
        cases.append({"case": case, "index": i, "findings": findings[case], "z0": z0, "mask": slab_mask,
                      "image": slab_image, "full_mask": mask, "full_image": image, "reports": reports})
    return cases


def real_yardstick(cases) -> list[dict]:
    """The measurements on the held-out real CTs (whole volumes, `total` labels, true reports): lesions
    probed where the phantom put them, and at a 20 mm place drawn by the placement rule in each organ
    group without one (the false-detection yardstick)."""
    from tracect.data.findings import Findings, Lesion
    from tracect.generate.lesions import place_lesions
    from tracect.labels.vocabulary import total

    voc = total()
    names = {i: ("kidney" if n.startswith("kidney_") else n) for i, n in voc.labels.items()}
    rows = []
    for c in cases:
        hu, labels = c["full_image"].array.astype(np.float32), c["full_mask"].array
        affine = c["full_image"].affine
        inv = np.linalg.inv(affine)
        truth = [{"organ": les["organ"], "kind": les["kind"], "diameter_mm": les["diameter_mm"],
                  "center_index": (inv @ np.r_[les["center_ras_mm"], 1.0])[:3].tolist()} for les in c["findings"]["lesions"]]
        with_lesion = {(organ_group(t["organ"])) for t in truth}
        free = []
        for organ, group in (("liver", "liver"), ("spleen", "spleen"), ("kidney_left", "kidney")):
            if group in with_lesion:
                continue
            _, placed, _ = place_lesions(Findings(None, None, (Lesion(organ, "hypodense", 20.0),)), labels, affine,
                                         {n: i for i, n in voc.labels.items()}, np.random.default_rng(c["index"]))
            free += placed
        rows.append({"case": c["case"], "variant": "own", "report": c["reports"]["own"],
                     **measure(hu, labels, names), "probes_stated": probe(hu, labels, names, affine, truth),
                     "probes_free": probe(hu, labels, names, affine, free)})
    return rows


def generate_rows(run: str, cases, batch_volumes: int, segmenter, sampling=None, log=print) -> list[dict]:
    from tracect.data.grid import hu_to_unit
    from tracect.data.resample import resample_to_grid
    from tracect.evaluate.segmenter import organ_names
    from tracect.generate.pipeline import Generator

    gen = Generator.from_checkpoint(run)
    names = {i: n for i, n in gen.vocabulary.labels.items()}
    window = gen.prepare.hu_window
    plans = []
    for c in cases:
        for variant, report in c["reports"].items():
            plans.append(gen.plan(c["mask"], report, vocabulary="total", seed=1000 + c["index"],
                                  key=(c["index"], variant), sampling=sampling))
    t0 = time.perf_counter()
    rows, volumes, reals = [], {}, {}
    for plan, vol in gen.generate_many(plans, sampling=sampling, batch_volumes=batch_volumes):
        ci, variant = plan.key
        c = cases[ci]
        hu, labels = vol.canonical.array.astype(np.float32), vol.labels.array
        volumes[(ci, variant)] = (hu, labels, vol.canonical.affine)
        row = {"case": c["case"], "variant": variant, "report": plan.report, **measure(hu, labels, names),
               "stated_lesions": len(parse_findings(plan.report).lesions), "seconds": vol.info["seconds"]}
        if variant == "own":
            body = labels > 0
            unit = hu_to_unit(hu, window)
            real = resample_to_grid(c["image"], vol.canonical.affine, labels.shape, order=1, cval=-1024).array
            reals[ci] = real.astype(np.float32)
            row["flow_epe_px"] = M.flow_epe(unit, hu_to_unit(real.astype(np.float32), window), body)
            if segmenter is not None:
                d, _, _ = M.per_organ_overlap(segmenter.predict(unit, affine=vol.canonical.affine), labels,
                                              organ_names(gen.vocabulary), vol.canonical.spacing)
                row["dice_mean"] = M.mean_or_nan([v for v in d.values() if np.isfinite(v)])
        placed = plan.lesions
        if not placed and not gen.config.model.findings:
            # a model without findings placed nothing: its volumes are probed where one with findings
            # would have put the lesions (the placement depends on report, mask and seed alone)
            from tracect.generate.lesions import place_lesions

            _, placed, _ = place_lesions(parse_findings(plan.report), labels, vol.canonical.affine,
                                         {n: i for i, n in names.items()}, np.random.default_rng(plan.seed))
        row["_placed"] = placed
        rows.append(row)
        log(f"{Path(run).name} {c['case']} {variant}: aorta {row['aorta_hu']:.0f} liver {row['liver_hu']:.0f}")
    log(f"{run}: {len(rows)} volumes in {time.perf_counter() - t0:.0f} s")
    # lesions: every volume of a case is probed at the places its lesion report put them (the report
    # with lesions: the own one, or the `lesion` variant of a lesion-free case)
    by = {(r["case"], r["variant"]): r for r in rows}
    for c in cases:
        own = by[(c["case"], "own")]
        source = own if own["stated_lesions"] else by[(c["case"], "lesion")]
        for variant in c["reports"]:
            hu, labels, affine = volumes[(c["index"], variant)]
            r = by[(c["case"], variant)]
            r["probes"] = probe(hu, labels, names, affine, source["_placed"])
        # the yardstick on the same grid: the case's real CT resampled onto it, probed at the phantom's
        # true lesions and, where the case has none, at the very places the generated volumes are probed
        hu, labels, affine = volumes[(c["index"], "own")]
        real = reals[c["index"]]
        inv = np.linalg.inv(affine)
        truth = [{"organ": les["organ"], "kind": les["kind"], "diameter_mm": les["diameter_mm"],
                  "center_index": (inv @ np.r_[les["center_ras_mm"], 1.0])[:3].tolist()}
                 for les in c["findings"]["lesions"]]
        truth = [t for t in truth if 0 <= t["center_index"][0] <= labels.shape[0] - 1]  # in the slab
        own["real_probes_true"] = probe(real, labels, names, affine, truth)
        own["real_probes_free"] = [] if own["stated_lesions"] else probe(real, labels, names, affine, source["_placed"])
    for r in rows:
        r["placed_lesions"] = r.pop("_placed")
    return rows


def paired_effect(by: dict, cases: list[str], variant: str, positive, key: str, threshold: float,
                  sign: int = 1) -> dict:
    """One finding's counterfactual pairs (the own report and ``variant``): per mask, ``sign`` x (the
    measurement ``key`` of the volume whose report states the finding minus the other's); the share at
    or above ``threshold`` and its median, with intervals; AUROC of ``sign`` x ``key`` on the own-report
    volumes against ``positive(row)``, the majority-class rate beside it."""
    d = []
    for c in cases:
        a, b = by[(c, "own")], by[(c, variant)]
        yes, no = (a, b) if positive(a) else (b, a)
        d.append(sign * (yes[key] - no[key]))
    d = np.array(d)
    own = [by[(c, "own")] for c in cases]
    y = [positive(r) for r in own]
    return {"pairs": len(d), "share_right_size": float(np.mean(d >= threshold)),
            "share_right_size_ci": M.proportion_interval(int((d >= threshold).sum()), len(d)),
            "share_right_sign": float(np.mean(d > 0)), "median_effect_hu": float(np.median(d)),
            "median_effect_ci": M.median_interval(d), "auroc_own": M.auroc([sign * r[key] for r in own], y),
            "own_positives": int(sum(y)), "majority_rate": float(max(np.mean(y), 1 - np.mean(y)))}


def summarise(rows: list[dict], real: list[dict] | None = None) -> dict:
    by = {(r["case"], r["variant"]): r for r in rows}
    cases = sorted({r["case"] for r in rows})
    own = [by[(c, "own")] for c in cases]
    out: dict = {"n_masks": len(cases)}

    def arterial(r):
        return parse_findings(r["report"]).contrast_phase == "arterial"

    def fatty(r):
        return bool(parse_findings(r["report"]).fatty_liver)

    out["contrast_phase"] = {
        **paired_effect(by, cases, "phase", arterial, "aorta_hu", PHASE_EFFECT_HU),
        "accuracy_own": float(np.mean([(r["aorta_hu"] > 120) == arterial(r) for r in own])),
        "rule": "aorta median > 120 HU = arterial",
        "target": f"AUROC >= 0.95; >= 90% of pairs arterial - non-contrast >= {PHASE_EFFECT_HU:.0f} HU"}
    # steatosis lowers the liver: the effect is normal minus fatty, the score minus the liver's HU
    out["fatty_liver"] = {
        **paired_effect(by, cases, "fatty", fatty, "liver_hu", FATTY_EFFECT_HU, sign=-1),
        "score": "minus the liver median HU",
        "target": f"AUROC >= 0.9; >= 90% of pairs normal - fatty liver >= {FATTY_EFFECT_HU:.0f} HU"}
    out["lesion"] = lesion_summary(rows)
    if real:
        out["real"] = real_summary(real)
    return out


def lesion_summary(rows: list[dict]) -> dict:
    """Detection in volumes whose report states lesions, false detection in the others (probed at the
    case's lesion places), pairs right both ways, AUROC of the own-report volumes."""
    shown = [p["shown"] for r in rows if r["stated_lesions"] for p in r["probes"]]
    free = [any(p["shown"] for p in r["probes"]) for r in rows if not r["stated_lesions"] and r["probes"]]
    by = {(r["case"], r["variant"]): r for r in rows}
    pairs, scores, labels = [], [], []
    for c in sorted({r["case"] for r in rows}):
        own, other = by[(c, "own")], by.get((c, "lesion"))
        if other is None or not own["probes"]:
            continue
        with_, without = (own, other) if own["stated_lesions"] else (other, own)
        pairs.append(all(p["shown"] for p in with_["probes"]) and not any(p["shown"] for p in without["probes"]))
        sign = [1 if p["kind"] == "hyperenhancing" else -1 for p in own["probes"]]
        scores.append(float(np.nanmean([s * p["contrast_hu"] for s, p in zip(sign, own["probes"])])))
        labels.append(bool(own["stated_lesions"]))
    return {"lesions_stated": len(shown), "detected_in_named_organ": float(np.mean(shown)) if shown else float("nan"),
            "detected_ci": M.proportion_interval(int(sum(shown)), len(shown)),
            "lesion_free_volumes": len(free), "false_detection_rate": float(np.mean(free)) if free else float("nan"),
            "false_detection_ci": M.proportion_interval(int(sum(free)), len(free)),
            "pairs": len(pairs), "pairs_both_right": float(np.mean(pairs)) if pairs else float("nan"),
            "auroc_own": M.auroc(scores, labels), "own_positives": int(sum(labels)),
            **real_on_grid(rows),
            "rule": "region median at least 10 HU below the rest of its organ (above: hyperenhancing)",
            "target": ">= 80% detected in the named organ; <= 10% false detections in lesion-free volumes"}


def real_on_grid(rows: list[dict]) -> dict:
    """The rule on the real CT resampled onto the generation grid: true lesions detected, and false
    detections at the places where lesion-free cases' generated volumes are probed (rows from a run
    made before this yardstick existed hold neither)."""
    true = [p["shown"] for r in rows for p in r.get("real_probes_true", [])]
    free = [any(p["shown"] for p in r["real_probes_free"]) for r in rows if r.get("real_probes_free")]
    if not true and not free:
        return {}
    return {"real_grid_true_lesions": len(true), "real_grid_detected": float(np.mean(true)) if true else float("nan"),
            "real_grid_free_cases": len(free),
            "real_grid_false_detection_rate": float(np.mean(free)) if free else float("nan"),
            "real_grid_false_detection_ci": M.proportion_interval(int(sum(free)), len(free)) if free else None}


def real_summary(real: list[dict]) -> dict:
    y = [parse_findings(r["report"]).contrast_phase == "arterial" for r in real]
    f = [bool(parse_findings(r["report"]).fatty_liver) for r in real]
    shown = [p["shown"] for r in real for p in r["probes_stated"]]
    free = [p["shown"] for r in real for p in r["probes_free"]]
    return {"n": len(real), "contrast_auroc": M.auroc([r["aorta_hu"] for r in real], y),
            "fatty_auroc": M.auroc([-r["liver_hu"] for r in real], f),
            "aorta_hu_arterial": float(np.median([r["aorta_hu"] for r, t in zip(real, y) if t])),
            "aorta_hu_non_contrast": float(np.median([r["aorta_hu"] for r, t in zip(real, y) if not t])),
            "liver_hu_fatty": float(np.median([r["liver_hu"] for r, t in zip(real, f) if t])) if any(f) else None,
            "liver_hu_normal": float(np.median([r["liver_hu"] for r, t in zip(real, f) if not t])),
            "lesion": {"lesions_stated": len(shown), "detected_in_named_organ": float(np.mean(shown)) if shown else float("nan"),
                       "places_without_lesion": len(free), "false_detection_rate": float(np.mean(free)) if free else float("nan")}}


def paired_anatomy(rows_a: list[dict], rows_b: list[dict]) -> dict:
    """Run b minus run a on the own-report volumes, per mask: Dice and flow EPE."""
    a = {r["case"]: r for r in rows_a if r["variant"] == "own"}
    b = {r["case"]: r for r in rows_b if r["variant"] == "own"}
    out = {}
    for key in ("dice_mean", "flow_epe_px"):
        d = np.array([b[c][key] - a[c][key] for c in sorted(a) if c in b and key in a[c] and key in b[c]])
        if len(d):
            out[key] = {"n": len(d), "mean_a": float(np.mean([a[c][key] for c in sorted(a) if key in a[c]])),
                        "mean_b": float(np.mean([b[c][key] for c in sorted(b) if key in b[c]])),
                        "mean_difference": float(d.mean()), "ci95_t": M.t_interval(d)}
    return out


def markdown(result: dict) -> str:
    lines = [f"Held-out phantom masks: {result['n_masks']} (slabs of {result['slab']} slices), one seed each.", ""]
    runs = list(result["runs"])
    lines += ["| finding | " + " | ".join(runs) + " | real CT |", "| --- |" + " --- |" * (len(runs) + 1)]

    def f(x, nd=2):
        return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"

    def row(label, get, real=""):
        lines.append(f"| {label} | " + " | ".join(get(result["runs"][r]) for r in runs) + f" | {real} |")

    real = result.get("real", {})
    row("contrast: AUROC (own reports)", lambda s: f(s["contrast_phase"]["auroc_own"]), f(real.get("contrast_auroc")))
    row("contrast: accuracy / majority rate", lambda s: f"{f(s['contrast_phase']['accuracy_own'])} / "
        f"{f(s['contrast_phase']['majority_rate'])}")
    row("contrast: pairs with aorta +100 HU", lambda s: f"{s['contrast_phase']['share_right_size']:.0%} "
        f"[{s['contrast_phase']['share_right_size_ci'][0]:.0%}, {s['contrast_phase']['share_right_size_ci'][1]:.0%}]")
    row("contrast: median paired effect, HU", lambda s: f"{s['contrast_phase']['median_effect_hu']:+.0f} "
        f"[{s['contrast_phase']['median_effect_ci'][0]:+.0f}, {s['contrast_phase']['median_effect_ci'][1]:+.0f}]",
        f"{real.get('aorta_hu_arterial', float('nan')) - real.get('aorta_hu_non_contrast', float('nan')):+.0f} (medians)" if real else "")
    row("steatosis: AUROC (own reports)", lambda s: f(s["fatty_liver"]["auroc_own"]), f(real.get("fatty_auroc")))
    row("steatosis: pairs with liver -25 HU", lambda s: f"{s['fatty_liver']['share_right_size']:.0%} "
        f"[{s['fatty_liver']['share_right_size_ci'][0]:.0%}, {s['fatty_liver']['share_right_size_ci'][1]:.0%}]")
    row("steatosis: median paired effect, HU", lambda s: f"{s['fatty_liver']['median_effect_hu']:+.0f} "
        f"[{s['fatty_liver']['median_effect_ci'][0]:+.0f}, {s['fatty_liver']['median_effect_ci'][1]:+.0f}]")
    rl = real.get("lesion", {})
    row("lesion: detected in the named organ", lambda s: f"{f(s['lesion']['detected_in_named_organ'])} "
        f"(n={s['lesion']['lesions_stated']} lesions)",
        f"{f(rl.get('detected_in_named_organ'))} (n={rl.get('lesions_stated')} true lesions)")
    row("lesion: false detections, lesion-free volumes", lambda s: f"{f(s['lesion']['false_detection_rate'])} "
        f"(n={s['lesion']['lesion_free_volumes']} volumes)",
        f"{f(rl.get('false_detection_rate'))} (n={rl.get('places_without_lesion')} places)")
    row("lesion: real CT on the generation grid, detected / false at the same places",
        lambda s: (f"{f(s['lesion']['real_grid_detected'])} (n={s['lesion']['real_grid_true_lesions']}) / "
                   f"{f(s['lesion']['real_grid_false_detection_rate'])} (n={s['lesion']['real_grid_free_cases']})")
        if "real_grid_detected" in s["lesion"] else "n/a")
    row("lesion: pairs right both ways", lambda s: f"{f(s['lesion']['pairs_both_right'])} (n={s['lesion']['pairs']})")
    row("lesion: AUROC (own reports)", lambda s: f"{f(s['lesion']['auroc_own'])} ({s['lesion']['own_positives']} with lesions)")
    lines.append("")
    for name, anatomy in result.get("anatomy", {}).items():
        for key, v in anatomy.items():
            lines.append(f"- {key}: {runs[0]} {v['mean_a']:.3f}, {name} {v['mean_b']:.3f}; paired difference "
                         f"{v['mean_difference']:+.3f}, 95% t interval [{v['ci95_t'][0]:+.3f}, {v['ci95_t'][1]:+.3f}], "
                         f"n={v['n']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heldout", required=True, help="held-out phantom dataset (tracect phantom --split test)")
    ap.add_argument("--runs", nargs="+", required=True,
                    help="NAME=RUN_FOLDER, optionally with sampler settings: 'NAME=RUN;guidance=5;lesion_guidance=1'; "
                         "the first is the baseline")
    ap.add_argument("--work", required=True)
    ap.add_argument("--segmenter", help="evaluation segmenter folder (Dice); none: no Dice")
    ap.add_argument("--slab", type=int, default=32)
    ap.add_argument("--cases", type=int, default=None)
    ap.add_argument("--batch-volumes", type=int, default=8)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cases = load_cases(Path(args.heldout), args.slab, args.cases)
    segmenter = None
    if args.segmenter:
        from tracect.evaluate.segmenter import Segmenter

        segmenter = Segmenter.load(args.segmenter)
    real = real_yardstick(cases)
    result = {"n_masks": len(cases), "slab": args.slab, "runs": {}, "real": real_summary(real),
              "heldout": str(args.heldout)}
    rows = {}
    for spec in args.runs:
        name, run = spec.split("=", 1)
        sampling = None
        if ";" in run:  # sampler settings: RUN;guidance=5;lesion_guidance=1
            from tracect.generate.sampling import Sampling

            run, *settings = run.split(";")
            sampling = Sampling(**{k: float(v) for k, v in (x.split("=", 1) for x in settings)})
        path = work / f"rows_{name}.json"
        if path.is_file():
            rows[name] = json.loads(path.read_text())
        else:
            rows[name] = generate_rows(run, cases, args.batch_volumes, segmenter, sampling)
            path.write_text(json.dumps(rows[name], indent=1, default=float))
        result["runs"][name] = summarise(rows[name])
        result["runs"][name]["run"] = run
        result["runs"][name]["seconds_per_volume"] = float(np.median([r["seconds"] for r in rows[name]]))
    names = list(rows)
    result["anatomy"] = {name: paired_anatomy(rows[names[0]], rows[name]) for name in names[1:]}
    (work / "report_adherence.json").write_text(json.dumps(result, indent=1, default=float))
    (work / "report_adherence.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
