"""One mask, report and seed through several models, beside the real CT of the mask: a montage of each
model's generation grid (its own in-plane size: 64² for the pixel `cpu` model, 256² for `cpu-latent`)
and the fine-texture figures of each.

    python scripts/latent_montage.py --mask ../shared/data/totalseg-example/seg.nii.gz \
        --reference ../shared/data/totalseg-example/ct.nii.gz --report "CT of the upper abdomen." \
        --model "pixel 64²=quality15/runs/frame-pair" --model "latent 256²=quality15/runs/frame-pair-latent" \
        --out docs/images/latent_vs_pixel_totalseg.png

Rows: the real CT (resampled linearly onto the finest model's generation grid), then each model. Columns:
four axial slices at the same fractions of the body's z-range, a 2x zoom of the first one's centre, and
a coronal reformat. Printed per model (JSON): mean |ΔHU| between horizontally neighbouring pixels inside
the body on its generation grid and that grid's pixel size, and the seconds the volume took.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def neighbour_dhu(hu: np.ndarray, body: np.ndarray) -> float:
    """Mean |HU(x+1) - HU(x)| over horizontally adjacent pixel pairs both inside ``body``."""
    both = body[..., 1:] & body[..., :-1]
    return float(np.abs(np.diff(hu, axis=-1))[both].mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mask", required=True)
    p.add_argument("--reference", required=True, help="the real CT of the mask")
    p.add_argument("--report", default="")
    p.add_argument("--model", action="append", required=True, metavar="NAME=RUN")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocabulary", default="total")
    p.add_argument("--out", required=True, help="PNG; figures go beside it as .json")
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tracect.data.grid import AIR_HU
    from tracect.data.resample import resample_to_grid
    from tracect.generate.pipeline import Generator
    from tracect.io import read_mask, read_volume

    mask = read_mask(args.mask)
    real = read_volume(args.reference).canonical()
    made, figures = {}, {}
    for spec in args.model:
        name, run = spec.split("=", 1)
        gen = Generator.from_checkpoint(run, device="cpu")
        t = time.perf_counter()
        result = gen.generate(mask, args.report, seed=args.seed, vocabulary=args.vocabulary)
        seconds = time.perf_counter() - t
        grid = result.canonical  # (Z, S, S) HU on the model's generation grid
        body = result.labels.array > 0
        made[name] = (grid, body)
        figures[name] = {"grid": list(grid.shape), "pixel_mm": round(float(grid.spacing[1]), 3),
                         "neighbour_abs_dhu_body": neighbour_dhu(grid.array, body), "seconds": round(seconds, 1)}
    finest = max(made, key=lambda n: made[n][0].shape[1])
    fgrid, fbody = made[finest]
    real_on = resample_to_grid(real, fgrid.affine, fgrid.shape, order=1, cval=AIR_HU, antialias=False).array
    figures["real CT (on the finest grid)"] = {"grid": list(fgrid.shape), "source_spacing_mm": list(real.spacing),
                                              "neighbour_abs_dhu_body": neighbour_dhu(real_on, fbody)}

    rows = [("real CT", real_on, fbody)] + [(n, g.array, b) for n, (g, b) in made.items()]
    fig, axes = plt.subplots(len(rows), 6, figsize=(16, 2.9 * len(rows)), squeeze=False)
    for r, (name, hu, body) in enumerate(rows):
        zs = np.nonzero(body.any((1, 2)))[0]
        picks = [zs[int(f * (len(zs) - 1))] for f in (0.2, 0.4, 0.6, 0.8)]
        for c, z in enumerate(picks):
            axes[r, c].imshow(hu[z], cmap="gray", vmin=-160, vmax=240)
            axes[r, c].set_title(f"{name}: axial {z}" if c == 0 else f"axial {z}", fontsize=8)
        S = hu.shape[1]
        q = slice(S // 2 - S // 4, S // 2 + S // 4)
        axes[r, 4].imshow(hu[picks[0]][q, q], cmap="gray", vmin=-160, vmax=240, interpolation="nearest")
        axes[r, 4].set_title("centre, 2x", fontsize=8)
        axes[r, 5].imshow(hu[:, S // 2, :], cmap="gray", vmin=-160, vmax=240, aspect="auto", origin="lower")
        axes[r, 5].set_title("coronal", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"mask {Path(args.mask).name}, report {args.report!r}, seed {args.seed}", fontsize=9)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70)
    plt.close(fig)
    out.with_suffix(".json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
