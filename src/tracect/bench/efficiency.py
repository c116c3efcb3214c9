"""Peak memory and time per volume: the frame models (sequential and parallel) vs the 3D baseline.

The frame models are TRACE's frame pair (``cpu``: K = 2, one new slice per network call) and the
same network with windows of four frames (``cpu-k4``: three new slices per call; the frames are the
2D network's channels, so a call costs about the same). Each is sampled as
:data:`tracect.bench.specs.MODELS` says: parallel mode at 16 windows per call for K = 2 (the generator's
default) and at 8 for K = 4 (its memory then no longer grows with the number of windows batched).

Every measurement runs in a fresh subprocess (``python -m tracect.bench.efficiency --one JSON``):
the models are untrained (timing and memory do not depend on the weights) and built from the
``cpu`` / ``cpu-k4`` / ``cpu-3d`` presets at the requested slice size, so all have the same blocks,
widths, conditioning, steps and guidance. Sequential mode includes the default burn-in
(:data:`tracect.generate.sampling.DEFAULT_WARMUP` slices), as ``tracect generate`` runs it. Each
subprocess generates the measured volume once with one step
(warm-up: kernels, caches, first-call costs at the measured shape), returns freed heap to the system,
then measures:

- CPU memory: the peak resident set size during the generate call (the kernel's high-water mark,
  reset just before the call) minus the resident size just before it, so the Python, torch and
  model footprint is left out; and, for flatness in the number of slices, the whole process's peak
  less the volume's own input and output arrays (the measure of ``tests/test_generate.py``);
- GPU memory: ``torch.cuda.max_memory_allocated`` during the call minus the allocation before it;
- FLOPs: one network evaluation counted by ``torch.utils.flop_counter`` at the window's real shape,
  times windows x steps x (2 with classifier-free guidance);
- the device's matmul peak is measured in the same run (square matmuls), so the utilisation is a
  ratio of two measurements.

A measurement that runs out of memory is recorded as ``oom``; one past its time limit as ``timeout``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from tracect.bench.measure import PeakRSS, in_fresh_process, matmul_peak, trim_heap
from tracect.bench.specs import FRAME_MODELS, MODELS

# (model, preset, mode, windows per network call in parallel mode): the samplings of
# tracect.bench.specs.MODELS measured here
MEASURED = (("frame-pair", "sequential"), ("frame-pair", "parallel"), ("frame-4", "sequential"),
            ("frame-4", "parallel"), ("3d", "sequential"))
CONFIGS = tuple((m, MODELS[m].preset, mode, MODELS[m].samplings[mode].chunk if mode == "parallel" else None)
                for m, mode in MEASURED)
REPORT = ("Contrast-enhanced CT of the abdomen, arterial phase. Normal liver size and attenuation. "
          "No focal hepatic lesion. The spleen is normal in size.")


def _generator(preset: str, size: int, device: str, text_encoder: str | None = None):
    import torch

    from tracect.config import load_config
    from tracect.data.grid import PrepareConfig
    from tracect.generate.pipeline import Generator
    from tracect.labels.vocabulary import get_vocabulary
    from tracect.model.denoiser import FrameDenoiser

    cfg = load_config(preset)
    cfg = cfg.replace(model={"image_size": size, **({"text_encoder": text_encoder} if text_encoder else {})})
    torch.manual_seed(0)
    model = FrameDenoiser(cfg.model).eval()
    data = {"prepare": PrepareConfig(size=size).to_json(), "vocabulary": get_vocabulary("tracect").to_json(),
            "slice_thickness_mm": [0.5, 10.0]}
    return Generator(model, cfg, data, torch.device("cpu")), cfg, model


def bench_mask(n: int, size: int):
    """An ``n``-slice phantom torso mask of ``size``² whose body spans every slice (thickness chosen to
    fit). Above 64 px the 64 px phantom is upsampled (nearest neighbour): building the anatomy at 512²
    would cost more than the measurement, and timing does not depend on the labels' fine detail."""
    from tracect.io.volume import Volume
    from tracect.phantom.generator import make_mask

    base = min(size, 64)
    m = make_mask(n, seed=0, size=base, pixel_spacing=384.0 / base, slice_thickness=min(4.0, 480.0 / n))
    if size == base:
        return m
    f = size // base
    arr = m.array.repeat(f, axis=1).repeat(f, axis=2)
    # new index i maps to old index i / f - (f - 1) / (2 f) along y and x (voxel centres kept)
    S = np.diag([1.0, 1.0 / f, 1.0 / f, 1.0])
    S[1:3, 3] = -(f - 1) / (2.0 * f)
    return Volume(arr, m.affine @ S, dict(m.meta))


def measure_one(spec: dict) -> dict:
    """One measurement (run inside a fresh process): ``spec`` has model, preset, mode, n, size, steps, device."""
    import torch

    from tracect.model.denoiser import forward_flops

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    gen, cfg, model = _generator(spec["preset"], spec["size"], "cpu", spec.get("text_encoder"))
    mask = bench_mask(spec["n"], spec["size"])
    steps, mc = int(spec["steps"]), cfg.model
    guided = cfg.diffusion.guidance != 1.0
    dev = torch.device(spec["device"])
    # FLOPs at the real window shape (on the CPU copy, before the model moves)
    if mc.kind == "3d":
        from tracect.generate.pipeline import volume_window

        K = volume_window(mc, spec["n"])
    else:
        K = mc.frames
    if dev.type != "cpu":
        from tracect.runtime import autocast_factory

        gen.model = model = model.to(dev)
        gen.device = dev
        gen.autocast = autocast_factory(dev, cfg.train.precision)
    per_eval = forward_flops(model, frames=K)
    sampling = MODELS[spec["model"]].sampling(spec["mode"], mc)
    # warm-up at the measured shape (kernels, caches, first-call costs)
    gen.generate(mask, REPORT, seed=0, sampling=sampling, steps=1)
    runs, peaks, process, gpu_peaks, result = [], [], [], [], None
    for _ in range(max(1, int(spec.get("repeats", 1)))):
        # hand freed heap back to the system (the previous run's output included), so that no run starts
        # with another's working set cached
        result = None
        trim_heap()
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        with PeakRSS() as rss:
            t = time.perf_counter()
            result = gen.generate(mask, REPORT, seed=0, sampling=sampling, steps=steps)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            runs.append(time.perf_counter() - t)
        peaks.append((rss.peak - rss.start) / 2 ** 20)
        process.append(rss.peak / 2 ** 20)
        if dev.type == "cuda":
            gpu_peaks.append((torch.cuda.max_memory_allocated() - base) / 2 ** 20)
    seconds = float(np.median(runs))
    # every window the call ran (burn-in included) x steps x (2 with classifier-free guidance)
    flops = per_eval * result.info["windows"] * steps * (2 if guided else 1)
    out = {**spec, "status": "ok", "seconds": seconds, "seconds_runs": runs,
           "slices_generated": int(result.canonical.shape[0]), "windows": result.info["windows"],
           "flops": int(flops), "flops_per_s": flops / seconds, "rss_delta_mib": max(peaks),
           "output_mib": (result.canonical.array.nbytes + result.ct.array.nbytes) / 2 ** 20}
    # the whole process's peak less the volume's own arrays (input mask, output CT on both grids)
    out["process_peak_less_arrays_mib"] = max(process) - out["output_mib"] - mask.array.nbytes / 2 ** 20
    if dev.type == "cuda":
        out["gpu_peak_mib"] = max(gpu_peaks)
    out["peak_mib"] = out["gpu_peak_mib"] if dev.type == "cuda" else out["rss_delta_mib"]
    return out


def run_efficiency(slices=(32, 64, 128, 256), size: int = 64, steps: int = 5, device: str = "cpu",
                   threads: int | None = None, timeout: float = 1800.0, log=print,
                   text_encoder: str | None = None, repeats: int = 3) -> dict:
    """All measurements, each in a fresh subprocess; returns the results with the device record.
    ``repeats``: timed runs per measurement after the warm-up (time: their median; memory: their max)."""
    import torch

    from tracect import __version__

    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    peak = matmul_peak(device)
    # the presets autocast to bf16 on CUDA: utilisation is measured against the peak of that dtype
    compute = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
    rows = []
    for n in slices:
        for model, preset, mode, chunk in CONFIGS:
            spec = {"model": model, "preset": preset, "mode": mode, "chunk": chunk, "n": int(n), "size": int(size),
                    "steps": int(steps), "device": device, "threads": threads, "text_encoder": text_encoder,
                    "repeats": int(repeats)}
            run = in_fresh_process("tracect.bench.efficiency", ["--one", json.dumps(spec)], timeout)
            row = run.value if run.status == "ok" else {**spec, "status": run.status, "note": run.note}
            if row["status"] == "ok":
                row["utilisation"] = row["flops_per_s"] / peak[compute]
                if log:
                    log(f"{model:<10} {mode:<10} N={n:<4} {row['seconds']:8.2f} s  peak {row['peak_mib']:8.1f} MiB  "
                        f"{row['flops'] / 1e12:7.3f} TFLOP  {row['flops_per_s'] / 1e9:7.1f} GFLOP/s")
            elif log:
                log(f"{model:<10} {mode:<10} N={n:<4} {row['status']}: {row.get('note', '')}")
            rows.append(row)
    dev_name = torch.cuda.get_device_name(0) if device.startswith("cuda") else (platform.processor() or platform.machine())
    return {"device": device, "device_name": dev_name, "cpu_count": os.cpu_count(), "threads": threads,
            "torch_version": torch.__version__, "tracect_version": __version__, "size": size, "steps": steps,
            "repeats": repeats,
            "matmul_peak_flops_per_s": peak, "compute_dtype": compute, "rows": rows, "ratios": ratios(rows)}


def ratios(rows: list[dict]) -> dict:
    """Per frame model: its time and peak memory / the 3D model's per N and mode, and the flatness of its
    memory (largest N / smallest N)."""
    ok = {(r["model"], r["mode"], r["n"]): r for r in rows if r["status"] == "ok"}
    out = {}
    for fm in FRAME_MODELS:
        mine = {}
        for n in sorted({r["n"] for r in rows}):
            d3 = ok.get(("3d", "sequential", n))
            for mode in ("sequential", "parallel"):
                fp = ok.get((fm, mode, n))
                if fp and d3:
                    mine.setdefault(mode, {})[n] = {"time_ratio": fp["seconds"] / d3["seconds"],
                                                    "memory_ratio": fp["peak_mib"] / max(d3["peak_mib"], 1e-9)}
        for mode in ("sequential", "parallel"):
            ns = sorted(n for (m, md, n) in ok if m == fm and md == mode)
            if len(ns) >= 2:
                lo, hi = ok[(fm, mode, ns[0])], ok[(fm, mode, ns[-1])]
                mine.setdefault("memory_flatness", {})[mode] = {
                    "n": [ns[0], ns[-1]], "ratio": hi["peak_mib"] / max(lo["peak_mib"], 1e-9)}
                if "process_peak_less_arrays_mib" in lo and "process_peak_less_arrays_mib" in hi:
                    mine["memory_flatness"][mode]["process_ratio"] = (
                        hi["process_peak_less_arrays_mib"] / lo["process_peak_less_arrays_mib"])
        if mine:
            out[fm] = mine
    return out


def markdown(result: dict) -> str:
    peak = result["matmul_peak_flops_per_s"]
    compute = result.get("compute_dtype", "float32")
    lines = [f"Device: {result['device_name']} ({result['device']}), {result['threads']} threads, torch "
             f"{result['torch_version']}; {result['size']}x{result['size']} slices, {result['steps']} steps, "
             f"guidance as in the presets; time: median of {result.get('repeats', 1)} run(s) after a warm-up, "
             f"memory: their largest peak; matmul peak (fp32) {peak['float32'] / 1e9:.1f} GFLOP/s"
             + (f", bf16 {peak['bfloat16'] / 1e12:.1f} TFLOP/s" if "bfloat16" in peak else "") + ".", "",
             f"| model | mode | slices | windows | time (s) | peak memory (MiB) | TFLOP / volume | GFLOP/s | of {compute} matmul peak |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        mode = r["mode"] + (f" ({r['chunk']} / call)" if r.get("chunk") else "")
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {mode} | {r['n']} | | **{r['status']}** | | | | |")
            continue
        lines.append(f"| {r['model']} | {mode} | {r['n']} | {r['windows']} | {r['seconds']:.2f} | {r['peak_mib']:.1f} | "
                     f"{r['flops'] / 1e12:.3f} | {r['flops_per_s'] / 1e9:.1f} | {r['flops_per_s'] / peak[compute]:.1%} |")
    rat = result["ratios"]
    lines += ["", "| model | slices | mode | time / 3D | memory / 3D |", "| --- | ---: | --- | ---: | ---: |"]
    for fm, mine in rat.items():
        for mode in ("sequential", "parallel"):
            for n, v in sorted(mine.get(mode, {}).items(), key=lambda kv: int(kv[0])):
                lines.append(f"| {fm} | {n} | {mode} | {v['time_ratio']:.2f} | {v['memory_ratio']:.3f} |")
    lines.append("")
    for fm, mine in rat.items():
        for mode, v in mine.get("memory_flatness", {}).items():
            line = (f"{fm} {mode}: at {v['n'][1]} slices / at {v['n'][0]} slices, peak memory above the "
                    f"loaded process {v['ratio']:.3f}")
            if "process_ratio" in v:
                line += f"; the whole process's peak less the volume's input and output arrays {v['process_ratio']:.3f}"
            lines.append(line + ".  ")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for (model, _, mode, _) in CONFIGS:
        rows = [r for r in result["rows"] if r["model"] == model and r["mode"] == mode and r["status"] == "ok"]
        if not rows:
            continue
        n = [r["n"] for r in rows]
        label = f"{model} ({mode})" if model in FRAME_MODELS else model
        axes[0].plot(n, [r["seconds"] for r in rows], "o-", label=label)
        axes[1].plot(n, [r["peak_mib"] for r in rows], "o-", label=label)
    for ax, title in zip(axes, ("time per volume (s)", "peak memory (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("slices")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{result['device_name']}, {result['size']}x{result['size']}, {result['steps']} steps")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--one", required=True)
    args = p.parse_args()
    spec = json.loads(args.one)
    try:
        out = measure_one(spec)
    except Exception as e:  # a CUDA out-of-memory error is a result, not a crash
        if "out of memory" in str(e).lower():
            out = {**spec, "status": "oom", "note": str(e).splitlines()[0][:300]}
        else:
            raise
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
