"""``tracect evaluate`` and ``tracect segmenter train``."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="Dice, inter-slice coherence, HU realism, report adherence, "
                       "diversity and memorisation of generated volumes; metrics.json + report.html",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--generated", required=True,
                   help="a folder of generated volumes (with their JSON sidecars) or a JSONL manifest "
                        "with 'generated', 'mask' and optionally 'reference', 'report' per line")
    p.add_argument("--reference", default=None,
                   help="dataset folder with the real CTs (images/NAME.*) and, for report adherence on real "
                        "volumes, their masks and reports")
    p.add_argument("--segmenter", default=None,
                   help="a folder made by `tracect segmenter train`, or 'totalsegmentator' (needs it and "
                        "its weights installed; nothing is downloaded)")
    p.add_argument("--features", default=None,
                   help="TorchScript file of a feature network (e.g. Inception) for the Fréchet distance; "
                        "default: the segmenter's encoder, labelled as such")
    p.add_argument("--training-cache", default=None,
                   help="cache the model was trained on (memorisation check); default: from the checkpoint")
    p.add_argument("--ncc-threshold", type=float, default=0.95)
    p.add_argument("--allow-absolute-paths", action="store_true", help="let a manifest name files anywhere")
    p.add_argument("--no-html", action="store_true")
    p.add_argument("--out", required=True, help="report folder")
    p.set_defaults(func=run_evaluate)

    s = sub.add_parser("segmenter", help="the evaluation segmenter")
    ssub = s.add_subparsers(dest="segmenter_command", required=True, metavar="ACTION")
    t = ssub.add_parser("train", help="train the 2D evaluation segmenter on a prepared cache",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--data", required=True, help="prepared cache (tracect prepare)")
    t.add_argument("--out", required=True)
    t.add_argument("--minutes", type=float, default=5.0)
    t.add_argument("--max-steps", type=int, default=3000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=run_segmenter_train)


def _segmenter(spec):
    from tracect.cli.errors import CommandError

    if spec is None:
        return None
    if spec.lower() == "totalsegmentator":
        from tracect.evaluate.external import TotalSegmentatorSegmenter

        return TotalSegmentatorSegmenter()
    from tracect.evaluate.segmenter import Segmenter

    try:
        return Segmenter.load(spec)
    except FileNotFoundError as e:
        raise CommandError(str(e)) from None


def run_evaluate(args) -> int:
    from tracect.evaluate.entries import collect_entries
    from tracect.evaluate.harness import evaluate

    entries = collect_entries(args.generated, args.reference, allow_absolute=args.allow_absolute_paths)
    evaluate(entries, args.out, segmenter=_segmenter(args.segmenter), features=args.features,
             reference_dataset=args.reference, training_cache=args.training_cache,
             ncc_threshold=args.ncc_threshold, html=not args.no_html)
    return 0


def run_segmenter_train(args) -> int:
    from tracect.evaluate.segmenter import SegmenterConfig, train_segmenter

    train_segmenter(args.data, args.out, SegmenterConfig(max_minutes=args.minutes, max_steps=args.max_steps,
                                                         seed=args.seed), progress=not args.quiet)
    return 0
