"""``tracect demo``: the README's main job, from nothing to a generated CT on built-in phantom data.

Steps: a phantom dataset -> prepare -> train the ``cpu`` model for a bounded time -> generate a volume
longer than any training volume from a held-back phantom mask and a report -> NIfTI, montage with
reformats, fly-through, sidecar and a short summary. About 10 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse

DEMO_REPORT = ("EXAMINATION: Contrast-enhanced CT of the chest, abdomen and pelvis, arterial phase.\n"
               "FINDINGS: Clear lungs. Dense opacification of the aorta, normal in calibre. "
               "A 24 mm hypodense lesion in the right hepatic lobe, likely a cyst. The spleen is normal. "
               "The kidneys show normal corticomedullary enhancement.\n"
               "IMPRESSION: Hepatic cyst. No acute abnormality.")


def register(sub) -> None:
    p = sub.add_parser("demo", help="phantom data -> prepare -> train (bounded) -> generate a long CT",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="demo-output")
    p.add_argument("--n", type=int, default=24, help="phantom training cases")
    p.add_argument("--train-minutes", type=float, default=5.5, help="training wall-time budget")
    p.add_argument("--slices", type=int, default=160, help="slices of the generated volume")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--overwrite", action="store_true", help="start over in an existing --out")
    p.set_defaults(func=run)


def run(args) -> int:
    import shutil
    import time
    from pathlib import Path

    from tracect.cli.errors import CommandError
    from tracect.config import load_config
    from tracect.data.prepare import PrepareConfig, prepare_dataset
    from tracect.generate.outputs import write_outputs
    from tracect.generate.pipeline import Generator
    from tracect.io.readers import write_volume
    from tracect.phantom import PhantomConfig, make_case, write_dataset
    from tracect.train.trainer import Trainer
    from tracect.utils.atomic import write_text

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise CommandError(f"{out} is not empty; use --overwrite or another --out")
        shutil.rmtree(out)
    times = {}
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
    print(f"[3/4] train the 'cpu' frame-pair model for {args.train_minutes:g} minutes")
    config = load_config("cpu").replace(train={"max_minutes": args.train_minutes, "val_every": 100000})
    trainer = Trainer(config, out / "cache", out / "run")
    state = trainer.fit()
    times["train"] = time.perf_counter() - t

    t = time.perf_counter()
    slices = max(args.slices, longest + 1)
    print(f"[4/4] generate {slices} slices (longest training volume: {longest}) from a held-back phantom mask")
    held = make_case("heldout", seed=10_000 + args.seed,
                     config=PhantomConfig(slices=(slices, slices), slice_thickness=(4.0, 4.0)))
    write_volume(held.mask, out / "heldout_mask.nii.gz")
    write_volume(held.image, out / "heldout_reference_ct.nii.gz")
    gen = Generator.from_checkpoint(out / "run", text=trainer.text)
    generated = gen.generate(held.mask, DEMO_REPORT, seed=args.seed, progress=True, log=print)
    paths = write_outputs(generated, out / "generated_ct.nii.gz", pictures=True, overwrite=True)
    times["generate"] = time.perf_counter() - t

    lines = [
        "tracect demo summary",
        f"phantom   {args.n} cases -> {out / 'phantom'} ({times['phantom']:.0f} s)",
        f"prepare   {len(result.prepared)} cases, {sum(m['n_slices'] for m in result.prepared)} slices "
        f"-> {out / 'cache'} ({times['prepare']:.0f} s)",
        f"train     {state.step} steps of the 'cpu' model -> {out / 'run'} ({times['train'] / 60:.1f} min)",
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
