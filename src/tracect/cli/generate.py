"""``tracect generate``: a CT from a mask (or just a slice count) and a report."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from tracect.generate.sampling import MODES, Sampling

    p = sub.add_parser("generate", help="generate a CT volume from a mask and a report",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run folder or checkpoint folder")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--mask", help="NIfTI/NRRD mask, DICOM-derived file, or TotalSegmentator organ folder")
    src.add_argument("--manifest", help="JSONL jobs: {mask | slices, report | report_file, seed, name}; "
                     "--out is a folder; finished volumes are skipped, so a rerun resumes")
    p.add_argument("--slices", type=int, default=None, help="without --mask: a phantom mask of N slices")
    p.add_argument("--body", default=None,
                   help="with --mask: a body mask on the mask's grid (nonzero = body), e.g. `tracect label` "
                        "of the patient's own CT, for a mask without a body label (default: estimated from "
                        "its organs)")
    rep = p.add_mutually_exclusive_group()
    rep.add_argument("--report", default="", help="report text")
    rep.add_argument("--report-file", help="file holding the report text (UTF-8)")
    p.add_argument("--vocabulary", default="total", help="label vocabulary of the mask (name or JSON)")
    p.add_argument("--strict", action="store_true",
                   help="refuse an organ folder holding files whose names are not labels of --vocabulary "
                        "(default: merge them into a coarser label, e.g. a named artery into aorta, or "
                        "ignore them; the notes and the sidecar list which)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=1, help="volumes with seeds seed..seed+num-1")
    # sampler settings: one Sampling object (tracect.generate.sampling); unset options keep its defaults
    d = Sampling()
    p.add_argument("--steps", type=int, default=None, help="sampler steps per window (default: the model's)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance weight on the report (default: the model's; 1: off)")
    p.add_argument("--lesion-guidance", type=float, default=d.lesion_guidance,
                   help="guidance weight inside the report's placed lesions (a model with findings; "
                        "default: the model's diffusion.lesion_guidance, 1 in the cpu presets, else --guidance's)")
    p.add_argument("--mode", choices=MODES, default=d.mode)
    p.add_argument("--overlap", type=int, default=d.overlap, help="frames shared by consecutive windows")
    p.add_argument("--warmup", type=int, default=d.warmup,
                   help="sequential mode: burn-in slices run through the mask's top slices mirrored and "
                        "dropped, so the first slices continue a generated neighbour like the rest "
                        "(0: start from noise as TRACE does)")
    p.add_argument("--chunk", type=int, default=d.chunk,
                   help="parallel mode: windows per network call (twice as many network rows with guidance); "
                        "fewer: less memory, about the same time")
    p.add_argument("--window", type=int, default=d.window,
                   help="3D models: slices per window (default: the whole volume; shorter needs --mode parallel)")
    p.add_argument("--batch-volumes", type=int, default=8,
                   help="sequential mode, several volumes (--manifest, --num): volumes whose windows advance "
                        "together in one network call (more: faster, memory grows with it)")
    p.add_argument("--format", choices=("nifti", "dicom"), default="nifti",
                   help="dicom: also write a DICOM series marked as synthetic")
    p.add_argument("--keep-grid", action="store_true",
                   help="also write OUT.grid.nii.gz: the volume on its generation grid, before it is resampled "
                        "onto the mask's grid (tracect evaluate then scores it without a second resampling)")
    p.add_argument("--grain", nargs="?", const="real-ct", default=None, metavar="NPS.json",
                   help="add real CT's noise above the generation grid's resolution to the CT on the mask's grid "
                        "(no value: the spectrum shipped with tracect, measured on real CTs; or a JSON written "
                        "by scripts/measure_grain.py); the generation grid (--keep-grid) stays without")
    p.add_argument("--no-pictures", action="store_true", help="skip the montage and fly-through")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="OUT.nii.gz (or a folder with --manifest)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--shard", metavar="I/N", default=None,
                   help="with --manifest: run jobs I, I+N, I+2N, ... (1-based: 1/4 .. 4/4); under torchrun "
                        "RANK/WORLD_SIZE choose the shard and LOCAL_RANK the GPU")
    p.add_argument("--allow-pickle", action="store_true",
                   help="load a pickle (.pt/.pth) checkpoint with torch.load(weights_only=True); only for "
                        "files you trust (safetensors checkpoints need no flag)")
    p.add_argument("--allow-absolute-paths", action="store_true",
                   help="let manifest paths be absolute (relative ones must stay inside its folder)")
    p.add_argument("--no-space-check", action="store_true",
                   help="start even if free disk space looks short (the estimate ignores compression)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    from tracect.cli.errors import CommandError
    from tracect.generate.batch import Job, run_jobs
    from tracect.utils.preflight import PreflightError

    if args.manifest:
        return _run_manifest(args)
    if args.shard is not None:
        raise CommandError("--shard needs --manifest")
    if args.mask is None and args.slices is None:
        raise CommandError("give --mask, --slices N or --manifest")
    if args.num < 1:
        raise CommandError("--num must be >= 1")
    if args.body and not args.mask:
        raise CommandError("--body goes with --mask (a phantom mask has its body)")
    report = args.report
    if args.report_file:
        report = Path(args.report_file).read_text(encoding="utf-8").strip()
    out = Path(args.out)
    jobs = [Job(name=None, mask=args.mask, slices=args.slices, report=report, seed=args.seed + i,
                out=out if args.num == 1 else _numbered(out, i), body=args.body) for i in range(args.num)]
    try:
        summary = run_jobs(jobs, args.checkpoint, out.parent, skip_existing=False,
                           log=lambda m: print(m, file=sys.stderr), **_options(args))
    except PreflightError as e:
        raise CommandError(str(e)) from None
    _print_summary(summary)
    return 0 if summary["failed"] == 0 else 1


def _run_manifest(args) -> int:
    import os
    import sys
    from pathlib import Path

    from tracect.cli.errors import CommandError
    from tracect.generate import batch
    from tracect.utils.preflight import PreflightError

    if args.slices is not None or args.num != 1 or args.seed != 0 or args.report or args.report_file or args.body:
        raise CommandError("with --manifest, masks, bodies, slices, reports and seeds come from the manifest")
    shard = batch.Shard.resolve(args.shard)
    jobs = batch.Job.read_manifest(Path(args.manifest), allow_absolute=args.allow_absolute_paths)
    mine = shard.take(jobs)
    out_dir = Path(args.out)
    prefix = f"[shard {shard}] " if shard.count > 1 else ""
    log = lambda m: print(prefix + m, file=sys.stderr)  # noqa: E731
    log(f"{len(mine)} of {len(jobs)} job(s) in this shard")
    # one progress bar per terminal: under torchrun only the first process on each node draws it
    options = _options(args)
    options["progress"] = options["progress"] and os.environ.get("LOCAL_RANK", "0") == "0"
    options["device"] = batch.device_for_process(args.device)
    try:
        summary = batch.run_jobs(mine, args.checkpoint, out_dir, log=log, skip_existing=True,
                                 summary_path=out_dir / "summaries" / shard.summary_name, **options)
    except PreflightError as e:
        raise CommandError(str(e)) from None
    _print_summary(summary, prefix)
    if batch.wait_for_other_processes() and shard.index == 1:
        total = batch.combine_summaries(out_dir / "summaries", shard.count)
        line = f"all {total['shards']} shards: done {total['done']}, skipped {total['skipped']}, failed {total['failed']}"
        print(line + (f", not started {total['not_started']}" if total["not_started"] else ""))
    return 0 if summary["failed"] == 0 else 1


def _options(args) -> dict:
    from tracect.generate.grain import Grain, GrainSpectrum
    from tracect.generate.sampling import Sampling

    grain = None
    if args.grain is not None:
        import json

        from tracect.cli.errors import CommandError

        try:
            grain = Grain(GrainSpectrum.load(None if args.grain == "real-ct" else args.grain))
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
            raise CommandError(f"--grain {args.grain}: not a spectrum written by scripts/measure_grain.py "
                               f"({type(e).__name__}: {e})") from None
    sampling = Sampling(steps=args.steps, guidance=args.guidance, lesion_guidance=args.lesion_guidance,
                        mode=args.mode, overlap=args.overlap,
                        warmup=args.warmup, chunk=args.chunk, window=args.window)
    return dict(vocabulary=args.vocabulary, sampling=sampling, batch_volumes=args.batch_volumes,
                formats=("nifti",) + (("dicom",) if args.format == "dicom" else ()) + (("grid",) if args.keep_grid else ()),
                pictures=not args.no_pictures, overwrite=args.overwrite, device=args.device,
                progress=not args.quiet, space_check=not args.no_space_check, allow_pickle=args.allow_pickle,
                strict_labels=args.strict, grain=grain)


def _print_summary(summary: dict, prefix: str = "") -> None:
    line = f"{prefix}done {summary['done']}, skipped {summary['skipped']}, failed {summary['failed']}"
    if summary["not_started"]:
        line += f", not started {summary['not_started']} ({summary['stopped']})"
    print(line)
    for f in summary["failures"]:
        print(f"{prefix}  failed {f['job']}: {f['error']}")


def _numbered(out, i: int):
    from tracect.generate.outputs import stem_of

    stem = stem_of(out)
    suffix = out.name[len(stem.name):]
    return stem.with_name(f"{stem.name}_{i:03d}{suffix}")
