"""Peak resident memory of generating N slices in a fresh process, outputs excluded.

    PYTHONPATH=src python scripts/generation_memory.py RUN MASK N {sequential,parallel}

The process loads the model, warms up on 4 slices (allocator pools, lazy imports), then generates the
mask's slab repeated to N slices and prints JSON: seconds, peak RSS, the bytes of the input and output
arrays, and the peak less those arrays.
"""
import resource, sys, gc, json, time
import numpy as np
from tracect.generate.pipeline import Generator
from tracect.io import Volume, read_mask
run, maskp, n, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
g = Generator.from_checkpoint(run, device="cpu")
src = read_mask(maskp).canonical()
def mask(k):
    return Volume(np.concatenate([src.array] * (k // src.shape[0] + 1))[:k], src.affine)
g.generate(mask(4), "", steps=1, mode=mode)
gc.collect()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
m = mask(n)
t = time.perf_counter()
out = g.generate(m, "", mode=mode)
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
extra = (out.ct.array.nbytes + out.canonical.array.nbytes + out.labels.array.nbytes + m.array.nbytes) / 1024
print(json.dumps({"slices": n, "mode": mode, "seconds": dt, "base_kib": base, "peak_kib": peak, "outputs_kib": extra,
                  "peak_less_outputs_mib": (peak - extra) / 1024, "added_mib": max(0, peak - base - extra) / 1024}))
