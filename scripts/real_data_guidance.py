"""The real-data table's tissue distances at guidance 1: the phantom-only demo weights and the real x4 run
of ``scripts/real_data_table.py --pseudo-repeat 4`` (``WORK/run_real4``), seeds 0-2, from the held-out
case's pseudo-labels with its report; per-tissue W1 against the real CT as ``tracect evaluate`` scores it.
Writes ``WORK/guidance1.json`` and ``WORK/real_data_crlm_1006_guidance1.png`` (real | phantom only |
real x4, seed 0, on the evaluation grid). Volumes already generated are reused.

    PYTHONPATH=src python scripts/real_data_guidance.py --work real16
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_data_table import HELDOUT_REPORT, plot_montage, real_ct_file  # noqa: E402

HELD_OUT = "crlm_1006"
SEEDS = (0, 1, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="real_data", help="the real-data table's WORK folder")
    work = Path(ap.parse_args().work).resolve()
    from tracect.cli.demo import shipped_weights
    from tracect.data.grid import PrepareConfig
    from tracect.evaluate import realism
    from tracect.evaluate.entries import EvalEntry
    from tracect.evaluate.harness import case_grid
    from tracect.generate.outputs import write_outputs
    from tracect.generate.pipeline import Generator
    from tracect.io.readers import read_mask
    from tracect.labels.vocabulary import get_vocabulary

    mask_path, ref = work / "labels" / f"{HELD_OUT}.nii.gz", real_ct_file(HELD_OUT)
    mask = read_mask(mask_path, get_vocabulary("tissue"))
    results, ref_q, rows = {}, None, {}
    for name, label, ckpt in (("x4", "real x4", work / "run_real4"), ("phantom only", "phantom only", shipped_weights())):
        gen = None
        for seed in SEEDS:
            out = work / "generated" / "guidance1" / f"{name}_s{seed}.nii.gz"
            if not out.is_file():
                gen = gen or Generator.from_checkpoint(ckpt, device="cpu")
                out.parent.mkdir(parents=True, exist_ok=True)
                res = gen.generate(mask, HELDOUT_REPORT, vocabulary="tissue", seed=seed, guidance=1.0)
                write_outputs(res, out, formats=("nifti",), pictures=False, overwrite=True)
            g = case_grid(EvalEntry(name=f"{name}_s{seed}", generated=out, mask=mask_path, reference=ref,
                                    vocabulary="tissue"), PrepareConfig(), get_vocabulary("tracect"))
            if ref_q is None:  # the real CT's tissues: the same for every volume
                tissues = realism.tissue_map(g.reference, g.spacing)
                ref_q = realism.tissue_quantiles(g.reference, tissues)
                rows["real CT"] = g.reference
            d = realism.tissue_distances(realism.tissue_quantiles(g.generated, tissues), ref_q)
            results[f"{name} s{seed}"] = {**{k: round(v, 1) for k, v in d.items()},
                                          "mean": round(realism.mean_distance(d), 1)}
            print(name, seed, results[f"{name} s{seed}"], flush=True)
            if seed == SEEDS[0]:
                rows[f"{label}, guidance 1"] = g.generated
    (work / "guidance1.json").write_text(json.dumps(results, indent=1))
    rows = {k: rows[k] for k in ("real CT", "phantom only, guidance 1", "real x4, guidance 1")}
    plot_montage(rows, f"{HELD_OUT} (held out; its pseudo-labels): seed {SEEDS[0]}, window -1000..1000 HU, "
                       "64² evaluation grid", work / f"real_data_{HELD_OUT}_guidance1.png")


if __name__ == "__main__":
    main()
