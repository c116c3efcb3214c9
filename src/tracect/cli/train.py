"""``tracect train --config CONFIG --data CACHE --out RUN``: train a denoiser on a prepared cache.

Under ``torchrun --nproc_per_node=G -m tracect.cli.main train ...`` each process trains its share of
every step with DistributedDataParallel (see docs/distributed.md); started plainly it is one process.
"""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser("train", help="train the frame-pair diffusion model on a prepared cache",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       epilog="Several GPUs or nodes: torchrun --nproc_per_node=G -m tracect.cli.main train ... "
                              "(global batch = train.batch_size x train.grad_accum whatever G; "
                              "see docs/distributed.md)")
    p.add_argument("--config", required=True, help="preset (tiny, cpu, gpu) or a YAML file")
    p.add_argument("--data", required=True, help="prepared cache (tracect prepare)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, metrics, samples")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly from its latest checkpoint (starts it if it has none "
                        "yet), with any number of processes")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda, cuda:1, mps; under torchrun auto, cuda or cpu (LOCAL_RANK picks the GPU)")
    p.add_argument("--max-steps", type=int, default=None, help="override train.max_steps")
    p.add_argument("--max-minutes", type=_minutes, default=None,
                   help="override train.max_minutes (training time of the whole run, over all resumes); "
                        "'none': no time bound, train --max-steps whatever the machine's speed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _minutes(text: str) -> float | str:
    if text.lower() == "none":
        return "none"
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0, or 'none' for no time bound")
    return value


def overrides(args) -> dict:
    """The ``train`` settings the command line replaces in the preset."""
    changes = {}
    if args.max_steps is not None:
        changes["max_steps"] = args.max_steps
    if args.max_minutes is not None:
        changes["max_minutes"] = None if args.max_minutes == "none" else args.max_minutes
    return changes


def run(args) -> int:
    from tracect.config import load_config
    from tracect.train.distributed import init_from_env, shutdown
    from tracect.train.trainer import Trainer, sized_for_cache

    config = load_config(args.config)
    changes = overrides(args)
    if changes:
        config = config.replace(train=changes)
    config, note = sized_for_cache(config, args.data)
    ctx = init_from_env(args.device)
    if note and ctx.rank == 0:
        print(note, file=sys.stderr)
    try:
        trainer = Trainer(config, args.data, args.out, device=str(ctx.device), resume=args.resume,
                          progress=not args.quiet, rank=ctx.rank, world_size=ctx.world_size)
        lead = ctx.rank == 0
        if lead and args.resume:
            print(f"resuming from {trainer.resumed_from}" if trainer.resumed_from else
                  f"no checkpoint in {args.out} yet: starting the run", file=sys.stderr)
        if lead and ctx.distributed:
            L = trainer.layout
            print(f"{ctx.world_size} processes ({ctx.device.type}); global batch {L.global_batch} windows, "
                  f"each process {L.micro_batches} micro-batch(es) of {L.local_batch}", file=sys.stderr)
        state = trainer.fit()
        if lead:
            print(f"trained {state.step} steps ({state.elapsed_s / 60:.1f} min) -> {args.out}")
    finally:
        shutdown()
    return 0
