"""How good are ``tracect label``'s pseudo-labels? Dice per label against the phantom's own tissue map
(phantom cases of another seed, at three matrix sizes: the mean and minimum over cases, and the Dice of all
cases' voxels pooled), against the real example's TotalSegmentator
mask, and the time and an overlay picture for each real CT in ../shared/data/real-ct.

    PYTHONPATH=src python scripts/label_check.py --out label_check [--images docs/images]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from tracect.labels.pseudo import TISSUE, pseudo_labels

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
ID = {name: i for i, name in TISSUE.labels.items()}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else float("nan")


def phantom(sizes=(64, 128, 256), n: int = 8, seed: int = 5000) -> list[dict]:
    from tracect.phantom import PhantomConfig
    from tracect.phantom.generator import simulate
    from tracect.phantom.geometry import Tissue as T

    rows = []
    for size in sizes:
        for i in range(n):
            case, anat = simulate(f"label_{i}", seed + i, PhantomConfig(size=size))
            labels, _ = pseudo_labels(case.image.array, case.image.spacing)
            t = anat.tissue
            pairs = {"body": (labels > 0, t != T.AIR), "lung": (labels == ID["lung"], t == T.LUNG),
                     "bone": (labels == ID["bone"], np.isin(t, [T.CANCELLOUS, T.CORTICAL])),
                     "gas": (labels == ID["gas"], np.isin(t, [T.GAS, T.AIRWAY]))}
            rows.append({"size": size, "case": i, "pixel_mm": round(case.image.spacing[1], 2),
                         "phase": case.findings["contrast_phase"], "lung_ml": float((t == T.LUNG).sum() * np.prod(case.image.spacing) / 1000),
                         **{k: dice(a, b) for k, (a, b) in pairs.items()},
                         # for the Dice over all cases' voxels together: a case with 3 lung voxels weighs 3
                         "voxels": {k: [int((a & b).sum()), int(a.sum()), int(b.sum())] for k, (a, b) in pairs.items()}})
            print(rows[-1], flush=True)
    return rows


def totalseg_example() -> dict:
    from tracect.io import read_mask, read_volume
    from tracect.labels.vocabulary import coarse_group_of, total

    ct = read_volume(SHARED / "totalseg-example" / "ct.nii.gz").canonical()
    mask = read_mask(SHARED / "totalseg-example" / "seg.nii.gz").canonical().array
    labels, _ = pseudo_labels(ct.array, ct.spacing)
    groups = {i: coarse_group_of(n) for i, n in total().labels.items()}
    group = lambda g: np.isin(mask, [i for i, x in groups.items() if x == g])  # noqa: E731
    out = {"shape": list(ct.shape), "spacing": [round(s, 2) for s in ct.spacing],
           "lung": dice(labels == ID["lung"], group("lung")), "bone": dice(labels == ID["bone"], group("bone")),
           "organs_inside_body": float((labels[mask > 0] > 0).mean()), "as": {}}
    for g in ("liver", "spleen", "kidney", "aorta", "vein", "bowel", "muscle", "bone", "lung"):
        sel = group(g)
        if sel.any():
            share = np.bincount(labels[sel], minlength=len(TISSUE.labels) + 1) / sel.sum()
            out["as"][g] = {TISSUE.labels.get(i, "outside"): round(float(v), 3) for i, v in enumerate(share) if v > 0}
    return out


def real_cases(images: Path | None) -> list[dict]:
    import csv

    from tracect.io import read_volume
    from tracect.labels.overlay import save_overlay

    rows = []
    with open(SHARED / "real-ct" / "cases.csv") as f:
        for case in csv.DictReader(f):
            ct = read_volume(SHARED / "real-ct" / case["file"]).canonical()
            t0 = time.perf_counter()
            labels, record = pseudo_labels(ct.array, ct.spacing)
            seconds = time.perf_counter() - t0
            rows.append({"case": case["case"], "shape": list(ct.shape), "seconds": round(seconds, 1), "ml": record["ml"]})
            print(rows[-1], flush=True)
            if images is not None:
                save_overlay(ct, ct.with_array(labels), TISSUE, images / f"label_{case['case']}.png",
                             title=f"tracect label: {case['case']} ({case['region']}, {ct.spacing[0]:g} mm slices)")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--images", default=None, help="write an overlay per real case here")
    ap.add_argument("--phantom-cases", type=int, default=8)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    result = {"threads": torch.get_num_threads(), "phantom": phantom(n=args.phantom_cases),
              "totalseg_example": totalseg_example(),
              "real": real_cases(Path(args.images) if args.images else None)}
    summary = {}
    for size in sorted({r["size"] for r in result["phantom"]}):
        rows = [r for r in result["phantom"] if r["size"] == size]
        summary[size] = {k: {"mean": float(np.nanmean([r[k] for r in rows])), "min": float(np.nanmin([r[k] for r in rows])),
                             "pooled": float(2 * sum(r["voxels"][k][0] for r in rows)
                                             / sum(r["voxels"][k][1] + r["voxels"][k][2] for r in rows)),
                             "cases_with_it": sum(r["voxels"][k][2] > 0 for r in rows)}
                         for k in ("body", "lung", "bone", "gas")}
    result["phantom_summary"] = summary
    (out / "label_check.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({"phantom": summary, "totalseg_example": result["totalseg_example"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
