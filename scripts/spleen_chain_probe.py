"""Is a wrong organ on the TotalSegmentator mask the sequential chain's doing, or the model's?

Generates from the `total` mask of the example in ../shared/data/totalseg-example (its non-contrast
report) three ways, each with seeds 0 and 1: the sequential chain top down (the default), parallel mode
(no chain: every window denoised together), and the chain bottom up (the mask's slices reversed, the
result reversed back; the model then also sees the anatomy upside down, so read it as a probe), and the
chain with the spleen's voxels labelled liver (the place without the spleen's label). Prints
each organ's median HU on the mask's grid beside the real CT's.

    PYTHONPATH=src python scripts/spleen_chain_probe.py [CHECKPOINT] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

TOTALSEG = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalseg-example"
REPORT = "EXAMINATION: Non-contrast CT of the abdomen.\nFINDINGS: No acute abnormality in the abdomen."
ORGANS = ("spleen", "liver", "kidney_left", "kidney_right", "stomach", "pancreas", "aorta")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", default=None, help="default: the shipped demo weights")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from tracect.cli.demo import shipped_weights
    from tracect.generate.pipeline import Generator
    from tracect.io.readers import read_mask, read_volume
    from tracect.io.volume import volume_from
    from tracect.labels.vocabulary import get_vocabulary

    voc = get_vocabulary("total")
    mask = read_mask(TOTALSEG / "seg.nii.gz", voc).canonical()
    real = read_volume(TOTALSEG / "ct.nii.gz").canonical().array
    gen = Generator.from_checkpoint(args.checkpoint or shipped_weights(), device="cpu")
    ids = np.asarray(mask.array)
    out = {"real": {o: float(np.median(real[ids == voc.id_of(o)])) for o in ORGANS}}
    reversed_mask = volume_from("reversed", ids[::-1].copy(), mask.affine, {})
    # the spleen's voxels given the liver's label: is it the place or the label the model draws as air?
    as_liver = volume_from("spleen as liver", np.where(ids == voc.id_of("spleen"), voc.id_of("liver"), ids),
                           mask.affine, {})
    for name, vol, settings, flip in (("sequential", mask, {}, False),
                                      ("parallel", mask, {"mode": "parallel"}, False),
                                      ("sequential bottom-up", reversed_mask, {}, True),
                                      ("sequential, spleen labelled liver", as_liver, {}, False)):
        for seed in (0, 1):
            t = time.perf_counter()
            ct = np.asarray(gen.generate(vol, REPORT, vocabulary="total", seed=seed, **settings).ct.canonical().array)
            ct = ct[::-1] if flip else ct
            out[f"{name} s{seed}"] = {o: float(np.median(ct[ids == voc.id_of(o)])) for o in ORGANS}
            print(f"{name}, seed {seed} ({time.perf_counter() - t:.0f} s):",
                  {o: round(v) for o, v in out[f"{name} s{seed}"].items()}, flush=True)
    print("real:", {o: round(v) for o, v in out["real"].items()})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
