"""``tracect convert INPUT OUTPUT``: any supported input to NIfTI (or NRRD), HU and geometry intact."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("convert", help="convert a DICOM series, NRRD or organ folder to NIfTI",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("input")
    p.add_argument("output", help="output .nii.gz, .nii or .nrrd")
    p.add_argument("--kind", choices=("image", "mask"), default="image",
                   help="mask: merge a per-organ folder / keep integer labels")
    p.add_argument("--vocabulary", default="total", help="vocabulary of a per-organ mask folder")
    p.add_argument("--strict", action="store_true",
                   help="refuse organ files whose names are not labels of --vocabulary (default: merge them "
                        "into a coarser label or ignore them, with a note)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from tracect.io.readers import read_mask, read_volume, write_volume
    from tracect.labels.vocabulary import get_vocabulary

    if args.kind == "mask":
        vol = read_mask(args.input, get_vocabulary(args.vocabulary), strict=args.strict)
    else:
        vol = read_volume(args.input)
    write_volume(vol, args.output, overwrite=args.overwrite)
    for note in vol.meta.get("notes", []):
        print(f"note: {note}")
    print(f"wrote {args.output}: {vol!r}")
    return 0
