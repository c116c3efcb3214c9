"""Time generation of one volume in both modes with a checkpoint, and keep the volumes, so that two
versions of tracect can be compared on the same model, mask, report, seed, steps and guidance.

    PYTHONPATH=src python scripts/generation_speed.py RUN --out DIR --label new [--slices 128]
    PYTHONPATH=/path/to/other/checkout/src python scripts/generation_speed.py RUN --out DIR --label old
    python scripts/generation_speed.py --compare DIR old new

Each run warms up once (one step), then times ``--repeats`` generations per mode (median) and saves the
canonical HU volume of the last one as ``DIR/LABEL_MODE.npy``. ``--compare`` prints the speed-up of B over A
per mode and the mean and max |ΔHU| between their volumes inside the body. Uses only
``Generator.from_checkpoint(...).generate(mask, report, seed=..., mode=...)``, which every version has.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPORT = ("EXAMINATION: Contrast-enhanced CT of the chest, abdomen and pelvis, arterial phase.\n"
          "FINDINGS: Dense opacification of the aorta. Normal liver attenuation. The spleen is normal.")


def measure(run: str, out: Path, label: str, slices: int, repeats: int, threads: int, modes) -> dict:
    import torch

    from tracect.generate.pipeline import Generator
    from tracect.phantom import make_mask

    torch.set_num_threads(threads)
    gen = Generator.from_checkpoint(run, device="cpu")
    mask = make_mask(slices, seed=123)
    record = {"label": label, "run": run, "slices": slices, "threads": threads, "torch": torch.__version__,
              "machine": platform.processor() or platform.machine(), "modes": {}}
    for mode in modes:
        gen.generate(mask, REPORT, seed=0, mode=mode, steps=1)  # warm-up at the measured shape
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            result = gen.generate(mask, REPORT, seed=0, mode=mode)
            times.append(time.perf_counter() - t)
        np.save(out / f"{label}_{mode}.npy", result.canonical.array.astype(np.float32))
        np.save(out / "labels.npy", result.labels.array)
        record["modes"][mode] = {"seconds": times, "median_s": statistics.median(times),
                                 "steps": result.info["steps"], "guidance": result.info["guidance"],
                                 "windows": result.info["windows"]}
        print(f"{label} {mode}: median {statistics.median(times):.2f} s of {repeats} ({result.info['windows']} windows)")
    (out / f"{label}.json").write_text(json.dumps(record, indent=2))
    return record


def compare(out: Path, a: str, b: str) -> dict:
    ra, rb = (json.loads((out / f"{x}.json").read_text()) for x in (a, b))
    body = np.load(out / "labels.npy") > 0
    rows = {}
    for mode in ra["modes"]:
        if mode not in rb["modes"]:
            continue
        va, vb = np.load(out / f"{a}_{mode}.npy"), np.load(out / f"{b}_{mode}.npy")
        d = np.abs(va - vb)[body]
        rows[mode] = {"speedup": ra["modes"][mode]["median_s"] / rb["modes"][mode]["median_s"],
                      f"{a}_s": ra["modes"][mode]["median_s"], f"{b}_s": rb["modes"][mode]["median_s"],
                      "mean_abs_dhu": float(d.mean()), "max_abs_dhu": float(d.max()),
                      "p99_abs_dhu": float(np.percentile(d, 99))}
        r = rows[mode]
        print(f"{mode}: {a} {r[f'{a}_s']:.2f} s, {b} {r[f'{b}_s']:.2f} s, speed-up x{r['speedup']:.2f}; "
              f"|dHU| inside the body: mean {r['mean_abs_dhu']:.3f}, 99th pct {r['p99_abs_dhu']:.2f}, max {r['max_abs_dhu']:.2f}")
    return rows


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("run", nargs="?")
    p.add_argument("--out", required=True)
    p.add_argument("--label")
    p.add_argument("--slices", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--modes", nargs="+", default=["sequential", "parallel"])
    p.add_argument("--compare", nargs=2, metavar=("A", "B"))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.compare:
        rows = compare(out, *args.compare)
        (out / f"compare_{args.compare[0]}_{args.compare[1]}.json").write_text(json.dumps(rows, indent=2))
        return 0
    measure(args.run, out, args.label, args.slices, args.repeats, args.threads, args.modes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
