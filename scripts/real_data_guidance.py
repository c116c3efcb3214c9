"""The real-data table's tissue distances at guidance 1: the phantom-only demo weights and the real x4 run
of ``scripts/real_data_table.py --pseudo-repeat 4`` (``WORK/run_real4``), seeds 0-2, from the held-out
case's pseudo-labels with its report; per-tissue W1 against the real CT as ``tracect evaluate`` scores it.
Writes ``WORK/guidance1.json``.

    PYTHONPATH=src python scripts/real_data_guidance.py --work real16
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tracect.cli.demo import shipped_weights
from tracect.generate.pipeline import Generator
from tracect.generate.outputs import write_outputs
from tracect.io.readers import read_mask
from tracect.labels.vocabulary import get_vocabulary
from tracect.data.grid import PrepareConfig
from tracect.evaluate import realism
from tracect.evaluate.entries import EvalEntry
from tracect.evaluate.harness import case_grid
import real_data_table as r
ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--work", default="real_data")
W = Path(ap.parse_args().work).resolve()
mask = W / "labels/crlm_1006.nii.gz"; ref = r.real_ct_file("crlm_1006")
m = read_mask(mask, get_vocabulary("tissue"))
res_all = {}
for name, ckpt, seeds in (("x4", W / "run_real4", (0, 1, 2)), ("phantom only", shipped_weights(), (0, 1, 2))):
    gen = Generator.from_checkpoint(ckpt, device="cpu")
    for seed in seeds:
        out = W / f"generated/guidance1/{name}_s{seed}.nii.gz"
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            res = gen.generate(m, r.HELDOUT_REPORT, vocabulary="tissue", seed=seed, guidance=1.0)
            write_outputs(res, out, formats=("nifti",), pictures=False, overwrite=True)
        e = EvalEntry(name="c", generated=out, mask=mask, reference=ref, vocabulary="tissue")
        gr = case_grid(e, PrepareConfig(), get_vocabulary("tracect"))
        tm = realism.tissue_map(gr.reference, gr.spacing)
        d = realism.tissue_distances(realism.tissue_quantiles(gr.generated, tm), realism.tissue_quantiles(gr.reference, tm))
        res_all[f"{name} s{seed}"] = {**{k: round(v, 1) for k, v in d.items()}, "mean": round(realism.mean_distance(d), 1)}
        print(name, seed, res_all[f"{name} s{seed}"], flush=True)
json.dump(res_all, open(W / "guidance1.json", "w"), indent=1)
