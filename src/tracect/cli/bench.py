"""``tracect bench ...``: measurements that go into docs/benchmarks.md."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: data loading, sampler steps")
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
    s = bsub.add_parser("steps", help="quality cost of fewer sampler steps vs a long reference run",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--cache", required=True, help="prepared cache with held-out windows")
    s.add_argument("--steps", type=int, nargs="+", default=[5, 10, 25, 50])
    s.add_argument("--reference", type=int, default=200)
    s.add_argument("--windows", type=int, default=12)
    s.add_argument("--split", default="test")
    s.add_argument("--out", default=None, help="write the results as JSON here")
    s.set_defaults(func=run_steps)
    d = bsub.add_parser("drift", help="per-organ HU drift over a long volume from a repeated real slab",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("--checkpoint", required=True)
    d.add_argument("--mask", required=True, help="a real mask; its slab is repeated to --slices")
    d.add_argument("--slices", type=int, default=500)
    d.add_argument("--mode", choices=("sequential", "parallel"), default="sequential")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--report", default="")
    d.add_argument("--mirror", action="store_true", help="repeat the slab alternately upside down (no jumps)")
    d.add_argument("--warmup", type=int, default=None,
                   help="burn-in slices of sequential mode (default: the generator's; 0: start from noise)")
    d.add_argument("--save", default=None, help="also write the generated volume (canonical grid) here")
    d.add_argument("--out", default=None)
    d.set_defaults(func=run_drift)
    m = bsub.add_parser("modes", help="sequential vs parallel generation: time and inter-slice coherence",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    m.add_argument("--checkpoint", required=True)
    m.add_argument("--mask", required=True)
    m.add_argument("--reference", default=None, help="the real CT of the mask, for its coherence figures")
    m.add_argument("--report", default="")
    m.add_argument("--repeats", type=int, default=3)
    m.add_argument("--out", default=None)
    m.set_defaults(func=run_modes)
    c = bsub.add_parser("cohort", help="throughput of a cohort generated in lockstep vs one volume at a time",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("--checkpoint", required=True)
    c.add_argument("--volumes", type=int, default=8)
    c.add_argument("--slices", type=int, default=64, help="slices of the longest phantom mask")
    c.add_argument("--batch-volumes", type=int, default=None, help="default: all volumes at once")
    c.add_argument("--steps", type=int, default=None, help="default: the model's")
    c.add_argument("--device", default="auto")
    c.add_argument("--out", default=None)
    c.set_defaults(func=run_cohort)
    e = bsub.add_parser("efficiency", help="time and memory per volume: frame-pair and 4-frame windows (sequential, parallel) "
                        "vs 3D (whole volume, training-block windows), each in a fresh subprocess; JSON, markdown, plot",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    e.add_argument("--slices", type=int, nargs="+", default=[32, 64, 128, 256])
    e.add_argument("--size", type=int, default=64, help="slice size (px) of the generation grid")
    e.add_argument("--mask-size", type=int, default=None,
                   help="slice size (px) of the masks (default: --size); e.g. a 64 px model given 256 px masks")
    e.add_argument("--steps", type=int, default=5)
    e.add_argument("--device", default="cpu", help="cpu or cuda")
    e.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    e.add_argument("--timeout", type=float, default=1800.0, help="seconds per measurement")
    e.add_argument("--memory-limit", type=float, default=None, metavar="GIB",
                   help="address space per measurement; past it the measurement is recorded as oom")
    e.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median time, max memory)")
    e.add_argument("--only", nargs="+", metavar="MODEL:MODE", default=None,
                   help="measure only these samplings (e.g. frame-pair:sequential); default: all of "
                        "tracect.bench.efficiency.MEASURED")
    e.add_argument("--out", required=True, help="folder for efficiency.json, efficiency.md, efficiency.png")
    e.set_defaults(func=run_efficiency)
    q = bsub.add_parser("quality", help="frame-pair, 4-frame windows, slice and 3d trained for the same time on the phantom, "
                        "judged on held-out masks with paired intervals; one table",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    q.add_argument("--minutes", type=float, required=True, help="training wall-clock budget per model")
    q.add_argument("--out", required=True)
    q.add_argument("--cases", type=int, default=40, help="phantom cases the generators train on")
    q.add_argument("--heldout", type=int, default=24, help="held-out phantom masks (another draw) the models are judged on")
    q.add_argument("--segmenter-cases", type=int, default=24,
                   help="phantom cases of the evaluation segmenter's own draw (disjoint from the generators')")
    q.add_argument("--segmenter-minutes", type=float, default=None, help="default: min(10, --minutes)")
    q.add_argument("--threads", type=int, default=None, help="threads per model (default: CPUs / models, at least 1)")
    q.add_argument("--models", nargs="+", default=None, metavar="MODEL",
                   help="models of tracect.bench.specs.MODELS to compare (default: frame-pair frame-4 slice 3d; "
                        "frame-pair-latent is the frame pair in a slice autoencoder's latent space)")
    q.add_argument("--autoencoder", default=None, help="the slice autoencoder (run or checkpoint) of latent models")
    q.add_argument("--phantom-size", type=int, default=None,
                   help="the phantoms' slice size (default: the phantom's own); 256 to judge a 256² latent model")
    q.set_defaults(func=run_quality)


def run_efficiency(args) -> int:
    from pathlib import Path

    from tracect.bench.efficiency import MEASURED, OPTIONAL, markdown, plot, run_efficiency as measure
    from tracect.cli.errors import CommandError
    from tracect.utils.atomic import write_json

    measured = MEASURED
    if args.only:
        measured = tuple(tuple(x.split(":", 1)) for x in args.only)
        unknown = [f"{m}:{d}" for m, d in measured if (m, d) not in MEASURED + OPTIONAL]
        if unknown:
            raise CommandError(f"--only {unknown}: not among {[f'{m}:{d}' for m, d in MEASURED + OPTIONAL]}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    r = measure(tuple(args.slices), args.size, args.steps, args.device, args.threads, args.timeout,
                repeats=args.repeats, measured=measured, memory_limit_gib=args.memory_limit,
                mask_size=args.mask_size)
    write_json(out / "efficiency.json", r)
    (out / "efficiency.md").write_text(markdown(r))
    plot(r, out / "efficiency.png")
    print(markdown(r))
    return 0


def run_quality(args) -> int:
    from tracect.bench.quality import markdown, run_quality as measure
    from tracect.bench.specs import MODELS
    from tracect.cli.errors import CommandError

    presets = None
    if args.models:
        unknown = [m for m in args.models if m not in MODELS]
        if unknown:
            raise CommandError(f"--models {unknown}: not among {list(MODELS)}")
        presets = {m: MODELS[m].preset for m in args.models}
    r = measure(args.out, args.minutes, args.cases, args.heldout, args.segmenter_cases, args.segmenter_minutes,
                args.threads, presets=presets, autoencoder=args.autoencoder, phantom_size=args.phantom_size)
    print(markdown(r))
    return 0


def run_cohort(args) -> int:
    from tracect.bench.cohort import measure_cohort
    from tracect.generate.pipeline import Generator

    gen = Generator.from_checkpoint(args.checkpoint, device=args.device)
    r = measure_cohort(gen, args.volumes, args.slices, batch_volumes=args.batch_volumes, steps=args.steps)
    return _emit(r, args.out)


def run_modes(args) -> int:
    from tracect.bench.modes import compare_modes
    from tracect.io.readers import read_mask, read_volume

    ref = read_volume(args.reference) if args.reference else None
    r = compare_modes(args.checkpoint, read_mask(args.mask), args.report, ref, repeats=args.repeats)
    for mode, v in r["modes"].items():
        print(f"{mode:<11} {v['seconds_median']:7.2f} s  adjacent |dHU| {v['adjacent_mae_hu']:6.1f}  "
              f"warp error {v['warp_error']:.3f}")
    if "reference" in r:
        print(f"{'reference':<11} {'':>9}  adjacent |dHU| {r['reference']['adjacent_mae_hu']:6.1f}  "
              f"warp error {r['reference']['warp_error']:.3f}")
    print(f"parallel speed-up x{r['speedup_parallel']:.2f} ({r['slices']} slices, {r['steps']} steps)")
    return _emit(r, args.out)


def run_drift(args) -> int:
    from tracect.bench.drift import measure_drift

    r = measure_drift(args.checkpoint, args.mask, args.slices, args.seed, args.mode, args.report, save=args.save,
                      mirror=args.mirror, warmup=args.warmup)
    literal = r["per_organ_first_window"]
    print(f"slab period {r['period']} slices; early window on the same mask slices as the last one")
    for organ, v in sorted(r["per_organ"].items()):
        lit = literal.get(organ, {}).get("abs_diff_hu", float("nan"))
        print(f"{organ:<12} early {v['first_hu']:7.1f}  last {v['last_hu']:7.1f}  |diff| {v['abs_diff_hu']:5.1f} HU"
              f"   (first {r['window']} slices instead: {lit:5.1f})")
    print(f"max |diff| {r['max_abs_diff_hu']:.1f} HU over {r['slices']} slices ({r['mode']}, {r['seconds']:.0f} s); "
          f"first-{r['window']}-slices comparison {r['max_abs_diff_hu_first_window']:.1f} HU")
    return _emit(r, args.out)


def run_steps(args) -> int:
    from tracect.bench.steps import measure_steps

    r = measure_steps(args.checkpoint, args.cache, tuple(args.steps), args.reference, args.windows, args.split)
    print(f"{'steps':>6} {'s/window':>9} {'MAE vs ' + str(r['reference_steps']) + ' (HU)':>18} {'organ median HU err':>20}")
    for row in r["rows"]:
        print(f"{row['steps']:>6} {row['seconds_per_window']:>9.3f} {row['mae_to_reference_hu']:>18.1f} "
              f"{row['organ_median_hu_error']:>20.1f}")
    return _emit(r, args.out)


def run_windows(args) -> int:
    from tracect.bench.windows import measure_windows

    results = []
    for cache in args.cache:
        for workers in args.workers:
            r = measure_windows(cache, k=args.k, batch_size=args.batch_size, workers=workers,
                                batches=args.batches)
            results.append(r)
            print(f"{cache}: windows {r['window_shape']} workers={workers} "
                  f"{r['windows_per_s_median']:.0f} windows/s (median of {len(r['windows_per_s_runs'])})")
    return _emit(results, args.out)


def _emit(result, out: str | None) -> int:
    """Write the measurement as JSON to ``out``, or print it."""
    import json

    from tracect.utils.atomic import write_json

    if out:
        write_json(out, result)
    else:
        print(json.dumps(result, indent=2))
    return 0
