"""``tracect train --config CONFIG --data CACHE --out RUN``: train a denoiser on a prepared cache."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("train", help="train the frame-pair diffusion model on a prepared cache",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", required=True, help="preset (tiny, cpu, gpu) or a YAML file")
    p.add_argument("--data", required=True, help="prepared cache (tracect prepare)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, metrics, samples")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--max-steps", type=int, default=None, help="override train.max_steps")
    p.add_argument("--max-minutes", type=float, default=None, help="override train.max_minutes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from tracect.config import load_config
    from tracect.train.trainer import Trainer

    config = load_config(args.config)
    changes = {}
    if args.max_steps is not None:
        changes["max_steps"] = args.max_steps
    if args.max_minutes is not None:
        changes["max_minutes"] = args.max_minutes
    if changes:
        config = config.replace(train=changes)
    trainer = Trainer(config, args.data, args.out, device=args.device, resume=args.resume,
                      progress=not args.quiet)
    state = trainer.fit()
    print(f"trained {state.step} steps ({state.elapsed_s / 60:.1f} min) -> {args.out}")
    return 0
