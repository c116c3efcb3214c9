"""``tracect demo``: the README's main job, a generated CT from a held-back phantom mask and a report.

By default it generates with the weights shipped in the package (``tracect/weights/demo-cpu``: the
``cpu`` model trained by a fixed recipe, seed and number of steps), so the first picture a user sees is
the same on every machine, fast or slow, and takes a few minutes. ``--train`` does it all from nothing:
a phantom dataset -> prepare -> train the ``cpu`` model (for ``--train-minutes``, or exactly
``--train-steps``) -> generate. The shipped weights are made by the ``--train`` path with
``--train-steps`` and ``--export-weights`` (the command is in docs/model.md).

Either way: a volume longer than any training volume -> NIfTI, montage with reformats, fly-through,
sidecar and a short summary.
"""

from __future__ import annotations

import argparse

DEMO_REPORT = ("EXAMINATION: Contrast-enhanced CT of the chest, abdomen and pelvis, arterial phase.\n"
               "FINDINGS: Clear lungs. Dense opacification of the aorta, normal in calibre. "
               "A 24 mm hypodense lesion in the right hepatic lobe, likely a cyst. The spleen is normal. "
               "The kidneys show normal corticomedullary enhancement.\n"
               "IMPRESSION: Hepatic cyst. No acute abnormality.")
SHIPPED = "demo-cpu"  # the folder under tracect/weights/


def shipped_weights():
    """The folder of the shipped demo weights (inside the installed package)."""
    from importlib.resources import files
    from pathlib import Path

    return Path(str(files("tracect") / "weights" / SHIPPED))


def register(sub) -> None:
    p = sub.add_parser("demo", help="a generated CT from a held-back phantom mask and a report "
                                    "(shipped weights; --train: from nothing)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="demo-output")
    p.add_argument("--train", action="store_true",
                   help="train the 'cpu' model on a phantom dataset first instead of using the shipped weights")
    p.add_argument("--n", type=int, default=24, help="with --train: phantom training cases")
    p.add_argument("--train-minutes", type=float, default=5.5,
                   help="with --train: training wall-time budget (the model then depends on the machine's speed)")
    p.add_argument("--train-steps", type=int, default=None,
                   help="with --train: train exactly this many steps, no time limit (the same model on any machine)")
    p.add_argument("--export-weights", default=None,
                   help="with --train: also write the trained EMA weights (float16) to this folder")
    p.add_argument("--weights", default=None, help="generate with this run or exported model, not the shipped one")
    p.add_argument("--slices", type=int, default=160, help="slices of the generated volume")
    p.add_argument("--steps", type=int, default=None,
                   help="sampler steps per window (default: the model's, 12 for the shipped one; fewer is faster "
                        "and rougher)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--overwrite", action="store_true", help="start over in an existing --out")
    p.set_defaults(func=run)


def run(args) -> int:
    import shutil
    import time
    from pathlib import Path

    from tracect.cli.errors import CommandError
    from tracect.generate.outputs import write_outputs
    from tracect.generate.pipeline import Generator
    from tracect.io.readers import write_volume
    from tracect.phantom import PhantomConfig, make_case
    from tracect.utils.atomic import write_text

    if not args.train and (args.train_steps or args.export_weights):
        raise CommandError("--train-steps and --export-weights go with --train")
    if args.train and args.weights:
        raise CommandError("--weights names a trained model; --train makes one: use one or the other")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise CommandError(f"{out} is not empty; use --overwrite or another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    times, lines = {}, ["tracect demo summary"]
    steps = 4 if args.train else 1
    text = None
    if args.train:
        weights, longest, text = _train(args, out, times, lines)
    else:
        weights = Path(args.weights) if args.weights else shipped_weights()
        if not weights.exists():
            raise CommandError(f"{weights}: no such weights (an incomplete install?); `tracect demo --train` "
                               "trains a model from nothing")
        longest = 0
        lines.append(f"weights   {weights}")

    t = time.perf_counter()
    gen = Generator.from_checkpoint(weights, text=text)
    longest = max(longest, (gen.data.get("export") or {}).get("longest_volume", 0))
    slices = max(args.slices, longest + 1)
    print(f"[{steps}/{steps}] generate {slices} slices (longest training volume: {longest}) from a held-back "
          "phantom mask and an arterial-phase report")
    held = make_case("heldout", seed=10_000 + args.seed,
                     config=PhantomConfig(slices=(slices, slices), slice_thickness=(4.0, 4.0)))
    write_volume(held.mask, out / "heldout_mask.nii.gz")
    write_volume(held.image, out / "heldout_reference_ct.nii.gz")
    generated = gen.generate(held.mask, DEMO_REPORT, seed=args.seed, progress=True, log=print, steps=args.steps)
    paths = write_outputs(generated, out / "generated_ct.nii.gz", pictures=True, overwrite=True)
    times["generate"] = time.perf_counter() - t

    lines += [
        f"generate  {generated.canonical.shape[0]} slices ({generated.info['windows']} overlapping windows, "
        f"{generated.info['steps']} steps) in {generated.info['seconds']:.0f} s",
        f"outputs   {paths['nifti']}  (int16 HU on the mask's grid)",
        f"          {paths['montage']}  (axial slices, coronal and sagittal reformats)",
        f"          {paths['flythrough']}  (fly-through)",
        f"          {paths['sidecar']}  (everything needed to reproduce it)",
        f"compare   {out / 'heldout_reference_ct.nii.gz'} (the phantom CT of the same mask)",
        f"total     {sum(times.values()) / 60:.1f} min",
    ]
    write_text(out / "summary.txt", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _train(args, out, times: dict, lines: list):
    """Phantom -> prepare -> train (-> export); returns (the run folder, longest training volume, text encoder)."""
    import time

    from tracect.cli.errors import CommandError
    from tracect.config import load_config
    from tracect.data.prepare import PrepareConfig, prepare_dataset
    from tracect.model.weights import export_weights
    from tracect.phantom import write_dataset
    from tracect.train.trainer import Trainer

    t = time.perf_counter()
    print(f"[1/4] phantom dataset: {args.n} synthetic torso CTs with masks and reports")
    write_dataset(out / "phantom", n=args.n, seed=args.seed, workers=args.workers)
    times["phantom"] = time.perf_counter() - t

    t = time.perf_counter()
    print("[2/4] prepare: body crop, 64x64 resampling, HU window, optical flow -> memory-mapped cache")
    result = prepare_dataset(out / "phantom", out / "cache", PrepareConfig(), workers=args.workers)
    if not result.prepared:
        raise CommandError("no case could be prepared")
    times["prepare"] = time.perf_counter() - t
    longest = max(m["n_slices"] for m in result.prepared)

    t = time.perf_counter()
    if args.train_steps:
        print(f"[3/4] train the 'cpu' frame-pair model for {args.train_steps} steps")
        budget = {"max_steps": args.train_steps, "max_minutes": None}
    else:
        print(f"[3/4] train the 'cpu' frame-pair model for {args.train_minutes:g} minutes")
        budget = {"max_minutes": args.train_minutes}
    config = load_config("cpu").replace(train={**budget, "val_every": 100000})
    trainer = Trainer(config, out / "cache", out / "run")
    state = trainer.fit()
    times["train"] = time.perf_counter() - t
    lines += [
        f"phantom   {args.n} cases -> {out / 'phantom'} ({times['phantom']:.0f} s)",
        f"prepare   {len(result.prepared)} cases, {sum(m['n_slices'] for m in result.prepared)} slices "
        f"-> {out / 'cache'} ({times['prepare']:.0f} s)",
        f"train     {state.step} steps of the 'cpu' model -> {out / 'run'} ({times['train'] / 60:.1f} min)",
    ]
    if args.export_weights:
        recipe = (f"tracect demo --train --n {args.n} --seed {args.seed} --train-steps {args.train_steps}"
                  if args.train_steps else None)
        export_weights(out / "run", args.export_weights, recipe=recipe, longest_volume=longest,
                       train_seconds=round(times["train"], 1))
        lines.append(f"exported  {args.export_weights} (EMA weights, float16)")
    return out / "run", longest, trainer.text
