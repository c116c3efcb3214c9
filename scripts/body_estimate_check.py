"""How well does a body outline estimated from a mask's organs match the real body?

A mask without a body label (TotalSegmentator's ``total`` task has none) gets an envelope: per slice,
the convex hull of its labelled pixels grown by a margin in millimetres
(:func:`tracect.data.body.envelope_from_organs`). This measures the envelope's Dice and volume ratio
against the real body (``tracect label``'s body of the CT), at the default margin and over a range:

- on the TotalSegmentator example in ../shared, from its real ``total`` mask. The default margin was
  chosen on this case, so its figure there is in-sample;
- on each real CT in ../shared/data/real-ct, which has no organ mask: the mask is stood in for by
  everything inside the subcutaneous layer (the body less the fat and skin that reach its surface, from
  the pseudo-labels), the wall's muscles included, which a ``total`` mask does not label.

    PYTHONPATH=src python scripts/body_estimate_check.py [--out body_check.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MARGINS_MM = tuple(range(0, 41, 2))
SKIN_MM = 2.0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else float("nan")


def curve(labelled: np.ndarray, body: np.ndarray, spacing) -> list[dict]:
    """Dice and volume ratio of the hull of ``labelled`` grown by each margin, against ``body``."""
    from tracect.data.body import hull_distance_mm

    dist = hull_distance_mm(labelled, spacing)  # (Z, Y, X) mm outside each slice's hull, 0 inside
    return [{"margin_mm": m, "dice": dice(dist <= m, body), "volume_ratio": float((dist <= m).sum() / body.sum())}
            for m in MARGINS_MM]


def inside_subcutaneous_layer(labels: np.ndarray, spacing) -> np.ndarray:
    """Pseudo-labels ``(Z, Y, X)`` -> the body less its subcutaneous layer: fat and skin (the outer
    ``SKIN_MM``) connected, within the slice, to the body's surface; holes filled."""
    from tracect.labels.pseudo import TISSUE

    fat_id = {n: i for i, n in TISSUE.labels.items()}["fat"]
    body = labels > 0
    r = max(1, int(round(SKIN_MM / spacing[1])))
    skin = body & ~ndimage.binary_erosion(body, structure=np.ones((1, 2 * r + 1, 2 * r + 1), bool))
    layer = skin | (labels == fat_id)
    plane = np.zeros((3, 3, 3), bool)
    plane[1] = True  # 8-connected within the slice
    ids, _ = ndimage.label(layer, structure=plane)
    outer = np.isin(ids, np.unique(ids[skin]))
    inner = body & ~outer
    return np.stack([ndimage.binary_fill_holes(s) for s in inner])


def best(curves: list[list[dict]]) -> int:
    """The margin with the highest mean Dice over ``curves``."""
    means = np.mean([[r["dice"] for r in c] for c in curves], axis=0)
    return MARGINS_MM[int(np.argmax(means))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from tracect.io import read_mask, read_volume
    from tracect.labels.pseudo import pseudo_labels

    real = {}
    for line in (SHARED / "real-ct" / "cases.csv").read_text().splitlines()[1:]:
        case, file = line.split(",")[:2]
        ct = read_volume(SHARED / "real-ct" / file).canonical()
        labels, _ = pseudo_labels(ct.array, ct.spacing)
        body = labels > 0
        real[case] = curve(inside_subcutaneous_layer(labels, ct.spacing), body, ct.spacing)
        print(case, "done", flush=True)
    from tracect.data.body import ENVELOPE_MARGIN_MM

    ts_ct = read_volume(SHARED / "totalseg-example" / "ct.nii.gz").canonical()
    ts_mask = read_mask(SHARED / "totalseg-example" / "seg.nii.gz").canonical()
    ts_body = pseudo_labels(ts_ct.array, ts_ct.spacing)[0] > 0
    curves = {"totalseg-example (total mask)": curve(ts_mask.array > 0, ts_body, ts_ct.spacing),
              **{f"{k} (inside subcutaneous)": v for k, v in real.items()}}
    at = MARGINS_MM.index(int(ENVELOPE_MARGIN_MM))
    rows = [{"case": k, "margin_mm": ENVELOPE_MARGIN_MM, "dice": c[at]["dice"], "volume_ratio": c[at]["volume_ratio"],
             "best_margin_mm": best([c]), "best_dice": max(r["dice"] for r in c)} for k, c in curves.items()]
    print(f"case                                      Dice at {ENVELOPE_MARGIN_MM:g} mm  volume ratio  best margin (Dice)")
    for r in rows:
        print(f"{r['case']:<42}{r['dice']:>6.3f}  {r['volume_ratio']:>16.3f}  {r['best_margin_mm']:>5} mm ({r['best_dice']:.3f})")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "curves": curves}, indent=2) + "\n")


if __name__ == "__main__":
    main()
