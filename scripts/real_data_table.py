"""The real-data table: a phantom-only model against a phantom + real model, judged on real CT held out
of all training.

The two models share one recipe (the demo's: 24 phantom cases, seed 0, the ``cpu`` preset, a fixed
number of steps) and differ only in the training data:

- **phantom only**: the shipped demo weights (``src/tracect/weights/demo-cpu``), or ``--phantom-only``;
- **phantom + real**: the same phantom cases and the real CTs in ../shared/data/real-ct except the
  held-out one, pseudo-labelled from HU (``tracect prepare PHANTOM REAL --pseudo-labels``) and trained
  here for the same number of steps, in ``--vocabulary`` (``tracect-fat`` by default: fat apart from
  ``body``, which the phantom-only model's ``tracect`` merges).

Both generate, for every seed, from two real masks of CTs that no model saw:

- the held-out real case's own pseudo-labels (``tracect label``; vocabulary ``tissue``), and
- the TotalSegmentator ``total`` mask of the example in ../shared/data/totalseg-example (non-contrast).

Each volume is scored by ``tracect evaluate`` against its real CT: per-tissue HU Wasserstein distances
(the real CT's tissues), per-organ median HU errors (TotalSegmentator mask), in-plane high-frequency
power over real. The yardstick: the same tissue distances between the held-out real CT and each other
real CT (each in its own tissues, on its own evaluation grid); and, on the held-out case's pseudo-labels,
a volume that paints each tissue class with its median HU over the training real CTs (what learning only
each class's level, no texture, scores). ``--pseudo-repeat R`` lists each real case's windows R times
per epoch (``train.pseudo_window_repeat``; its run is ``WORK/run_realR``). Writes ``WORK/real_data.json``,
``WORK/real_data.md`` and montages (real | phantom only | phantom + real) under ``WORK/``.

    PYTHONPATH=src python scripts/real_data_table.py --work real_data [--steps 4000] [--seeds 0 1 2]
        [--vocabulary tracect-fat|tracect] [--pseudo-repeat R]

Steps whose outputs exist are reused (the training run resumes), so the command can be rerun.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
REAL = SHARED / "real-ct"
TOTALSEG = SHARED / "totalseg-example"

# the generation reports: what each CT's source says about it, in the phantom's report words
HELDOUT_REPORT = ("EXAMINATION: Contrast-enhanced CT of the chest, abdomen and pelvis, portal venous phase.\n"
                  "FINDINGS: Colorectal liver metastases.")
TOTALSEG_REPORT = ("EXAMINATION: Non-contrast CT of the abdomen.\n"
                   "FINDINGS: No acute abnormality in the abdomen.")
# coarse tissue classes of a median HU: an organ that lands in another class than its real one came out
# as the wrong tissue (air for a solid organ, soft tissue for lung)
CLASSES = ((-400.0, "air/lung"), (-30.0, "fat"), (float("inf"), "soft tissue or denser"))


def tissue_class(hu: float) -> str:
    return next(name for top, name in CLASSES if hu < top)


def real_report(row: dict) -> str:
    """A training report for a real case from ``cases.csv`` (its region, contrast and known finding), in
    the words the phantom's reports use: no more is known about these scans."""
    region = row["region"].replace("chest abdomen pelvis", "chest, abdomen and pelvis")
    contrast = row["contrast"].lower()
    exam = ("Contrast-enhanced CT of the {r}, portal venous phase." if "portal" in contrast else
            "Contrast-enhanced CT of the {r}." if "contrast" in contrast else "CT of the {r}.").format(r=region)
    return f"EXAMINATION: {exam}\nFINDINGS: {row['known_finding'].capitalize()}."


def build_datasets(work: Path, held_out: str, n_phantom: int) -> tuple[Path, Path, list[str]]:
    from tracect.phantom import write_dataset

    phantom = work / "phantom"
    if not (phantom / "dataset.json").is_file():
        write_dataset(phantom, n=n_phantom, seed=0, workers=1)
    real = work / "real"
    rows = list(csv.DictReader((REAL / "cases.csv").open()))
    train = [r for r in rows if r["case"] != held_out]
    if len(train) == len(rows):
        raise SystemExit(f"held-out case {held_out} is not in {REAL / 'cases.csv'}")
    (real / "images").mkdir(parents=True, exist_ok=True)
    for r in train:  # symbolic links: the real CTs are never copied
        src = REAL / r["file"]
        link = real / "images" / f"{r['case']}{''.join(src.suffixes)}"
        if not link.exists():
            link.symlink_to(src)
    with (real / "reports.csv").open("w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)
        w.writerow(["case", "report"])
        for r in train:
            w.writerow([r["case"], real_report(r)])
    (real / "dataset.json").write_text(json.dumps({"name": "real-ct (pseudo-labelled)",
                                                   "split": {"train": [r["case"] for r in train]}}, indent=2))
    return phantom, real, [r["case"] for r in train]


def train_mixed(work: Path, phantom: Path, real: Path, steps: int, vocabulary: str, pseudo_repeat: int = 1) -> Path:
    from tracect.config import load_config
    from tracect.data.prepare import PrepareConfig, prepare_dataset
    from tracect.train.trainer import Trainer, sized_for_cache

    cache = work / "cache"
    result = prepare_dataset([phantom, real], cache, PrepareConfig(vocabulary=vocabulary), pseudo_labels=True,
                             progress=False)
    if result.skipped:
        raise SystemExit(f"cases skipped: {result.skipped}")
    run = work / ("run" if pseudo_repeat == 1 else f"run_real{pseudo_repeat}")
    config = load_config("cpu").replace(train={"max_steps": steps, "max_minutes": None, "val_every": 100000,
                                               "pseudo_window_repeat": pseudo_repeat})
    config, note = sized_for_cache(config, cache)  # tracect-fat: one class more than the preset's
    if note:
        print(note)
    resume = (run / "config.json").is_file()
    t = time.perf_counter()
    state = Trainer(config, cache, run, resume=resume, progress=True).fit()
    print(f"trained {state.step} steps in {(time.perf_counter() - t) / 60:.1f} min -> {run}")
    return run


def label(ct: Path, out: Path) -> Path:
    from tracect.cli.main import main

    if not out.is_file():
        assert main(["label", str(ct), "--out", str(out)]) == 0
    return out


def real_ct_file(case: str) -> Path:
    row = next(r for r in csv.DictReader((REAL / "cases.csv").open()) if r["case"] == case)
    return REAL / row["file"]


def generate_all(work: Path, models: dict, masks: dict, seeds) -> dict:
    """Generate every model x mask x seed (reused when present); returns model -> mask -> [EvalEntry]."""
    from tracect.evaluate.entries import EvalEntry
    from tracect.generate.outputs import write_outputs
    from tracect.generate.pipeline import Generator
    from tracect.io.readers import read_mask
    from tracect.labels.vocabulary import get_vocabulary

    entries: dict = {}
    for model, ckpt in models.items():
        gen = None
        for mname, m in masks.items():
            for seed in seeds:
                out = work / "generated" / model / f"{mname}_s{seed}.nii.gz"
                if not out.is_file():
                    gen = gen or Generator.from_checkpoint(ckpt, device="cpu")
                    mask = read_mask(m["mask"], get_vocabulary(m["vocabulary"]))
                    t = time.perf_counter()
                    res = gen.generate(mask, m["report"], vocabulary=m["vocabulary"], seed=seed, body=m.get("body"))
                    write_outputs(res, out, formats=("nifti", "grid"), pictures=False, overwrite=True)
                    print(f"{model} {mname} seed {seed}: {res.ct.shape} in {time.perf_counter() - t:.0f} s")
                entries.setdefault(model, {}).setdefault(mname, []).append(EvalEntry(
                    name=f"{mname}_s{seed}", generated=out, mask=Path(m["mask"]), report=m["report"],
                    reference=Path(m["reference"]), vocabulary=m["vocabulary"], seed=seed))
    return entries


def paint_class_medians(work: Path, trained_on: list[str], mask: Path, out: Path) -> Path:
    """The no-learning yardstick: each tissue class of ``mask`` (``tissue`` pseudo-labels) painted with
    that class's median HU over the training real CTs (their own pseudo-labels), air elsewhere. A model
    that had learned only each class's level, and no texture, would score about this."""
    from tracect.io.readers import read_volume, write_volume
    from tracect.io.volume import volume_from
    from tracect.data.grid import replace_padding
    from tracect.labels.pseudo import TISSUE

    if out.is_file():
        return out
    values: dict[int, list] = {}
    rng = np.random.default_rng(0)
    for case in trained_on:
        ct = real_ct_file(case)
        hu, _ = replace_padding(read_volume(ct).canonical().array.astype(np.float32))
        ids = read_volume(label(ct, work / "labels" / f"{case}.nii.gz")).canonical().array
        for i in np.unique(ids[ids > 0]):
            v = hu[ids == i]
            values.setdefault(int(i), []).append(rng.choice(v, size=min(v.size, 200_000), replace=False))
    medians = {i: float(np.median(np.concatenate(v))) for i, v in values.items()}
    m = read_volume(mask).canonical()
    ids = np.asarray(m.array).astype(np.int64)
    painted = np.full(ids.shape, -1000.0, dtype=np.float32)
    for i, hu in medians.items():
        painted[ids == i] = hu
    write_volume(volume_from("class medians", painted, m.affine, {}), out)
    (out.parent / "class_medians.json").write_text(json.dumps({TISSUE.labels[i]: round(v, 1)
                                                              for i, v in sorted(medians.items())}, indent=2))
    return out


def real_vs_real(held_out: str, others: list[str], work: Path) -> dict:
    """Tissue distances between the held-out real CT and each other real CT, each in its own tissues on
    its own evaluation grid (the protocol of ``tracect evaluate``'s ``tissue_w1``)."""
    from tracect.data.grid import PrepareConfig
    from tracect.evaluate import realism
    from tracect.evaluate.entries import EvalEntry
    from tracect.evaluate.harness import case_grid
    from tracect.labels.vocabulary import get_vocabulary

    def quantiles(case, ct, mask, vocabulary):
        e = EvalEntry(name=case, generated=ct, mask=mask, reference=ct, vocabulary=vocabulary)
        g = case_grid(e, PrepareConfig(), get_vocabulary("tracect"))
        return realism.tissue_quantiles(g.reference, realism.tissue_map(g.reference, g.spacing))

    ct = real_ct_file(held_out)
    mine = quantiles(held_out, ct, label(ct, work / "labels" / f"{held_out}.nii.gz"), "tissue")
    out = {}
    for case in others:
        ct = real_ct_file(case)
        theirs = quantiles(case, ct, label(ct, work / "labels" / f"{case}.nii.gz"), "tissue")
        d = realism.tissue_distances(theirs, mine)
        out[case] = {"tissue_w1": d, "tissue_w1_mean": realism.mean_distance(d)}
    ts = quantiles("totalseg", TOTALSEG / "ct.nii.gz", TOTALSEG / "seg.nii.gz", "total")
    d = realism.tissue_distances(ts, mine)
    out["totalseg-example"] = {"tissue_w1": d, "tissue_w1_mean": realism.mean_distance(d)}
    return out


def summarise(metrics: dict) -> dict:
    from tracect.evaluate import realism

    cases = metrics["cases"]
    tissue = {t: [c["tissue_w1"].get(t) for c in cases] for t in realism.TISSUES}
    organs: dict[str, list] = {}
    for c in cases:
        for organ, s in c["hu"].items():
            if s.get("reference_median") is not None:
                organs.setdefault(organ, []).append((s["median"], s["reference_median"]))
    return {
        "n_volumes": len(cases),
        "tissue_w1": {t: [None if v is None else round(v, 1) for v in vs] for t, vs in tissue.items()},
        "tissue_w1_mean": [round(c["tissue_w1_mean"], 1) for c in cases],
        "hu_abs_error_mean": [round(c["hu_abs_error_mean"], 1) for c in cases],
        "inplane_hf_ratio": [round(c["inplane_hf_ratio"], 3) for c in cases],
        "soft_tissue_hf_ratio": [None if c["soft_tissue_hf_ratio"] is None else round(c["soft_tissue_hf_ratio"], 3)
                                 for c in cases],
        "adjacent_dhu": [round(c["adjacent_dhu"], 1) for c in cases],
        "adjacent_dhu_reference": round(cases[0]["adjacent_dhu_reference"], 1),
        "organ_median_hu": {o: {"generated": [round(g, 0) for g, _ in v], "real": round(v[0][1], 0)}
                            for o, v in sorted(organs.items())},
        "wrong_tissue_class": sorted({f"{o} ({c['case']}: {s['median']:.0f} HU, real {s['reference_median']:.0f})"
                                      for c in cases for o, s in c["hu"].items()
                                      if s.get("reference_median") is not None
                                      and tissue_class(s["median"]) != tissue_class(s["reference_median"])}),
    }


def plot_montage(rows: dict, title: str, out: Path) -> Path:
    """Four axial slices and a coronal reformat of each volume of ``rows`` (name -> HU ``(Z, Y, X)``, one
    grid), a row each, window -1000..1000 HU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Z = next(iter(rows.values())).shape[0]
    zs = np.linspace(0.15, 0.85, 4) * (Z - 1)
    fig, axes = plt.subplots(len(rows), 5, figsize=(12.5, 2.6 * len(rows)))
    for r, (name, vol) in enumerate(rows.items()):
        for k, z in enumerate(zs):
            axes[r, k].imshow(vol[int(round(z))], cmap="gray", vmin=-1000, vmax=1000)
            axes[r, k].set_title(f"{name}, axial {int(round(z))}", fontsize=8)
        axes[r, 4].imshow(vol[:, vol.shape[1] // 2, :], cmap="gray", vmin=-1000, vmax=1000, aspect="auto")
        axes[r, 4].set_title(f"{name}, coronal", fontsize=8)
    for a in axes.ravel():
        a.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def montage(mname: str, entries: dict, out: Path, seed: int) -> Path:
    """Axial slices and a coronal reformat: the real CT | phantom only | phantom + real, on the evaluation
    grid of the seed-``seed`` volumes."""
    from tracect.data.grid import PrepareConfig
    from tracect.evaluate.harness import case_grid
    from tracect.labels.vocabulary import get_vocabulary

    rows = {}
    for model, by_mask in entries.items():
        if mname not in by_mask:
            continue
        e = next(x for x in by_mask[mname] if x.seed == seed)
        g = case_grid(e, PrepareConfig(), get_vocabulary("tracect"))
        rows.setdefault("real CT", g.reference)
        rows[model] = g.generated
    return plot_montage(rows, f"{mname}: seed {seed}, window -1000..1000 HU, on the 64² evaluation grid", out)


def fmt(xs) -> str:
    xs = [x for x in xs if x is not None]
    return "—" if not xs else f"{np.median(xs):.0f} ({min(xs):.0f}–{max(xs):.0f})"


def write_table(work: Path, res: dict, path: Path) -> None:
    from tracect.evaluate import realism

    lines = [f"n = {len(res['seeds'])} seeds per model and mask; median (min–max) over seeds", ""]
    for mname, by_model in res["summary"].items():
        lines += [f"### {mname}", "", "| figure | " + " | ".join(by_model) + " |",
                  "|---|" + "---:|" * len(by_model)]
        for t in realism.TISSUES:
            lines.append(f"| W1 {t} (HU) | " + " | ".join(fmt(s["tissue_w1"][t]) for s in by_model.values()) + " |")
        lines.append("| W1 mean over tissues (HU) | " + " | ".join(fmt(s["tissue_w1_mean"]) for s in by_model.values()) + " |")
        lines.append("| per-organ median HU error (HU) | " + " | ".join(fmt(s["hu_abs_error_mean"]) for s in by_model.values()) + " |")
        lines.append("| in-plane HF power / real | " + " | ".join(
            f"{np.median(s['inplane_hf_ratio']):.2f}" for s in by_model.values()) + " |")
        lines.append("| soft-tissue HF power / real | " + " | ".join(
            "—" if None in s["soft_tissue_hf_ratio"] else f"{np.median(s['soft_tissue_hf_ratio']):.2f}"
            for s in by_model.values()) + " |")
        lines.append("| organs in the wrong tissue class | " + " | ".join(
            str(len(s["wrong_tissue_class"])) for s in by_model.values()) + " |")
        lines.append("")
    rr = res["real_vs_real"]
    lines += ["### Yardstick: the held-out real CT against other real CTs", "",
              "| other CT | " + " | ".join(f"W1 {t}" for t in realism.TISSUES) + " | mean |",
              "|---|" + "---:|" * (len(realism.TISSUES) + 1)]
    for case, d in rr.items():
        lines.append(f"| {case} | " + " | ".join("—" if d["tissue_w1"][t] is None else f"{d['tissue_w1'][t]:.0f}"
                                                 for t in realism.TISSUES) + f" | {d['tissue_w1_mean']:.0f} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="real_data")
    ap.add_argument("--held-out", default="crlm_1006", help="the real case kept out of all training")
    ap.add_argument("--steps", type=int, default=4000, help="training steps (the shipped demo weights' recipe)")
    ap.add_argument("--n-phantom", type=int, default=24)
    ap.add_argument("--phantom-only", default=None, help="checkpoint; default: the shipped demo weights")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--vocabulary", default="tracect-fat",
                    help="the phantom + real model's vocabulary: tracect-fat keeps the pseudo-labels' fat apart "
                         "from soft tissue, tracect merges both into body")
    ap.add_argument("--pseudo-repeat", type=int, default=1,
                    help="each real (pseudo-labelled) case's windows this many times per epoch "
                         "(train.pseudo_window_repeat)")
    ap.add_argument("--images", default=None, help="folder for the montages (default WORK)")
    args = ap.parse_args()
    from tracect.cli.demo import shipped_weights

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    phantom, real, trained_on = build_datasets(work, args.held_out, args.n_phantom)
    run = train_mixed(work, phantom, real, args.steps, args.vocabulary, args.pseudo_repeat)
    mixed = "phantom + real" if args.pseudo_repeat == 1 else f"phantom + real x{args.pseudo_repeat}"
    models = {"phantom only": Path(args.phantom_only) if args.phantom_only else shipped_weights(), mixed: run}
    ct = real_ct_file(args.held_out)
    masks = {
        f"{args.held_out} (its pseudo-labels)": {"mask": label(ct, work / "labels" / f"{args.held_out}.nii.gz"),
                                                 "vocabulary": "tissue", "report": HELDOUT_REPORT, "reference": ct},
        "totalseg-example (its total mask)": {"mask": TOTALSEG / "seg.nii.gz", "vocabulary": "total",
                                              "report": TOTALSEG_REPORT, "reference": TOTALSEG / "ct.nii.gz"},
    }
    entries = generate_all(work, models, masks, args.seeds)
    held = next(iter(masks))  # the yardstick needs tissue classes: the held-out case's pseudo-labels only
    painted = paint_class_medians(work, trained_on, masks[held]["mask"], work / "generated" / "class_medians.nii.gz")
    from tracect.evaluate.entries import EvalEntry
    entries["class medians"] = {held: [EvalEntry(name=f"{held.split(' ')[0]}_class_medians", generated=painted,
                                                 mask=Path(masks[held]["mask"]), report=masks[held]["report"],
                                                 reference=Path(masks[held]["reference"]), vocabulary="tissue",
                                                 seed=s) for s in args.seeds[:1]]}

    from tracect.evaluate.harness import evaluate

    summary: dict = {}
    for model, by_mask in entries.items():
        for mname, es in by_mask.items():
            folder = work / "eval" / model.replace(" ", "_").replace("+", "and") / mname.split(" ")[0]
            metrics = evaluate(es, folder, html=False, progress=False, log=None)
            summary.setdefault(mname, {})[model] = summarise(metrics)
    images = Path(args.images) if args.images else work
    pictures = [str(montage(m, entries, images / f"real_data_{m.split(' ')[0]}.png", args.seeds[0])) for m in masks]
    res = {"held_out": args.held_out, "vocabulary": args.vocabulary, "trained_on_real": trained_on, "steps": args.steps, "seeds": args.seeds,
           "models": {k: str(v) for k, v in models.items()},
           "reports": {m: v["report"] for m, v in masks.items()}, "summary": summary,
           "real_vs_real": real_vs_real(args.held_out, trained_on, work), "montages": pictures}
    (work / "real_data.json").write_text(json.dumps(res, indent=2))
    write_table(work, res, work / "real_data.md")
    print((work / "real_data.md").read_text())


if __name__ == "__main__":
    main()
