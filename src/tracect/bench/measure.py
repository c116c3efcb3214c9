"""Measurement helpers of the benchmarks: peak resident memory, handing freed heap back, the device's
matmul peak, and running one measurement in a fresh Python process.

Peak memory on Linux: the kernel keeps a process's peak resident size (``VmHWM``) itself, and writing 5
to ``/proc/self/clear_refs`` resets it to the current size, so nothing runs beside the measured code (a
sampling thread would compete for the GIL with the many small operations of the sequential sampler and
slow it down tenfold).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np


def rss_bytes() -> int:
    """This process's resident set size now, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def hwm_bytes() -> int:
    """This process's peak resident set size (since start, or since :class:`PeakRSS` reset it), bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def trim_heap() -> None:
    """Collect garbage and hand freed heap back to the system (glibc), so that a measurement does not
    start with another's working set cached."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


class PeakRSS:
    """The resident size at the start of a block (``start``) and its peak during it (``peak``), bytes.

    Blocks nest: the kernel keeps one high-water mark per process, which each block resets as it starts,
    so a block hands the mark reached so far to the blocks around it before resetting it."""

    _open: list["PeakRSS"] = []

    def __enter__(self):
        reached = hwm_bytes()
        for outer in PeakRSS._open:
            outer._seen = max(outer._seen, reached)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        self.start = self._seen = rss_bytes()
        PeakRSS._open.append(self)
        return self

    def __exit__(self, *exc):
        PeakRSS._open.remove(self)
        self.peak = max(self._seen, hwm_bytes(), rss_bytes())
        for outer in PeakRSS._open:
            outer._seen = max(outer._seen, self.peak)


def matmul_peak(device: str = "cpu", n: int | None = None, repeats: int = 5) -> dict:
    """Measured FLOP/s of square matmuls (fp32; on CUDA also bf16): the device's practical peak."""
    import torch

    dev = torch.device(device)
    out = {}
    dtypes = [torch.float32] + ([torch.bfloat16] if dev.type == "cuda" else [])
    n = n or (8192 if dev.type == "cuda" else 2048)
    for dt in dtypes:
        a = torch.randn(n, n, device=dev, dtype=dt)
        b = torch.randn(n, n, device=dev, dtype=dt)
        times = []
        for _ in range(repeats + 1):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            a @ b
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        out[str(dt).replace("torch.", "")] = 2 * n ** 3 / float(np.median(times[1:]))
    return out


@dataclass
class FreshRun:
    """What a fresh process returned: ``status`` ok / timeout / oom / failed, the JSON object it printed
    last (``value``), a short ``note`` when it failed, and the lines it printed before."""

    status: str
    value: dict | None = None
    note: str = ""
    lines: list[str] = field(default_factory=list)


def _address_space_limit(limit_bytes: int):
    def apply():  # in the child, before it starts: allocations past the limit fail instead of swapping
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    return apply


# glibc raises its mmap threshold each time a large mmapped block is freed, so whether a later block of
# that size comes from the heap (and stays resident after it is freed) depends on the allocation history:
# resident peaks of one run then vary by a few MiB from process to process. A fixed threshold turns that
# adjustment off; a measurement that compares peaks of a few MiB runs its processes with it.
FIXED_MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def in_fresh_process(module: str, args: list[str], timeout: float | None = None,
                     memory_limit_bytes: int | None = None, env: dict[str, str] | None = None) -> FreshRun:
    """Run ``python -m module *args`` in a fresh process, so that no measurement inherits another's
    allocator pools, caches or freed memory; the module prints its result as JSON on its last line. A
    process that runs out of memory (or is killed for it, or passes ``memory_limit_bytes`` of address
    space) is ``oom``, one past ``timeout`` seconds ``timeout``. ``env`` adds to the inherited environment
    (e.g. :data:`FIXED_MMAP_THRESHOLD`)."""
    cmd = [sys.executable, "-m", module, *args]
    limit = _address_space_limit(int(memory_limit_bytes)) if memory_limit_bytes else None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
                           preexec_fn=limit)
    except subprocess.TimeoutExpired:
        return FreshRun("timeout", note=f"over {timeout:.0f} s")
    lines = (r.stdout or "").strip().splitlines()
    if r.returncode != 0 or not lines:
        err = " ".join((r.stderr or "").strip().splitlines()[-3:])
        oom = any(m in err.lower() for m in ("out of memory", "can't allocate memory", "memoryerror", "std::bad_alloc"))
        status = "oom" if (oom or r.returncode in (-9, 137)) else "failed"
        return FreshRun(status, note=err[-300:] or f"exit code {r.returncode}", lines=lines)
    return FreshRun("ok", json.loads(lines[-1]), lines=lines[:-1])
