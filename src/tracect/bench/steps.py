"""The quality cost of fewer sampler steps, measured against a long (reference) sampling run.

For held-out windows of a prepared cache, each window is generated from the same initial noise with
``steps`` in a list (deterministic DDIM: more steps = a finer solution of the same ODE). Reported per
step count: seconds per window, the mean absolute HU difference to the reference-step sample inside the
body (the discretisation error), and the per-organ median-HU error against the real window (what a
user sees as fidelity).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from tracect.data.grid import unit_to_hu
from tracect.data.windows import FrameWindows
from tracect.diffusion.sampler import ddim_sample
from tracect.generate.pipeline import Generator
from tracect.model.conditioning import build_condition, make_denoise


def organ_median_errors(fake_hu: np.ndarray, real_hu: np.ndarray, mask: np.ndarray, names: dict) -> dict:
    """|median HU generated - median HU real| per organ present with >= 20 pixels."""
    out = {}
    for i, name in names.items():
        sel = mask == i
        if sel.sum() >= 20:
            out[name] = float(abs(np.median(fake_hu[sel]) - np.median(real_hu[sel])))
    return out


@torch.no_grad()
def measure_steps(checkpoint, cache, steps=(5, 10, 25, 50), reference: int = 200, windows: int = 12,
                  split: str = "test", seed: int = 0, guidance: float | None = None) -> dict:
    gen = Generator.from_checkpoint(checkpoint)
    K = gen.config.model.frames
    ds = FrameWindows(cache, k=K, split=split)
    picks = [ds[int(i)] for i in np.linspace(0, len(ds) - 1, min(windows, len(ds))).round()]
    window = gen.prepare.hu_window
    guidance = gen.config.diffusion.guidance if guidance is None else guidance
    cond = build_condition(gen.text, torch.stack([p["mask"] for p in picks]), [p["report"] for p in picks],
                           torch.stack([p["spacing"] for p in picks]), torch.stack([p["position"] for p in picks]),
                           gen.device, null=guidance != 1.0)
    denoise = make_denoise(gen.model, cond, gen.config.diffusion.train_timesteps, gen.autocast, guidance)
    shape = (len(picks), K, *picks[0]["image"].shape[1:])

    def sample(n):
        gens = [torch.Generator().manual_seed(seed + i) for i in range(len(picks))]
        t0 = time.perf_counter()
        x = ddim_sample(denoise, gen.schedule, shape, gens, n, device=gen.device).cpu().numpy()
        return unit_to_hu(x, window), (time.perf_counter() - t0) / len(picks)

    ref, ref_s = sample(reference)
    real = unit_to_hu(np.stack([p["image"].numpy() for p in picks]), window)
    masks = np.stack([p["mask"].numpy() for p in picks])
    body = masks > 0
    names = {i: n for i, n in gen.vocabulary.labels.items() if n != "body"}
    rows = []
    for n in list(steps) + [reference]:
        hu, sec = (ref, ref_s) if n == reference else sample(n)
        organ = [organ_median_errors(hu[b], real[b], masks[b], names) for b in range(len(picks))]
        per_organ = {}
        for d in organ:
            for k, v in d.items():
                per_organ.setdefault(k, []).append(v)
        rows.append({"steps": n, "seconds_per_window": sec,
                     "mae_to_reference_hu": float(np.abs(hu - ref)[body].mean()),
                     "organ_median_hu_error": float(statistics.mean(statistics.mean(v) for v in per_organ.values())),
                     "per_organ": {k: float(np.mean(v)) for k, v in per_organ.items()}})
    return {"checkpoint": str(gen.checkpoint), "windows": len(picks), "reference_steps": reference,
            "split": split, "guidance": guidance, "rows": rows, "device": str(gen.device),
            "threads": torch.get_num_threads(), "torch": torch.__version__}
