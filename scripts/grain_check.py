"""Grain against real CT: texture at the mask's full resolution, with and without ``--grain``.

Leave one out over the six real CTs in ../shared/data/real-ct: for each, the grain spectrum is measured
on the other five (the shipped one is the fold of ``crlm_1006``), and the shipped demo weights (which
saw no real CT) generate from the case's pseudo-labels (``tracect label``) with a report from its
``cases.csv`` row. The sampled volume is finished twice, without grain and with it (the same sampled
chain: the difference is the grain alone). Scored on the case's own grid (512², 0.57-0.84 mm) against
its real CT:

- soft-tissue NPS: patches of uniform soft tissue in the real CT (:func:`soft_tissue_corners`), cut at
  the same places from the generated CT; power in the fine-texture band 0.2-0.55 cycles/mm (features of
  0.9-2.5 mm, below every scan's Nyquist frequency), generated over real; and the top third of the
  frequencies up to the scan's Nyquist;
- in-plane neighbour difference: mean |HU(x+1) - HU(x)| inside the real CT's body;
- median HU in each pseudo-label class, generated against real: the grain should move none;
- the yardstick: each other real CT's band power (on its own patches) over this one's.

The TotalSegmentator example in ../shared is stored at 3 mm (101 x 122 pixels): its Nyquist frequency
(0.17 cycles/mm) is below the band, so it is not used here.

    PYTHONPATH=src:scripts python scripts/grain_check.py --work grain_check [--seed 0] [--images docs/images] \
        [--cases crlm_1006]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from real_data_table import REAL, label, real_ct_file
from tracect.evaluate.realism import FINE_BAND

BAND = FINE_BAND  # 0.2-0.55 cycles/mm: every scan here resolves it


def texture(hu: np.ndarray, spacing, corners, body: np.ndarray) -> dict:
    """The texture figures of ``hu`` (Z, Y, X) at the patches ``corners`` and inside ``body``."""
    from tracect.evaluate.realism import band_power
    from tracect.generate.grain import cut_patches, patch_spectrum

    f, p = patch_spectrum(cut_patches(hu, corners), spacing)
    diff = np.abs(np.diff(hu.astype(np.float32), axis=2))[body[:, :, 1:] & body[:, :, :-1]]
    nyq = 0.5 / max(spacing)
    return {"freq": f.tolist(), "nps": p.tolist(), "band_hu2": band_power(f, p, *BAND),
            "top_third_hu2": band_power(f, p, 2 * nyq / 3, min(nyq, f[-1])),
            "neighbour_abs_diff_hu": float(diff.mean())}


def organ_medians(hu: np.ndarray, labels: np.ndarray, names: dict) -> dict:
    return {name: float(np.median(hu[labels == i])) for i, name in names.items()
            if i and (labels == i).sum() >= 200}


def load(path) -> tuple[np.ndarray, tuple]:
    from tracect.io.readers import read_volume

    v = read_volume(path).canonical()
    return np.asarray(v.array), v.spacing[1:]


def report_for(row: dict) -> str:
    """The generation report of a real case: its region and contrast from ``cases.csv``."""
    contrast = row["contrast"].lower()
    phase = ("Contrast-enhanced CT" + (", portal venous phase" if "portal" in contrast else "")
             if "contrast" in contrast and "unknown" not in contrast else "CT")
    return f"EXAMINATION: {phase} of the {row['region']}.\nFINDINGS: {row['known_finding'].capitalize()}."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="grain_check")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", default=None)
    ap.add_argument("--cases", nargs="*", default=None, help="only these cases (default: all six)")
    args = ap.parse_args()

    from tracect.cli.demo import shipped_weights
    from tracect.data.body import body_from_ct
    from tracect.generate.grain import Grain, combine, scan_nps, soft_tissue_corners
    from tracect.generate.pipeline import Generator
    from tracect.generate.sampling import Sampling
    from tracect.io.readers import read_mask
    from tracect.labels.vocabulary import get_vocabulary

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader((REAL / "cases.csv").open()))
    scans = {r["case"]: load(real_ct_file(r["case"])) for r in rows}
    per_scan = {c: scan_nps(hu, sp) for c, (hu, sp) in scans.items()}
    # each real CT's own patches, body and texture, once: its "real" row and the others' yardstick
    corners = {c: soft_tissue_corners(hu) for c, (hu, _) in scans.items()}
    bodies = {c: body_from_ct(hu.astype(np.float32)) for c, (hu, _) in scans.items()}
    own = {c: texture(hu, sp, corners[c], bodies[c]) for c, (hu, sp) in scans.items()}
    gen = Generator.from_checkpoint(shipped_weights(), device="cpu")
    vocab = get_vocabulary("tissue")
    names = dict(vocab.labels)
    results: dict = {"seed": args.seed, "band_cycles_per_mm": BAND, "cases": {}}
    for row in rows:
        case = row["case"]
        if args.cases and case not in args.cases:
            continue
        real, spacing = scans[case]
        grain = Grain(combine({c: r for c, r in per_scan.items() if c != case}))
        mask_path = label(real_ct_file(case), work / "labels" / f"{case}.nii.gz")
        mask = read_mask(mask_path, vocab)
        labels = mask.canonical().array
        t = time.perf_counter()
        report = report_for(row)
        plan = gen.plan(mask, report, vocabulary="tissue", seed=args.seed, sampling=Sampling())
        (plan,) = gen.sample([plan], Sampling())
        plain = gen.finish(plan).ct.canonical().array
        with_grain = gen.finish(plan, grain=grain)
        grainy = with_grain.ct.canonical().array
        print(f"{case}: {plain.shape} in {time.perf_counter() - t:.0f} s", flush=True)
        entry = {"report": report, "spacing": list(spacing), "patches": len(corners[case]),
                 "grain": with_grain.info["grain"], "real": own[case],
                 "real_organs": organ_medians(real, labels, names)}
        for kind, v in (("without", plain), ("with", grainy)):
            entry[kind] = {**texture(v, spacing, corners[case], bodies[case]), "organs": organ_medians(v, labels, names)}
        entry["other_real_band_hu2"] = {c: t["band_hu2"] for c, t in own.items() if c != case}
        results["cases"][case] = entry
        if case == "crlm_1006":
            images = Path(args.images) if args.images else work
            picture(case, real, plain, grainy, labels, images / f"grain_{case}.png")
            plot_nps(entry, case, images / "grain_nps_crlm_1006.png")
    (work / "grain_check.json").write_text(json.dumps(results, indent=1))
    summary(results)


def summary(results: dict) -> None:
    from tracect.evaluate.metrics import t_interval

    cases = results["cases"]
    print(f"\n{len(cases)} real CTs, seed {results['seed']}; band {results['band_cycles_per_mm']} cycles/mm")
    print("case | patches | band power / real: without, with, other real CTs (median, range) | "
          "top third / real: without, with | neighbour |dHU|: real, without, with | class median error: without, with")
    cols = {k: [] for k in ("band_without", "band_with", "top_without", "top_with", "nb_real", "nb_without",
                            "nb_with", "err_without", "err_with")}
    for case, e in cases.items():
        r = e["real"]
        other = [v / r["band_hu2"] for v in e["other_real_band_hu2"].values()]
        err = {k: float(np.mean([abs(e[k]["organs"][o] - v) for o, v in e["real_organs"].items()
                                 if o in e[k]["organs"]])) for k in ("without", "with")}
        vals = {"band_without": e["without"]["band_hu2"] / r["band_hu2"], "band_with": e["with"]["band_hu2"] / r["band_hu2"],
                "top_without": e["without"]["top_third_hu2"] / r["top_third_hu2"],
                "top_with": e["with"]["top_third_hu2"] / r["top_third_hu2"],
                "nb_real": r["neighbour_abs_diff_hu"], "nb_without": e["without"]["neighbour_abs_diff_hu"],
                "nb_with": e["with"]["neighbour_abs_diff_hu"], "err_without": err["without"], "err_with": err["with"]}
        for k, v in vals.items():
            cols[k].append(v)
        print(f"{case} | {e['patches']} | {vals['band_without']:.3f}, {vals['band_with']:.2f}, "
              f"{np.median(other):.2f} ({min(other):.2f}-{max(other):.2f}) | {vals['top_without']:.3f}, "
              f"{vals['top_with']:.2f} | {vals['nb_real']:.1f}, {vals['nb_without']:.1f}, {vals['nb_with']:.1f} | "
              f"{vals['err_without']:.1f}, {vals['err_with']:.1f}")
    n = len(cases)
    for a, b, what in (("band_with", None, "band power / real, with grain"),
                       ("nb_with", "nb_real", "neighbour |dHU|, with grain - real"),
                       ("nb_without", "nb_real", "neighbour |dHU|, without grain - real"),
                       ("err_with", "err_without", "class median error, with - without")):
        d = np.asarray(cols[a]) - (np.asarray(cols[b]) if b else 0)
        lo, hi = t_interval(d)
        print(f"{what}: mean {d.mean():+.2f} [{lo:+.2f}, {hi:+.2f}] (95% t, n = {n} cases), median {np.median(d):+.2f}")


def fmt(xs, nd) -> str:
    return f"{np.median(xs):.{nd}f} ({min(xs):.{nd}f}-{max(xs):.{nd}f})"


def picture(mname, real, plain, grainy, labels, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = labels.shape[0] // 2  # the middle slice (the upper abdomen in a chest-abdomen-pelvis scan)
    ys, xs = np.nonzero(labels[z] > 0)
    cy, cx = int(ys.mean()), int(xs.mean())
    h = 96  # a 192 px crop at full resolution: what a reader zooms to
    box = (slice(max(0, cy - h), cy + h), slice(max(0, cx - h), cx + h))
    fig, axes = plt.subplots(2, 3, figsize=(10.5, 7.4))
    for col, (title, v) in enumerate((("real CT", real), ("generated", plain), ("generated + grain", grainy))):
        axes[0, col].imshow(v[z], cmap="gray", vmin=-160, vmax=240)
        axes[0, col].set_title(f"{title} (slice {z})", fontsize=9)
        axes[1, col].imshow(v[z][box], cmap="gray", vmin=-160, vmax=240, interpolation="nearest")
        axes[1, col].set_title("centre crop, full resolution", fontsize=8)
    for a in axes.ravel():
        a.axis("off")
    fig.suptitle(f"{mname}: soft-tissue window (-160..240 HU)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def plot_nps(entry: dict, case: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(entry["real"]["freq"], entry["real"]["nps"], "k", lw=2, label="real CT")
    ax.plot(entry["without"]["freq"], entry["without"]["nps"], label="generated")
    ax.plot(entry["with"]["freq"], entry["with"]["nps"], label="generated + grain")
    ax.axvspan(*BAND, color="0.9", zorder=0, label="band of the figure")
    ax.set_yscale("log")
    ax.set_xlabel("cycles / mm")
    ax.set_ylabel("NPS in the real CT's uniform soft tissue (HU² mm²)")
    ax.set_title(f"{case} (held out of the grain spectrum; demo weights)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
