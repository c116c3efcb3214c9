"""Windows/s of the training data pipeline (FrameWindows + DataLoader), so loading never starves training."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path


def measure_windows(cache: str | Path, k: int = 2, batch_size: int = 16, workers: int = 0,
                    batches: int = 50, repeats: int = 3, seed: int = 0) -> dict:
    """Median windows/s over ``repeats`` timed runs of ``batches`` batches, after one warm-up run."""
    import torch
    from torch.utils.data import DataLoader

    from tracect.data.windows import FrameWindows, WindowSampler

    ds = FrameWindows(cache, k=k, split=None)
    rates = []
    for rep in range(repeats + 1):
        loader = DataLoader(ds, batch_size=batch_size, sampler=WindowSampler(len(ds), seed=seed + rep),
                            num_workers=workers, persistent_workers=False)
        it = iter(loader)
        next(it)  # worker start-up is not throughput
        t0 = time.perf_counter()
        for _ in range(batches):
            next(it)
        dt = time.perf_counter() - t0
        if rep:  # the first run warms the page cache
            rates.append(batches * batch_size / dt)
        del it, loader
    shape = tuple(ds[0]["image"].shape)
    return {"cache": str(cache), "window_shape": shape, "batch_size": batch_size, "workers": workers,
            "windows_per_s_median": statistics.median(rates), "windows_per_s_runs": rates,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "machine": platform.machine(), "processor": platform.processor() or platform.machine()}
