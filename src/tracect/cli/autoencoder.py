"""``tracect autoencoder train | evaluate | encode``: the per-slice autoencoder of the latent models."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("autoencoder", help="train, judge and apply the slice autoencoder (latent models)")
    asub = p.add_subparsers(dest="autoencoder_command", required=True, metavar="STEP")
    t = asub.add_parser("train", help="train on CT slices: dataset folders (masks not needed), image files or caches",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--data", required=True, nargs="+", help="dataset folders, CT files or prepared caches")
    t.add_argument("--config", default="ae-cpu", help="preset (ae-tiny, ae-cpu, ae-gpu) or a YAML file")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--weights", type=float, nargs="+", default=None,
                   help="one per --data source: its share of the training crops (default: equal)")
    t.add_argument("--holdout", nargs="*", default=None, help="case ids kept out of training (judged on)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    t.add_argument("--max-steps", type=int, default=None,
                   help="override the preset's steps (its whole-slice phase keeps its share)")
    t.add_argument("--max-minutes", type=float, default=None)
    t.add_argument("--device", default="auto")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=run_train)
    e = asub.add_parser("evaluate", help="reconstruction figures and pictures on a (held-out) case",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    e.add_argument("--autoencoder", required=True)
    e.add_argument("--data", required=True, help="a dataset folder or a CT file")
    e.add_argument("--case", default=None, help="the case of a dataset folder (default: all)")
    e.add_argument("--size", type=int, nargs="+", default=None, help="slice sizes (default: the autoencoder's)")
    e.add_argument("--out", required=True, help="folder for autoencoder_eval.json and pictures")
    e.add_argument("--device", default="auto")
    e.set_defaults(func=run_evaluate)
    c = asub.add_parser("encode", help="add latents to a prepared cache (for a latent model to train on)",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("--autoencoder", required=True)
    c.add_argument("--cache", required=True)
    c.add_argument("--batch", type=int, default=16, help="slices per encoder call")
    c.add_argument("--device", default="auto")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=run_encode)


def run_train(args) -> int:
    from tracect.autoencoder.config import load_ae_config
    from tracect.autoencoder.data import load_bank
    from tracect.autoencoder.train import AutoencoderTrainer

    config = load_ae_config(args.config)
    changes = {k: v for k, v in (("max_steps", args.max_steps), ("max_minutes", args.max_minutes),
                                 ("holdout", tuple(args.holdout) if args.holdout is not None else None)) if v is not None}
    if args.max_steps is not None and config.train.full_slice_steps:
        # the whole-slice phase keeps its share of a shorter or longer run
        tc = config.train
        share = round(tc.full_slice_steps * args.max_steps / tc.max_steps)
        changes["full_slice_steps"] = min(args.max_steps - 1, share)
        print(f"--max-steps {args.max_steps}: the last {changes['full_slice_steps']} on whole slices "
              f"(the preset: {tc.full_slice_steps} of {tc.max_steps})")
    if changes:
        config = config.replace(train=changes)
    bank = load_bank(args.data, config.model.image_size, config.model.hu_window, config.train.holdout,
                     weights=args.weights)
    print(f"{bank.slices} training slices from {len(bank.sources)} source(s); held out: "
          f"{', '.join(c.case_id for c in bank.held_out) or 'none'}")
    trainer = AutoencoderTrainer(config, bank, args.out, device=args.device, resume=args.resume,
                                 progress=not args.quiet)
    state = trainer.fit()
    print(f"trained {state.step} steps ({state.elapsed_s / 60:.1f} min) -> {args.out}")
    return 0


def run_evaluate(args) -> int:
    import json
    from pathlib import Path

    from tracect.autoencoder.evaluate import evaluate_autoencoder
    from tracect.autoencoder.weights import load_autoencoder
    from tracect.runtime import resolve_device

    ae = load_autoencoder(args.autoencoder, resolve_device(args.device))
    r = evaluate_autoencoder(ae, args.data, args.case, args.size, Path(args.out))
    print(json.dumps(r, indent=2))
    return 0


def run_encode(args) -> int:
    from tracect.autoencoder.latents import encode_cache
    from tracect.autoencoder.weights import load_autoencoder
    from tracect.runtime import resolve_device

    ae = load_autoencoder(args.autoencoder, resolve_device(args.device))
    record = encode_cache(args.cache, ae, args.batch, progress=not args.quiet)
    print(f"encoded {args.cache} with {record['autoencoder']} ({record['latent_channels']} x 1/{record['factor']})")
    return 0
