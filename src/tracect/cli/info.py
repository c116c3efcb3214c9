"""``tracect info PATH``: shape, spacing, orientation, dtype, value range (and labels of a mask)."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("info", help="describe a volume or mask (NIfTI, NRRD, DICOM folder, organ folder)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("path")
    p.add_argument("--kind", choices=("auto", "image", "mask"), default="auto",
                   help="auto: a mask if integer-valued with at most 300 distinct non-negative values")
    p.add_argument("--vocabulary", default="total", help="label names for a mask: built-in name or JSON file")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def describe(path: str, kind: str = "auto", vocabulary: str = "total") -> dict:
    """The facts ``tracect info`` prints, as a dict (JSON-serialisable)."""
    from pathlib import Path

    import numpy as np

    from tracect.io.readers import _is_nifti_folder, read_mask, read_volume
    from tracect.labels.vocabulary import get_vocabulary

    vocab = get_vocabulary(vocabulary)
    p = Path(path)
    if kind == "auto" and p.is_dir() and _is_nifti_folder(p):
        kind = "mask"
    vol = read_mask(p, vocab) if kind == "mask" and p.is_dir() else read_volume(p)
    a = vol.array
    if kind == "auto":
        integral = np.issubdtype(a.dtype, np.integer) or np.array_equal(a, np.rint(a))
        kind = "mask" if integral and a.min() >= 0 and len(np.unique(a)) <= 300 else "image"
    out = {"path": str(p), "kind": kind, "format": vol.meta.get("format"), "shape": list(vol.shape),
           "spacing": [round(s, 6) for s in vol.spacing], "orientation": "".join(vol.orientation),
           "dtype": str(a.dtype), "min": float(a.min()), "max": float(a.max()),
           "affine": np.round(vol.affine, 6).tolist()}
    if kind == "mask":
        ids, counts = np.unique(a, return_counts=True)
        out["vocabulary"] = vocab.name
        out["labels"] = {str(int(i)): {"name": vocab.labels.get(int(i), "UNKNOWN"), "voxels": int(c)}
                         for i, c in zip(ids, counts) if i != 0}
        out["unknown_labels"] = vocab.unknown_ids(a)
        if "organ_files" in vol.meta:
            out["organ_files"] = vol.meta["organ_files"]
            out["notes"] = vol.meta["notes"]
    if "series_uid" in vol.meta:
        out["series_uid"] = vol.meta["series_uid"]
        out["transfer_syntax"] = vol.meta["transfer_syntax"]
    return out


def run(args) -> int:
    import json

    d = describe(args.path, args.kind, args.vocabulary)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"{d['path']}  ({d['kind']}, {d['format']})")
    print(f"  shape {tuple(d['shape'])}  spacing {tuple(d['spacing'])} mm  orientation {d['orientation']}")
    print(f"  dtype {d['dtype']}  range {d['min']:g} .. {d['max']:g}")
    for i, lab in d.get("labels", {}).items():
        print(f"  label {i:>4} {lab['name']:<32} {lab['voxels']} voxels")
    if d.get("unknown_labels"):
        print(f"  labels not in '{d['vocabulary']}': {d['unknown_labels']}")
    for note in d.get("notes", []):
        print(f"  note: {note}")
    return 0
