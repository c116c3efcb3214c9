"""How well does a body outline estimated from a mask's organs match the real body, and where do the
envelope's margins come from?

A mask without a body label (TotalSegmentator's ``total`` task has none) gets an envelope
(:func:`tracect.data.body.envelope_from_organs`): per slice, the convex hull of its labelled pixels
grown, per direction from the slice's centre, by the subcutaneous layer and, for a mask that leaves the
body wall out, by the wall. This script measures both profiles and the envelope's Dice and volume ratio
against the real body (``tracect label``'s body of the CT):

- the subcutaneous layer (``SUBCUTANEOUS_MM``) on each real CT in ../shared/data/real-ct, which has no
  organ mask: the distance from the hull of everything inside its subcutaneous layer (the body less the
  fat and skin that reach its surface, from the pseudo-labels) to the body's surface; the median over
  the six CTs. Each real CT is then scored with the profile of the other five (out of sample) and with
  the shipped one (in sample);
- the wall (``WALL_MM``) on the TotalSegmentator example: how much further its body reaches beyond the
  hull of its real ``total`` mask than beyond the hull of everything inside its subcutaneous layer. The
  one real ``total`` mask at hand, so its Dice there is in sample for the wall (its subcutaneous layer
  comes from the six other CTs).

    PYTHONPATH=src python scripts/body_estimate_check.py [--out body_check.json] \\
        [--picture docs/images/body_estimate.png]
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


PICTURED = ("crlm_1006", "lidc_0314")
TS = "totalseg-example"


def picture_slices(hu: np.ndarray, body: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Three axial slices at 20, 50 and 80% of the body's extent in z -> (z indices, HU ``(3, Y, X)``)."""
    zs = np.flatnonzero(body.any(axis=(1, 2)))
    z = zs[np.round(np.array([0.2, 0.5, 0.8]) * (len(zs) - 1)).astype(int)]
    return z, hu[z].copy()


def picture_row(sl, labelled, body, estimate, spacing) -> list[tuple]:
    """Per pictured slice: HU, the mask's labelled region, the real body, the estimate, the old 20 mm hull."""
    from tracect.data.body import slice_hull_distance_mm

    return [(hu, labelled[z], body[z], estimate[z], slice_hull_distance_mm(labelled[z], spacing[1:]) <= 20)
            for z, hu in zip(*sl)]


def plot(shown: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(shown), 3, figsize=(11, 3.6 * len(shown)))
    for r, (case, row) in enumerate(shown.items()):
        for k, (hu, labelled, body, estimate, old) in enumerate(row):
            ax = axes[r, k]
            ax.imshow(hu, cmap="gray", vmin=-400, vmax=400)
            for m, colour, width in ((labelled, "cyan", 0.6), (body, "lime", 1.2), (old, "yellow", 0.8),
                                     (estimate, "red", 1.0)):
                if m.any():
                    ax.contour(m, [0.5], colors=colour, linewidths=width)
            ax.set_title(f"{case}, {('upper', 'middle', 'lower')[k]}", fontsize=8)
            ax.axis("off")
    fig.suptitle("real body (green), estimated envelope (red: held-out subcutaneous layer; + measured wall for "
                 "the total mask), before: hull + 20 mm (yellow), the mask (cyan)", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def scores(estimate: np.ndarray, body: np.ndarray) -> dict:
    return {"dice": dice(estimate, body), "volume_ratio": float(estimate.sum() / body.sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None)
    ap.add_argument("--picture", default=None, help="PNG: the envelopes on axial slices of three cases")
    args = ap.parse_args()

    from tracect.data.body import (PROFILE_DEG, SUBCUTANEOUS_MM, WALL_MM, envelope_with_margin,
                                   surface_margin_profile)
    from tracect.io import read_mask, read_volume
    from tracect.labels.pseudo import pseudo_labels

    cases = {}  # case -> (inside the subcutaneous layer, body, spacing)
    slices = {}  # case -> (z indices, HU (3, Y, X)) for the picture
    for line in (SHARED / "real-ct" / "cases.csv").read_text().splitlines()[1:]:
        case, file = line.split(",")[:2]
        ct = read_volume(SHARED / "real-ct" / file).canonical()
        labels, _ = pseudo_labels(ct.array, ct.spacing)
        cases[case] = (inside_subcutaneous_layer(labels, ct.spacing), labels > 0, ct.spacing)
        slices[case] = picture_slices(ct.array, labels > 0)
        print(case, "labelled", flush=True)
    profiles = {k: surface_margin_profile(*v) for k, v in cases.items()}
    subcutaneous = np.median(list(profiles.values()), axis=0)

    ts_ct = read_volume(SHARED / "totalseg-example" / "ct.nii.gz").canonical()
    ts_total = read_mask(SHARED / "totalseg-example" / "seg.nii.gz").canonical().array > 0
    ts_labels = pseudo_labels(ts_ct.array, ts_ct.spacing)[0]
    ts_body, ts_inside = ts_labels > 0, inside_subcutaneous_layer(ts_labels, ts_ct.spacing)
    slices[TS] = picture_slices(ts_ct.array, ts_body)
    # The wall: how much further the body reaches beyond the hull of the `total` labels than beyond the
    # hull of everything inside the subcutaneous layer, both measured at the body's surface.
    ts_total_margin = surface_margin_profile(ts_total, ts_body, ts_ct.spacing)
    ts_subcutaneous = surface_margin_profile(ts_inside, ts_body, ts_ct.spacing)
    wall = np.clip(ts_total_margin - ts_subcutaneous, 0.0, None)

    rows, shown = [], {}
    for case, (inside, body, spacing) in cases.items():
        others = np.median([p for k, p in profiles.items() if k != case], axis=0)
        c = curve(inside, body, spacing)
        held_out = envelope_with_margin(inside, spacing, others)
        if case in PICTURED:
            shown[case] = picture_row(slices[case], inside, body, held_out, spacing)
        rows.append({"case": f"{case} (inside subcutaneous)",
                     "held_out": scores(held_out, body),
                     "shipped": scores(envelope_with_margin(inside, spacing, np.asarray(SUBCUTANEOUS_MM)), body),
                     "constant_20mm": c[MARGINS_MM.index(20)],
                     "best_constant": max(c, key=lambda r: r["dice"])})
        print(case, "scored", flush=True)
    c = curve(ts_total, ts_body, ts_ct.spacing)
    held_out = envelope_with_margin(ts_total, ts_ct.spacing, subcutaneous + wall)
    shown[TS] = picture_row(slices[TS], ts_total, ts_body, held_out, ts_ct.spacing)
    rows.append({"case": "totalseg-example (total mask)",
                 "held_out": scores(held_out, ts_body),
                 "shipped": scores(envelope_with_margin(ts_total, ts_ct.spacing,
                                                        np.add(SUBCUTANEOUS_MM, WALL_MM)), ts_body),
                 "constant_20mm": c[MARGINS_MM.index(20)], "best_constant": max(c, key=lambda r: r["dice"]),
                 "own_margins": scores(envelope_with_margin(ts_total, ts_ct.spacing, ts_total_margin), ts_body)})

    def fmt(p):
        return " ".join(f"{v:5.1f}" for v in p)

    print(f"\ndirection (deg from anterior)  {fmt(PROFILE_DEG)}")
    for k, p in profiles.items():
        print(f"subcutaneous, {k:<17}{fmt(p)}")
    print(f"subcutaneous, median          {fmt(subcutaneous)}   shipped: {fmt(SUBCUTANEOUS_MM)}")
    print(f"subcutaneous, totalseg-ex.    {fmt(ts_subcutaneous)}   (not in the median)")
    print(f"total mask, totalseg-example  {fmt(ts_total_margin)}")
    print(f"wall, totalseg-example        {fmt(wall)}   shipped: {fmt(WALL_MM)}")
    print("\ncase                                   Dice, held-out profile (vol)   shipped (vol)   "
          "constant 20 mm (vol)   best constant")
    for r in rows:
        h, s_, c20, b = r["held_out"], r["shipped"], r["constant_20mm"], r["best_constant"]
        print(f"{r['case']:<40}{h['dice']:.3f} ({h['volume_ratio']:.3f})    {s_['dice']:.3f} ({s_['volume_ratio']:.3f})"
              f"    {c20['dice']:.3f} ({c20['volume_ratio']:.3f})    {b['margin_mm']} mm ({b['dice']:.3f})")
    own = rows[-1]["own_margins"]
    print(f"totalseg-example grown by its own measured margins (in sample): {own['dice']:.3f} ({own['volume_ratio']:.3f})")
    if args.picture:
        plot(shown, Path(args.picture))
    if args.out:
        Path(args.out).write_text(json.dumps(
            {"profile_deg": PROFILE_DEG, "subcutaneous_mm": {k: p.tolist() for k, p in profiles.items()},
             "subcutaneous_median_mm": subcutaneous.tolist(), "total_mask_mm": ts_total_margin.tolist(), "wall_mm": wall.tolist(),
             "rows": rows},
            indent=2) + "\n")


if __name__ == "__main__":
    main()
