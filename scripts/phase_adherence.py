"""Does the model follow the report's contrast phase? Aorta median HU of generated frame pairs.

For windows of a prepared phantom cache that show the aorta, each window is generated from its own
masks and noise three times: with a fixed arterial-phase report, a fixed non-contrast report, and its
own report; printed next to the real aorta HU by the case's true phase. Only cases the run did not
train on are used (the run's ``data.json`` lists its training cases): give a cache of a held-out draw
(``tracect phantom --split test --prefix heldout``), or the run's own cache for its val and test cases.

    PYTHONPATH=src python scripts/phase_adherence.py RUN CACHE [--windows 24] [--samplers 1:25 3:12 3:25]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from tracect.data.grid import unit_to_hu
from tracect.data.windows import FrameWindows
from tracect.diffusion.sampler import ddim_sample
from tracect.generate.pipeline import Generator
from tracect.model.conditioning import build_condition, make_denoise

ARTERIAL = ("EXAMINATION: Contrast-enhanced CT of the chest and abdomen, arterial phase. "
            "FINDINGS: Dense opacification of the aorta, normal in calibre.")
NON_CONTRAST = "EXAMINATION: Non-contrast CT of the chest and abdomen. FINDINGS: The aorta is normal in calibre."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("cache")
    ap.add_argument("--windows", type=int, default=24)
    ap.add_argument("--samplers", nargs="+", default=["1:25", "3:12", "3:25"], help="guidance:steps")
    args = ap.parse_args()
    ds = FrameWindows(args.cache, k=2, split=None)
    aorta = ds.cache.vocabulary.id_of("aorta")
    gen = Generator.from_checkpoint(args.run)
    window = gen.prepare.hu_window
    data = Path(args.run) / "data.json"
    trained = set(json.loads(data.read_text())["cases"]) if data.is_file() else None
    if trained is None:
        raise SystemExit(f"{args.run}: no data.json, so the cases it trained on are unknown; adherence is "
                         "measured on held-out cases only")
    heldout = {m["case"] for m in ds.cache.cases} - trained
    if not heldout:
        raise SystemExit(f"every case of {args.cache} is a training case of {args.run}")
    candidates = [i for i in range(0, len(ds), 5) if ds.cache.cases[int(ds.index[i][0])]["case"] in heldout
                  and (ds[i]["mask"] == aorta).sum() > 30]
    print(f"{len(heldout)} held-out cases, {len(candidates)} windows with an aorta")
    picks = sorted(np.random.default_rng(0).choice(candidates, min(args.windows, len(candidates)), replace=False))
    items = [ds[int(i)] for i in picks]
    phase = np.array(["arterial" if "arterial" in it["report"] else "non-contrast" for it in items])

    def aorta_hu(frames):
        return np.array([np.median(unit_to_hu(f, window)[it["mask"].numpy() == aorta]) for f, it in zip(frames, items)])

    def by_phase(values):
        return {p: round(float(values[phase == p].mean())) for p in sorted(set(phase))}

    print("real aorta HU by true phase:", by_phase(aorta_hu([it["image"].numpy() for it in items])))
    for spec in args.samplers:
        w, steps = float(spec.split(":")[0]), int(spec.split(":")[1])
        out = {}
        for name, report in (("arterial", ARTERIAL), ("non-contrast", NON_CONTRAST), ("own", None)):
            reports = [report or it["report"] for it in items]
            cond = build_condition(gen.text, torch.stack([it["mask"] for it in items]), reports,
                                   torch.stack([it["spacing"] for it in items]),
                                   torch.stack([it["position"] for it in items]), gen.device, null=w != 1.0)
            denoise = make_denoise(gen.model, cond, gen.config.diffusion.train_timesteps, gen.autocast, w)
            gens = [torch.Generator().manual_seed(i) for i in range(len(items))]
            x = ddim_sample(denoise, gen.schedule, (len(items), 2, *items[0]["image"].shape[1:]), gens, steps,
                            device=gen.device)
            out[name] = aorta_hu(x.cpu().numpy())
        print(f"guidance {w:g}, {steps} steps: arterial report {out['arterial'].mean():.0f} HU, non-contrast report "
              f"{out['non-contrast'].mean():.0f} HU, own report by true phase {by_phase(out['own'])}")


if __name__ == "__main__":
    main()
