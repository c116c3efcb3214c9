"""``tracect bench ...``: measurements that go into docs/benchmarks.md."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks (data loading; model benchmarks join later)")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    w = bsub.add_parser("windows", help="training windows/s from a prepared cache",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    w.add_argument("--cache", required=True, nargs="+", help="one or more prepared caches")
    w.add_argument("--k", type=int, default=2)
    w.add_argument("--batch-size", type=int, default=16)
    w.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    w.add_argument("--batches", type=int, default=50)
    w.add_argument("--out", default=None, help="write the results as JSON here")
    w.set_defaults(func=run_windows)


def run_windows(args) -> int:
    import json

    from tracect.bench.windows import measure_windows
    from tracect.utils.atomic import write_json

    results = []
    for cache in args.cache:
        for workers in args.workers:
            r = measure_windows(cache, k=args.k, batch_size=args.batch_size, workers=workers,
                                batches=args.batches)
            results.append(r)
            print(f"{cache}: windows {r['window_shape']} workers={workers} "
                  f"{r['windows_per_s_median']:.0f} windows/s (median of {len(r['windows_per_s_runs'])})")
    if args.out:
        write_json(args.out, results)
    else:
        print(json.dumps(results, indent=2))
    return 0
