"""``tracect label CT --out MASK``: coarse anatomy (body, lung, gas, bone, fat, soft tissue, enhancing
vessels) from Hounsfield units alone, for CT that has no mask."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("label", help="pseudo-labels from HU alone (vocabulary 'tissue') for a CT without a mask",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("ct", help="CT in HU: NIfTI, NRRD or a DICOM series folder")
    p.add_argument("--out", required=True, help="output mask (.nii.gz); its record is written beside it as .json")
    p.add_argument("--overlay", default=None, help="also draw the labels over the CT into this PNG")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import time
    from pathlib import Path

    from tracect.io.readers import read_volume, write_volume
    from tracect.labels.pseudo import TISSUE, PseudoLabelConfig, pseudo_labels
    from tracect.utils.atomic import write_json

    config = PseudoLabelConfig()
    ct = read_volume(args.ct)
    canonical = ct.canonical()
    t0 = time.perf_counter()
    ids, record = pseudo_labels(canonical.array, canonical.spacing, config)
    seconds = time.perf_counter() - t0
    # back to the CT's own axis order: the mask lies on the CT's grid exactly
    mask = canonical.with_array(ids).reorient(ct.orientation)
    out = Path(args.out)
    write_volume(mask, out, overwrite=args.overwrite)
    stem = out.name.removesuffix(".gz").removesuffix(".nii").removesuffix(".nrrd")
    write_json(out.with_name(stem + ".json"), {"ct": str(args.ct), "vocabulary": TISSUE.to_json(),
                                             "config": config.to_json(), "seconds": round(seconds, 2), **record})
    if args.overlay:
        from tracect.labels.overlay import save_overlay

        save_overlay(canonical, canonical.with_array(ids), TISSUE, args.overlay, title=Path(args.ct).name)
    ml = ", ".join(f"{k} {v:.0f} mL" for k, v in record["ml"].items())
    print(f"wrote {out} (vocabulary 'tissue'; {seconds:.1f} s): {ml}")
    return 0
