"""Cohort throughput: ``n`` volumes generated one at a time, then in lockstep (sequential mode, their
windows sharing each network call), side by side in one process with one model.

The masks are phantom torsos of different lengths (``slices``, ``slices - 8``, ...) and the reports
alternate between an arterial and a non-contrast one, so a lockstep batch mixes lengths and reports as
a real cohort does. Reported: seconds for each way, volumes per minute, the speed-up, and how far each
lockstep volume is from the same volume made alone (|ΔHU| over its generation grid; per-volume
generators make them equal but for float rounding).
"""

from __future__ import annotations

import time

import numpy as np

REPORTS = ("Contrast-enhanced CT of the abdomen, arterial phase. Dense opacification of the aorta.",
           "Non-contrast CT of the abdomen. Normal liver attenuation.")


def measure_cohort(generator, volumes: int = 8, slices: int = 64, size: int | None = None,
                   batch_volumes: int | None = None, steps: int | None = None, log=print) -> dict:
    """Generate ``volumes`` phantom masks alone and in lockstep with ``generator`` (a loaded
    :class:`~tracect.generate.pipeline.Generator`); ``size``: the phantom's in-plane matrix."""
    import torch

    from tracect.generate.sampling import Sampling
    from tracect.phantom import make_mask

    lengths = [max(8, slices - 8 * (k % 4)) for k in range(volumes)]
    kw = {} if size is None else {"size": size}
    masks = [make_mask(n, seed=k, **kw) for k, n in enumerate(lengths)]
    reports = [REPORTS[k % 2] for k in range(volumes)]
    sampling = Sampling(steps=steps)
    generator.generate(masks[0], reports[0], seed=0, steps=1)  # warm-up: kernels, caches, text encoder

    def sync():
        if generator.device.type == "cuda":
            torch.cuda.synchronize()

    sync()
    t = time.perf_counter()
    alone = [generator.generate(m, r, seed=k, sampling=sampling).canonical.array
             for k, (m, r) in enumerate(zip(masks, reports))]
    sync()
    t_alone = time.perf_counter() - t
    batch = batch_volumes or volumes
    t = time.perf_counter()
    plans = (generator.plan(m, r, seed=k, sampling=sampling, key=k) for k, (m, r) in enumerate(zip(masks, reports)))
    together = {plan.key: v.canonical.array for plan, v in generator.generate_many(plans, sampling, batch)}
    sync()
    t_together = time.perf_counter() - t
    diffs = [np.abs(together[k] - alone[k]) for k in range(volumes)]
    out = {"volumes": volumes, "slices": lengths, "grid": list(alone[0].shape[1:]), "batch_volumes": batch,
           "steps": sampling.resolved(generator.config.diffusion).steps, "device": str(generator.device),
           "threads": torch.get_num_threads(), "torch": torch.__version__,
           "seconds_one_at_a_time": t_alone, "seconds_lockstep": t_together,
           "volumes_per_minute_one_at_a_time": 60 * volumes / t_alone,
           "volumes_per_minute_lockstep": 60 * volumes / t_together, "speedup": t_alone / t_together,
           "max_abs_dhu": float(max(d.max() for d in diffs)), "mean_abs_dhu": float(np.mean([d.mean() for d in diffs]))}
    if log:
        log(f"{volumes} volumes ({min(lengths)}-{max(lengths)} slices): one at a time {t_alone:.1f} s, "
            f"lockstep ({batch} at a time) {t_together:.1f} s, x{out['speedup']:.2f}; "
            f"|dHU| vs alone: mean {out['mean_abs_dhu']:.3g}, max {out['max_abs_dhu']:.3g}")
    return out
