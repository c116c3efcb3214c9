"""``tracect generate``: a CT from a mask (or just a slice count) and a report."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate a CT volume from a mask and a report",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run folder or checkpoint folder")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--mask", help="NIfTI/NRRD mask, DICOM-derived file, or TotalSegmentator organ folder")
    src.add_argument("--manifest", help="JSONL jobs: {mask | slices, report, seed, name}; --out is a folder")
    p.add_argument("--slices", type=int, default=None, help="without --mask: a phantom mask of N slices")
    rep = p.add_mutually_exclusive_group()
    rep.add_argument("--report", default="", help="report text")
    rep.add_argument("--report-file", help="file holding the report text (UTF-8)")
    p.add_argument("--vocabulary", default="total", help="label vocabulary of the mask (name or JSON)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=1, help="volumes with seeds seed..seed+num-1")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance weight")
    p.add_argument("--mode", choices=("sequential", "parallel"), default="sequential")
    p.add_argument("--overlap", type=int, default=1, help="frames shared by consecutive windows")
    p.add_argument("--format", choices=("nifti", "dicom"), default="nifti",
                   help="dicom: also write a DICOM series marked as synthetic")
    p.add_argument("--no-pictures", action="store_true", help="skip the montage and fly-through")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="OUT.nii.gz (or a folder with --manifest)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    from tracect.cli.errors import CommandError
    from tracect.generate.batch import Job, run_jobs

    report = args.report
    if args.report_file:
        report = Path(args.report_file).read_text(encoding="utf-8").strip()
    if args.manifest:
        jobs = Job.read_manifest(Path(args.manifest))
        out_dir = Path(args.out)
    else:
        if args.mask is None and args.slices is None:
            raise CommandError("give --mask, --slices N or --manifest")
        if args.num < 1:
            raise CommandError("--num must be >= 1")
        out = Path(args.out)
        jobs = [Job(name=None, mask=args.mask, slices=args.slices, report=report, seed=args.seed + i,
                    out=out if args.num == 1 else _numbered(out, i)) for i in range(args.num)]
        out_dir = out.parent
    summary = run_jobs(jobs, args.checkpoint, out_dir, vocabulary=args.vocabulary, steps=args.steps,
                       guidance=args.guidance, mode=args.mode, overlap=args.overlap,
                       formats=("nifti", "dicom") if args.format == "dicom" else ("nifti",),
                       pictures=not args.no_pictures, overwrite=args.overwrite, device=args.device,
                       progress=not args.quiet, log=lambda m: print(m, file=sys.stderr),
                       skip_existing=bool(args.manifest))
    print(f"done {summary['done']}, skipped {summary['skipped']}, failed {summary['failed']}")
    for f in summary["failures"]:
        print(f"  failed {f['job']}: {f['error']}")
    return 0 if summary["failed"] == 0 else 1


def _numbered(out, i: int):
    from tracect.generate.outputs import stem_of

    stem = stem_of(out)
    suffix = out.name[len(stem.name):]
    return stem.with_name(f"{stem.name}_{i:03d}{suffix}")
