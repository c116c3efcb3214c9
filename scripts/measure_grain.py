"""Measure the noise power spectrum of real CT that ``tracect generate --grain`` draws from.

Patches of uniform soft tissue (32 x 32 px, -20..120 HU after a 3 x 3 median, each detrended by its
plane) of every real CT in ``--data`` (its ``cases.csv``) except the held-out ones; the radial NPS of
each scan, then their median at each frequency (each scan counted once). Writes the spectrum as JSON and, with ``--plot``,
a picture of each scan's NPS beside the mean.

    PYTHONPATH=src python scripts/measure_grain.py --data ../shared/data/real-ct --holdout crlm_1006 \
        --out src/tracect/generate/grain_nps.json --plot docs/images/grain_nps.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from tracect.generate.grain import measure_nps
from tracect.io.readers import read_volume


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with cases.csv (columns case, file)")
    ap.add_argument("--holdout", nargs="*", default=[], help="cases left out")
    ap.add_argument("--out", required=True)
    ap.add_argument("--plot", default=None)
    args = ap.parse_args()

    root = Path(args.data)
    rows = [r for r in csv.DictReader(open(root / "cases.csv")) if r["case"] not in set(args.holdout)]
    scans = []
    for r in rows:
        v = read_volume(root / r["file"]).canonical()
        scans.append((r["case"], np.asarray(v.array, np.float32), v.spacing[1:]))
        print(f"{r['case']}: {v.shape}, in-plane {v.spacing[1]:.2f} x {v.spacing[2]:.2f} mm", flush=True)
    spectrum = measure_nps(scans)
    spectrum.save(args.out)
    print(f"{args.out}: {len(spectrum.cases)} scans, patches {list(spectrum.patches)}, "
          f"noise SD over the band measured {spectrum.sd_hu:.1f} HU")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for name, hu, spacing in scans:
            one = measure_nps([(name, hu, spacing)])
            ax.plot(one.freq, one.nps, lw=1, alpha=0.7, label=f"{name} (SD {one.sd_hu:.0f} HU)")
        ax.plot(spectrum.freq, spectrum.nps, "k", lw=2.5, label=f"median of the scans (SD {spectrum.sd_hu:.0f} HU)")
        ax.set_xlabel("spatial frequency (cycles / mm)")
        ax.set_ylabel("NPS (HU² mm²)")
        ax.set_yscale("log")
        ax.set_title("Noise power in uniform soft tissue of real CT")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
