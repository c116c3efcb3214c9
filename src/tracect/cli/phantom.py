"""``tracect phantom``: a synthetic torso CT dataset in the tracect dataset layout."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("phantom", help="write N synthetic torso CTs with masks and reports",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", type=int, default=20, help="number of cases")
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64, help="in-plane matrix")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--prefix", default="phantom", help="case ids PREFIX_000, ... (keep draws apart)")
    p.add_argument("--split", choices=("train", "val", "test"), default=None,
                   help="put every case in this split (a held-out draw: test); default about 80/10/10")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from tracect.cli.errors import CommandError
    from tracect.phantom import PhantomConfig, write_dataset

    if args.n < 1:
        raise CommandError("--n must be at least 1")
    ids = write_dataset(Path(args.out), n=args.n, seed=args.seed, config=PhantomConfig(size=args.size),
                        workers=args.workers, progress=not args.quiet, prefix=args.prefix, split=args.split)
    print(f"wrote {len(ids)} phantom cases to {args.out}")
    return 0
