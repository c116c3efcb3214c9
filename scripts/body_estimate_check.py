"""How well does a body outline estimated from a mask's organs match the real body, and where do the
envelope's margins come from?

A mask without a body label (TotalSegmentator's ``total`` task has none) gets an envelope
(:func:`tracect.data.body.envelope_from_organs`): per slice, the convex hull of its labelled pixels
grown, per direction from the slice's centre, by a measured margin. This script measures the margins
and the envelope's Dice and volume ratio against the real body (``tracect label``'s body of the CT):

- the subcutaneous layer (``SUBCUTANEOUS_MM``, for masks that reach the body wall) on each real CT in
  ../shared/data/real-ct, which has no organ mask: the distance from the hull of everything inside its
  subcutaneous layer (the body less the fat and skin that reach its surface, from the pseudo-labels)
  to the body's surface; the median over the six CTs. Each real CT is then scored with the profile of
  the other five (out of sample) and with the shipped one (in sample);
- the ``total`` mask's margin (``TOTAL_MASK_MM``) on the TotalSegmentator example, the one real ``total``
  mask at hand: from the hull of its labels to its body's surface. Its Dice there is in sample. Split
  into the example's own subcutaneous layer and the wall inside it, the wall plus the six CTs' layer
  shows what the patient's own fat is worth;
- the phantom's masks (no body label either), against the phantom CTs' bodies.

    PYTHONPATH=src python scripts/body_estimate_check.py [--out body_check.json] \
        [--picture docs/images/body_estimate.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from tracect.evaluate.metrics import dice

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MARGINS_MM = tuple(range(0, 41, 2))
SKIN_MM = 2.0


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
PHANTOM_CASES = 6
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
    fig.suptitle("real body (green), estimated envelope (red: the held-out subcutaneous layer; the total mask's "
                 "margin, in sample), before: hull + 20 mm (yellow), the mask (cyan)", fontsize=8)
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

    from tracect.data.body import (PROFILE_DEG, SUBCUTANEOUS_MM, TOTAL_MASK_MM, envelope_with_margin,
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
    # The `total` mask's margin, and the wall inside it: how much further the body reaches beyond the hull
    # of the `total` labels than beyond the hull of everything inside the subcutaneous layer.
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
    shipped = envelope_with_margin(ts_total, ts_ct.spacing, np.asarray(TOTAL_MASK_MM))
    shown[TS] = picture_row(slices[TS], ts_total, ts_body, shipped, ts_ct.spacing)
    rows.append({"case": "totalseg-example (total mask)",
                 "held_out": None,  # the one real `total` mask: no other to measure its margin on
                 "shipped": scores(shipped, ts_body),
                 "constant_20mm": c[MARGINS_MM.index(20)], "best_constant": max(c, key=lambda r: r["dice"]),
                 "wall_and_six_ct_layer": scores(envelope_with_margin(ts_total, ts_ct.spacing, subcutaneous + wall),
                                                 ts_body)})

    def fmt(p):
        return " ".join(f"{v:5.1f}" for v in p)

    print(f"\ndirection (deg from anterior)  {fmt(PROFILE_DEG)}")
    for k, p in profiles.items():
        print(f"subcutaneous, {k:<17}{fmt(p)}")
    print(f"subcutaneous, median          {fmt(subcutaneous)}   shipped: {fmt(SUBCUTANEOUS_MM)}")
    print(f"subcutaneous, totalseg-ex.    {fmt(ts_subcutaneous)}   (not in the median)")
    print(f"total mask, totalseg-example  {fmt(ts_total_margin)}   shipped: {fmt(TOTAL_MASK_MM)}")
    print(f"wall, totalseg-example        {fmt(wall)}")
    print("\ncase                                   Dice, held-out profile (vol)   shipped (vol)   "
          "constant 20 mm (vol)   best constant")
    for r in rows:
        h, s_, c20, b = r["held_out"], r["shipped"], r["constant_20mm"], r["best_constant"]
        held = f"{h['dice']:.3f} ({h['volume_ratio']:.3f})" if h else "     -       "
        print(f"{r['case']:<40}{held}    {s_['dice']:.3f} ({s_['volume_ratio']:.3f})"
              f"    {c20['dice']:.3f} ({c20['volume_ratio']:.3f})    {b['margin_mm']} mm ({b['dice']:.3f})")
    # The phantom's masks have no body label either (the demo and the held-out phantom benchmarks go
    # through the envelope); its body wall is thicker than a real one.
    from tracect.data.body import body_from_ct, envelope_from_organs
    from tracect.phantom.generator import make_case

    phantom = []
    for seed in range(PHANTOM_CASES):
        case = make_case(f"phantom_{seed}", seed)
        m, image = case.mask.canonical(), case.image.canonical().array
        labelled, body = np.asarray(m.array) > 0, body_from_ct(image)
        phantom.append({"seed": seed, "margin_mm": surface_margin_profile(labelled, body, m.spacing).tolist(),
                        "estimated": scores(envelope_from_organs(labelled, m.spacing), body),
                        "constant_20mm": scores(envelope_with_margin(labelled, m.spacing, [20.0] * len(PROFILE_DEG)),
                                                body)})
    margins = np.array([r["margin_mm"] for r in phantom])
    print(f"phantom, {PHANTOM_CASES} cases: margin beyond the mask's hull {margins.min():.0f}-{margins.max():.0f} mm; "
          f"Dice, estimated envelope {min(r['estimated']['dice'] for r in phantom):.3f}-"
          f"{max(r['estimated']['dice'] for r in phantom):.3f}, hull + 20 mm "
          f"{min(r['constant_20mm']['dice'] for r in phantom):.3f}-{max(r['constant_20mm']['dice'] for r in phantom):.3f}")
    mixed = rows[-1]["wall_and_six_ct_layer"]
    print(f"totalseg-example grown by its wall and the six CTs' subcutaneous layer: {mixed['dice']:.3f} "
          f"({mixed['volume_ratio']:.3f})")
    if args.picture:
        plot(shown, Path(args.picture))
    if args.out:
        Path(args.out).write_text(json.dumps(
            {"profile_deg": PROFILE_DEG, "subcutaneous_mm": {k: p.tolist() for k, p in profiles.items()},
             "subcutaneous_median_mm": subcutaneous.tolist(), "total_mask_mm": ts_total_margin.tolist(), "wall_mm": wall.tolist(),
             "rows": rows, "phantom": phantom},
            indent=2) + "\n")


if __name__ == "__main__":
    main()
