"""Sequential (TRACE) vs parallel generation: time per volume and inter-slice coherence, side by side.

Coherence is measured on the generation grid inside the body, for the generated volume and for the
reference CT of the same mask when one is given:

- ``adjacent_mae_hu``: mean |slice[k+1] - slice[k]| (HU); a volume whose neighbours disagree scores high;
- ``warp_error``: the evaluation's reference-free warping error
  (:func:`tracect.evaluate.metrics.warp_error`, defined in docs/evaluation.md): the change between
  neighbours that their own optical flow does not explain, in units of the volume's contrast.
"""

from __future__ import annotations

import time

import numpy as np

from tracect.data.grid import hu_to_unit
from tracect.evaluate.metrics import warp_error


def coherence(hu: np.ndarray, body: np.ndarray, window=(-1000.0, 1000.0)) -> dict:
    """Coherence figures of a canonical volume ``(Z, H, W)`` in HU inside ``body`` ``(Z, H, W)``."""
    diff = [np.abs(hu[k + 1] - hu[k])[body[k] > 0].mean() for k in range(len(hu) - 1) if (body[k] > 0).sum() >= 20]
    return {"adjacent_mae_hu": float(np.mean(diff)) if diff else float("nan"),
            "warp_error": warp_error(hu_to_unit(hu, window), body > 0)}


def compare_modes(checkpoint, mask, report: str = "", reference=None, seed: int = 0, repeats: int = 1,
                  overlap: int = 1) -> dict:
    """Generate ``mask`` in both modes; ``reference`` is a HU Volume on the mask's grid (optional)."""
    from tracect.data.resample import resample_to_grid
    from tracect.generate.pipeline import Generator
    from tracect.io.pairing import check_same_grid

    if reference is not None:
        check_same_grid(reference, mask, ("reference CT", "mask"))
    gen = Generator.from_checkpoint(checkpoint)
    gen.generate(mask, report, seed=seed, steps=2)  # warm-up
    rows = {}
    for mode in ("sequential", "parallel"):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            result = gen.generate(mask, report, seed=seed, mode=mode, overlap=overlap)
            times.append(time.perf_counter() - t)
        body = result.labels.array > 0
        rows[mode] = {"seconds_median": float(np.median(times)), "seconds": times,
                      **coherence(result.canonical.array, body)}
    out = {"slices": int(result.canonical.shape[0]), "grid": list(result.canonical.shape),
           "steps": result.info["steps"], "windows": result.info["windows"], "modes": rows,
           "speedup_parallel": rows["sequential"]["seconds_median"] / rows["parallel"]["seconds_median"]}
    if reference is not None:
        ref = resample_to_grid(reference.canonical(), result.canonical.affine, result.canonical.shape,
                               order=1, cval=-1024.0).array
        out["reference"] = coherence(ref, result.labels.array > 0)
    return out
