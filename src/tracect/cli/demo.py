"""``tracect demo``: the README's main job, from nothing to results on built-in phantom data."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("demo", help="build a phantom dataset and prepare it (generation joins later)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="demo-output")
    p.add_argument("--n", type=int, default=24, help="phantom cases")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--overwrite", action="store_true", help="start over in an existing --out")
    p.set_defaults(func=run)


def run(args) -> int:
    import shutil
    import time
    from pathlib import Path

    from tracect.cli.errors import CommandError
    from tracect.data.prepare import PrepareConfig, prepare_dataset
    from tracect.phantom import write_dataset
    from tracect.utils.atomic import write_text

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise CommandError(f"{out} is not empty; use --overwrite or another --out")
        shutil.rmtree(out)
    t0 = time.perf_counter()
    print(f"[1/2] phantom dataset: {args.n} synthetic torso CTs with masks and reports")
    write_dataset(out / "phantom", n=args.n, seed=args.seed, workers=args.workers)
    t1 = time.perf_counter()
    print("[2/2] prepare: resample, window, optical flow, memory-mapped cache")
    result = prepare_dataset(out / "phantom", out / "cache", PrepareConfig(), workers=args.workers)
    t2 = time.perf_counter()
    if not result.prepared:
        raise CommandError("no case could be prepared")
    slices = sum(m["n_slices"] for m in result.prepared)
    lines = [
        "tracect demo summary",
        f"phantom: {args.n} cases in {out / 'phantom'} ({t1 - t0:.1f} s)",
        f"cache:   {len(result.prepared)} cases, {slices} slices of {result.prepared[0]['shape'][1:]} "
        f"in {out / 'cache'} ({t2 - t1:.1f} s); skipped {len(result.skipped)}",
        "next:    tracect info / tracect convert on any file above; training and generation arrive "
        "with the model.",
    ]
    write_text(out / "summary.txt", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0
