"""The real-data table's tissue distances at guidance 1: the phantom-only demo weights and the real x4 run
of ``scripts/real_data_table.py --pseudo-repeat 4`` (``WORK/run_real4``), seeds 0-2, from the held-out
case's pseudo-labels with its report; per-tissue W1 against the real CT as ``tracect evaluate`` scores it.
Writes ``WORK/guidance1.json`` and ``WORK/real_data_crlm_1006_guidance1.png`` (real | phantom only |
real x4, seed 0, on the evaluation grid).

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

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

rows = {}
for name in ("phantom only", "x4"):
    e = EvalEntry(name="c", generated=W / f"generated/guidance1/{name}_s0.nii.gz", mask=mask, reference=ref,
                  vocabulary="tissue")
    g = case_grid(e, PrepareConfig(), get_vocabulary("tracect"))
    rows.setdefault("real CT", g.reference)
    rows[("real x4" if name == "x4" else name) + ", guidance 1"] = g.generated
zs = np.linspace(0.15, 0.85, 4) * (rows["real CT"].shape[0] - 1)
fig, axes = plt.subplots(3, 5, figsize=(12.5, 7.8))
for i, (name, vol) in enumerate(rows.items()):
    for k, z in enumerate(zs):
        axes[i, k].imshow(vol[int(round(z))], cmap="gray", vmin=-1000, vmax=1000)
        axes[i, k].set_title(f"{name}, axial {int(round(z))}", fontsize=8)
    axes[i, 4].imshow(vol[:, vol.shape[1] // 2, :], cmap="gray", vmin=-1000, vmax=1000, aspect="auto")
    axes[i, 4].set_title(f"{name}, coronal", fontsize=8)
for a in axes.ravel():
    a.axis("off")
fig.suptitle("crlm_1006 (held out; its pseudo-labels): seed 0, window -1000..1000 HU, 64² evaluation grid", fontsize=9)
fig.tight_layout()
fig.savefig(W / "real_data_crlm_1006_guidance1.png", dpi=90)
