"""``tracect prepare DATASET [DATASET ...] --out CACHE``: validate, resample, window and cache datasets."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("prepare", help="turn a dataset folder into a training cache",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("dataset", nargs="+",
                   help="dataset folder(s); several go into one cache (e.g. a phantom and unlabelled real CT "
                        "with --pseudo-labels), each with its own vocabulary and split; case ids must differ")
    p.add_argument("--out", required=True, help="cache folder (resumable: rerun to finish)")
    p.add_argument("--size", type=int, default=64, help="in-plane output matrix")
    p.add_argument("--pixel-spacing", type=float, default=None,
                   help="mm; default: fit the body into the frame (spacing varies per case)")
    p.add_argument("--slice-thickness", type=float, default=None, help="mm; default: keep the source's")
    p.add_argument("--hu-window", type=float, nargs=2, default=(-1000.0, 1000.0), metavar=("LOW", "HIGH"))
    p.add_argument("--vocabulary", default="tracect", help="model vocabulary the masks are remapped to")
    p.add_argument("--flow", choices=("dis", "farneback"), default="dis")
    p.add_argument("--min-slices", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--strict", action="store_true",
                   help="refuse organ-folder files whose names are not labels of the dataset's vocabulary "
                        "(default: merge them into a coarser label or ignore them, with a note), and exit "
                        "non-zero if any case is skipped")
    p.add_argument("--pseudo-labels", action="store_true",
                   help="label cases that have no mask from their HU (tracect label: body, lung, gas, bone, "
                        "fat, soft tissue, enhancing vessels) instead of skipping them")
    p.add_argument("--no-space-check", action="store_true",
                   help="start even if the cache's estimated size exceeds the free disk space")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--allow-absolute-paths", action="store_true",
                   help="let dataset.json name files outside the dataset folder by absolute path")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    from tracect.cli.errors import CommandError
    from tracect.data.prepare import PrepareConfig, is_done, load_datasets, prepare_dataset
    from tracect.utils import preflight

    config = PrepareConfig(size=args.size, pixel_spacing=args.pixel_spacing,
                           slice_thickness=args.slice_thickness, hu_window=tuple(args.hu_window),
                           vocabulary=args.vocabulary, flow=args.flow, min_slices=args.min_slices)
    datasets = load_datasets(args.dataset, allow_absolute=args.allow_absolute_paths)
    try:  # before the first case: a full disk or a read-only folder should not cost an hour of work
        preflight.check_writable(args.out)
        if not args.no_space_check:
            # a resumed run needs room only for the cases still to do
            cases = Path(args.out) / "cases"
            todo = [c for ds in datasets for c in ds.cases if is_done(cases, c.case_id, config) is None]
            preflight.check_free_space(args.out, preflight.estimate_cache_bytes(
                todo, config.size, config.slice_thickness), f"{len(todo)} case(s)")
    except preflight.PreflightError as e:
        raise CommandError(str(e)) from None
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    result = prepare_dataset(datasets, args.out, config, workers=args.workers,
                             progress=not args.quiet, log=log, strict_labels=args.strict,
                             pseudo_labels=args.pseudo_labels)
    print(f"prepared {len(result.prepared)} case(s) into {args.out} "
          f"({result.reused} already done), skipped {len(result.skipped)}")
    for w in result.warnings:
        print(f"  note {w}")
    if result.skipped:
        print("skipped cases:")
        for s in result.skipped:
            print(f"  {s['case']}: {s['problem']}")
    if not result.prepared:
        print("no valid case remains", file=sys.stderr)
        return 2
    return 1 if (args.strict and result.skipped) else 0
