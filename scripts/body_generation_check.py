"""How much does the body a mask is given change what a model draws inside it?

Generates from the TotalSegmentator example's ``total`` mask in ../shared (no body label; its
non-contrast report) with three bodies, seeds 0 and 1 each: the estimated envelope
(:func:`tracect.data.body.envelope_from_organs`, what ``tracect generate`` does), the earlier estimate
(the hull grown by 20 mm all round) and the real body (``tracect label`` of the example's CT, what
``--body`` gives). Prints the mean over organs of |median HU generated - median HU real| (organs of more
than 50 voxels, on the mask's grid), the spleen's median, and the body's Dice against the real one.

    PYTHONPATH=src python scripts/body_generation_check.py [CHECKPOINT] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

TOTALSEG = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalseg-example"
REPORT = "EXAMINATION: Non-contrast CT of the abdomen.\nFINDINGS: No acute abnormality in the abdomen."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", default=None, help="default: the shipped demo weights")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from tracect.cli.demo import shipped_weights
    from tracect.data.body import PROFILE_DEG, envelope_from_organs, envelope_with_margin
    from tracect.evaluate.metrics import dice
    from tracect.generate.pipeline import Generator
    from tracect.io.readers import read_mask, read_volume
    from tracect.io.volume import Volume
    from tracect.labels.pseudo import pseudo_labels
    from tracect.labels.vocabulary import get_vocabulary

    voc = get_vocabulary("total")
    mask = read_mask(TOTALSEG / "seg.nii.gz", voc).canonical()
    ct = read_volume(TOTALSEG / "ct.nii.gz").canonical()
    ids = np.asarray(mask.array)
    real_body = pseudo_labels(ct.array, ct.spacing)[0] > 0
    organs = [n for i, n in voc.labels.items() if (ids == i).sum() > 50]
    real = {o: float(np.median(ct.array[ids == voc.id_of(o)])) for o in organs}
    bodies = {"estimated envelope": envelope_from_organs(ids > 0, mask.spacing),
              "hull + 20 mm (earlier)": envelope_with_margin(ids > 0, mask.spacing, [20.0] * len(PROFILE_DEG)),
              "real body (tracect label)": real_body}
    gen = Generator.from_checkpoint(args.checkpoint or shipped_weights(), device="cpu")
    out = {"organs": len(organs), "rows": []}
    print(f"{len(organs)} organs; mean |median HU error| over them, spleen median (real {real['spleen']:.0f})")
    for name, body in bodies.items():
        overlap = dice(body, real_body)
        # ``body`` given as a volume on the mask's grid: the same path as --body FILE
        given = Volume(body.astype(np.uint8), mask.affine, {"source": name})
        for seed in (0, 1):
            hu = np.asarray(gen.generate(mask, REPORT, vocabulary="total", seed=seed, body=given).ct.canonical().array)
            err = float(np.mean([abs(float(np.median(hu[ids == voc.id_of(o)])) - real[o]) for o in organs]))
            spleen = float(np.median(hu[ids == voc.id_of("spleen")]))
            out["rows"].append({"body": name, "seed": seed, "body_dice": overlap, "mean_organ_error_hu": err,
                                "spleen_hu": spleen})
            print(f"{name:<28} body Dice {overlap:.3f}  seed {seed}: mean error {err:5.0f} HU, spleen {spleen:5.0f} HU",
                  flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
