"""Time and memory per volume: the frame models against the 3D baseline, each sampled every way it can be,
each judged at its best.

The models and their samplings are :data:`tracect.bench.specs.MODELS`: TRACE's frame pair (``cpu``:
K = 2, one new slice per network call) and windows of four frames (``cpu-k4``: three new slices per
call; the frames are the 2D network's channels, so a call costs about the same), each sequential (the
overlapping-frame chain, with the default burn-in of
:data:`tracect.generate.sampling.DEFAULT_WARMUP` slices, as ``tracect generate`` runs it) and parallel
(16 windows per call for K = 2, 8 for K = 4); and the 3D model (``cpu-3d``) whole-volume in one window
(its fastest) and in windows of its 32-slice training block fused in parallel mode, one window per call
(its leanest). All share blocks, widths, conditioning, steps and guidance. A ratio takes each frame model
at its fastest (time) or leanest (memory) sampling against the 3D model at its own: the table names both.

Every measurement runs in a fresh subprocess (``python -m tracect.bench.efficiency --one JSON``) with an
untrained model (timing and memory do not depend on the weights) built at the requested slice size. It
generates the measured volume once (warm-up: kernels, caches, first-call costs at the measured shape),
hands freed heap back to the system, then times ``repeats`` generations (median) and takes the largest
of their memory figures (:func:`measure_one`): the peak of the whole call above the loaded process,
the working memory of the sampling stage above the process with the volume's arrays laid out (what
tells whether memory grows with the number of slices), and the volume's arrays themselves. On a GPU the
same figures come from ``torch.cuda``'s allocator. FLOPs: one network evaluation counted by
``torch.utils.flop_counter`` at the window's real shape, times windows x steps x (2 with guidance);
the device's matmul peak is measured in the same run, so the utilisation is a ratio of two measurements.

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

from tracect.bench.measure import PeakRSS, in_fresh_process, matmul_peak, rss_bytes, trim_heap
from tracect.bench.specs import FRAME_MODELS, LATENT_MODELS, MODELS, compact

# (model, mode) of tracect.bench.specs.MODELS measured here: the frame models in both modes, the 3D model
# whole-volume (sequential) and in windows of its training block (parallel, one window per call: its
# leanest)
MEASURED = (("frame-pair", "sequential"), ("frame-pair", "parallel"), ("frame-4", "sequential"),
            ("frame-4", "parallel"), ("3d", "sequential"), ("3d", "parallel"))
# measured when asked for (``--only``): the frame pair in a slice autoencoder's latent space, at the
# slices' size (``--size 256``: 64² latent frames, decoded to 256² slices)
OPTIONAL = tuple((m, "sequential") for m in LATENT_MODELS)
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
    ae = _untrained_autoencoder(size, cfg.model.latent_channels) if cfg.model.latent_channels > 1 else None
    # a latent model's frames are latents: ``size``² slices are (size / factor)² latent frames
    frame_size = size // ae.config.model.factor if ae else size
    cfg = cfg.replace(model={"image_size": frame_size, **({"text_encoder": text_encoder} if text_encoder else {})})
    torch.manual_seed(0)
    model = FrameDenoiser(cfg.model).eval()
    data = {"prepare": PrepareConfig(size=size).to_json(), "vocabulary": get_vocabulary("tracect").to_json(),
            "slice_thickness_mm": [0.5, 10.0]}
    return Generator(model, cfg, data, torch.device("cpu"), autoencoder=ae), cfg, model


def _untrained_autoencoder(size: int, latent_channels: int):
    """The ``ae-cpu`` slice autoencoder at ``size``² with initial weights: time and memory do not depend on
    what it learned."""
    import dataclasses

    import torch

    from tracect.autoencoder.config import load_ae_config
    from tracect.autoencoder.model import SliceAutoencoder
    from tracect.autoencoder.weights import LoadedAutoencoder

    config = load_ae_config("ae-cpu")
    config = dataclasses.replace(  # both sections at once: the run checks its crops against the slices
        config, model=dataclasses.replace(config.model, image_size=size, latent_channels=latent_channels),
        train=dataclasses.replace(config.train, crop=min(config.train.crop, size)))
    torch.manual_seed(0)
    model = SliceAutoencoder(config.model).eval().requires_grad_(False)
    return LoadedAutoencoder(model, config, {"latent_scale": 1.0}, Path("untrained"), "untrained")


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


def volume_bytes(plan, result, mask) -> int:
    """Bytes of the volume's own arrays, which grow with its slices whatever the method: the mask, the
    chain's labels and output buffer, the labels on the generation grid, and the result on both grids."""
    chain = plan.chain
    return int(mask.array.nbytes + chain.labels.numel() * chain.labels.element_size()
               + chain.out.numel() * chain.out.element_size() + chain.positions.numel() * 4 + plan.labels.nbytes
               + result.canonical.array.nbytes + result.ct.array.nbytes + result.labels.array.nbytes)


def measure_one(spec: dict) -> dict:
    """One measurement (run inside a fresh process): ``spec`` has model, mode, n, size, steps, device,
    repeats (and optionally threads, text_encoder); the sampling is :data:`tracect.bench.specs.MODELS`'s.

    Memory (CPU: resident set size; GPU: allocated memory), each the largest over the repeats:

    - ``peak_mib``: the generate call's peak above the loaded process (Python, torch, the model and the
      text encoder loaded and warmed up), everything included: what a volume costs;
    - ``working_mib``: the sampling stage's peak above the process as it was with the volume's arrays
      already laid out: the memory of the method itself (activations, batched windows, fused estimates);
    - ``arrays_mib``: the volume's own arrays (:func:`volume_bytes`), which any method holds;
    - ``finish_working_mib``: the finishing stage's peak above its start, less the result arrays it
      makes (a latent model decodes here, a few slices at a time)."""
    import torch

    from tracect.model.denoiser import forward_flops

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    spec_model = MODELS[spec["model"]]
    preset = spec.get("preset") or spec_model.preset  # another preset sampled the same way (tests: tiny)
    gen, cfg, model = _generator(preset, spec["size"], "cpu", spec.get("text_encoder"))
    # the mask's own size may differ from the generation grid's (a 64² model given a 256² mask resamples)
    mask = bench_mask(spec["n"], spec.get("mask_size") or spec["size"])
    steps, mc = int(spec["steps"]), cfg.model
    sampling = spec_model.sampling(spec["mode"], mc).replace(steps=steps)
    guided = cfg.diffusion.guidance != 1.0
    dev = torch.device(spec["device"])
    if dev.type != "cpu":
        from tracect.runtime import autocast_factory

        gen.model = model = model.to(dev)
        gen.device = dev
        gen.autocast = autocast_factory(dev, cfg.train.precision)
    gpu = dev.type == "cuda"

    def sync():
        if gpu:
            torch.cuda.synchronize()

    def generate_measured():
        """plan -> sample -> finish, with the peaks of the whole call and of the sampling stage."""
        base_gpu = torch.cuda.memory_allocated() if gpu else 0
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        with PeakRSS() as whole:
            plan = gen.plan(mask, REPORT, seed=0, sampling=sampling)
            with PeakRSS() as sampler:
                gpu_before = torch.cuda.memory_allocated() if gpu else 0
                if gpu:
                    torch.cuda.reset_peak_memory_stats()
                (plan,) = gen.sample([plan], sampling)
                sync()
                gpu_sampling = torch.cuda.max_memory_allocated() - gpu_before if gpu else None
            with PeakRSS() as finisher:
                result = gen.finish(plan)
                sync()
        seconds = time.perf_counter() - t
        return plan, result, seconds, whole, sampler, gpu_sampling, base_gpu, finisher

    generate_measured()  # warm-up at the measured shape: kernels, caches, first-call costs
    trim_heap()
    loaded = rss_bytes()  # the process with everything loaded and warm, before the volume
    runs, peaks, working, gpu_peaks, gpu_working, finishing = [], [], [], [], [], []
    plan = result = None
    for _ in range(max(1, int(spec.get("repeats", 1)))):
        # drop the previous run's volume and hand freed heap back, so no run starts holding or caching
        # another's (with it alive, a repeat's peak counted two volumes)
        plan = result = None
        trim_heap()
        plan, result, seconds, whole, sampler, gpu_sampling, base_gpu, finisher = generate_measured()
        runs.append(seconds)
        # the finishing stage (a latent model's decoding, resampling onto the mask's grid) above what it
        # started with, less the result arrays it makes: its working memory
        made = result.canonical.array.nbytes + result.ct.array.nbytes + result.labels.array.nbytes
        # (the resident-set sampling can put it a few pages below zero for a tiny volume)
        finishing.append(max(0.0, (finisher.peak - finisher.start - made) / 2 ** 20))
        peaks.append((whole.peak - loaded) / 2 ** 20)
        working.append((sampler.peak - sampler.start) / 2 ** 20)
        if gpu:
            gpu_peaks.append((torch.cuda.max_memory_allocated() - base_gpu) / 2 ** 20)
            gpu_working.append(gpu_sampling / 2 ** 20)
    K = plan.chain.K
    per_eval = forward_flops(model, frames=K)
    flops = per_eval * len(plan.chain.starts) * sampling.steps * (2 if guided else 1)
    seconds = float(np.median(runs))
    out = {**spec, "status": "ok", "sampling": compact(sampling), "seconds": seconds, "seconds_runs": runs,
           "slices_generated": int(result.canonical.shape[0]), "windows": len(plan.chain.starts), "frames": K,
           "flops": int(flops), "flops_per_s": flops / seconds,
           "arrays_mib": volume_bytes(plan, result, mask) / 2 ** 20, "finish_working_mib": max(finishing)}
    if gpu:
        out["peak_mib"], out["working_mib"] = max(gpu_peaks), max(gpu_working)
        out["cpu_peak_mib"], out["cpu_working_mib"] = max(peaks), max(working)
    else:
        out["peak_mib"], out["working_mib"] = max(peaks), max(working)
    return out


def run_efficiency(slices=(32, 64, 128, 256), size: int = 64, steps: int = 5, device: str = "cpu",
                   threads: int | None = None, timeout: float = 1800.0, log=print,
                   text_encoder: str | None = None, repeats: int = 3, measured=MEASURED,
                   memory_limit_gib: float | None = None, mask_size: int | None = None) -> dict:
    """All measurements, each in a fresh subprocess; returns the results with the device record.
    ``repeats``: timed runs per measurement after the warm-up (time: their median; memory: their max);
    ``measured``: (model, mode) pairs of :data:`tracect.bench.specs.MODELS`; ``mask_size``: the masks'
    slices (default ``size``); ``memory_limit_gib``: the address space a measurement may take (past it:
    ``oom``, not a machine swapping for an hour)."""
    import torch

    from tracect import __version__

    threads = threads or torch.get_num_threads()
    mask_size = int(mask_size or size)
    torch.set_num_threads(threads)
    peak = matmul_peak(device)
    # the presets autocast to bf16 on CUDA: utilisation is measured against the peak of that dtype
    compute = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
    rows = []
    for n in slices:
        for model, mode in measured:
            spec = {"model": model, "mode": mode, "n": int(n), "size": int(size), "mask_size": mask_size,
                    "steps": int(steps),
                    "device": device, "threads": threads, "text_encoder": text_encoder, "repeats": int(repeats)}
            run = in_fresh_process("tracect.bench.efficiency", ["--one", json.dumps(spec)], timeout,
                                   int(memory_limit_gib * 2 ** 30) if memory_limit_gib else None)
            row = run.value if run.status == "ok" else {**spec, "status": run.status, "note": run.note}
            if row["status"] == "ok":
                row["utilisation"] = row["flops_per_s"] / peak[compute]
                if log:
                    log(f"{model:<10} {mode:<10} N={n:<4} {row['seconds']:8.2f} s  peak {row['peak_mib']:8.1f} MiB  "
                        f"working {row['working_mib']:7.1f} MiB  arrays {row['arrays_mib']:6.1f} MiB  "
                        f"{row['flops_per_s'] / 1e9:7.1f} GFLOP/s")
            elif log:
                log(f"{model:<10} {mode:<10} N={n:<4} {row['status']}: {row.get('note', '')}")
            rows.append(row)
    dev_name = torch.cuda.get_device_name(0) if device.startswith("cuda") else (platform.processor() or platform.machine())
    return {"device": device, "device_name": dev_name, "cpu_count": os.cpu_count(), "threads": threads,
            "torch_version": torch.__version__, "tracect_version": __version__, "size": size, "steps": steps,
            "repeats": repeats, "memory_limit_gib": memory_limit_gib, "mask_size": mask_size,
            "matmul_peak_flops_per_s": peak, "compute_dtype": compute, "rows": rows, "ratios": ratios(rows)}


def _best(rows: list[dict], key: str) -> dict | None:
    return min(rows, key=lambda r: r[key]) if rows else None


def ratios(rows: list[dict]) -> dict:
    """Each frame model at its best against the 3D model at its best, per N: time against the faster 3D
    sampling with the frame model's fastest, memory (``peak_mib``) against the leaner 3D sampling with the
    frame model's leanest (each side's setting named). Flatness per sampling of each frame model: the
    working memory (``working_mib``) at the largest N over the smallest, and the peak less the volume's
    arrays likewise."""
    ok = [r for r in rows if r["status"] == "ok"]
    ns = sorted({r["n"] for r in ok})
    out = {}
    for fm in FRAME_MODELS + LATENT_MODELS:
        mine = {}
        for n in ns:
            fr = [r for r in ok if r["model"] == fm and r["n"] == n]
            d3 = [r for r in ok if r["model"] == "3d" and r["n"] == n]
            if not fr or not d3:
                continue
            ft, dt = _best(fr, "seconds"), _best(d3, "seconds")
            fmem, dmem = _best(fr, "peak_mib"), _best(d3, "peak_mib")
            mine.setdefault("vs_3d", {})[n] = {
                "time_ratio": ft["seconds"] / dt["seconds"], "time_settings": [ft["mode"], dt["mode"]],
                "memory_ratio": fmem["peak_mib"] / max(dmem["peak_mib"], 1e-9),
                "memory_settings": [fmem["mode"], dmem["mode"]]}
        for mode in sorted({r["mode"] for r in ok if r["model"] == fm}):
            by_n = {r["n"]: r for r in ok if r["model"] == fm and r["mode"] == mode}
            if len(by_n) >= 2:
                lo, hi = by_n[min(by_n)], by_n[max(by_n)]
                mine.setdefault("memory_flatness", {})[mode] = {
                    "n": [lo["n"], hi["n"]], "working_ratio": hi["working_mib"] / max(lo["working_mib"], 1e-9),
                    "working_mib": [lo["working_mib"], hi["working_mib"]],
                    "peak_less_arrays_mib": [lo["peak_mib"] - lo["arrays_mib"], hi["peak_mib"] - hi["arrays_mib"]],
                    "arrays_mib": [lo["arrays_mib"], hi["arrays_mib"]]}
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
             "Peak: the generate call above the loaded process, everything included. Working: the sampling "
             "stage above the process with the volume's arrays laid out (the method's own memory). Arrays: "
             "the volume's own arrays (mask, labels, output buffer, result on both grids).", "",
             f"| model | sampling | slices | windows | time (s) | peak (MiB) | working (MiB) | arrays (MiB) | "
             f"GFLOP/s | of {compute} matmul peak |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        how = _settings(r)
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {how} | {r['n']} | | **{r['status']}** | | | | | |")
            continue
        lines.append(f"| {r['model']} | {how} | {r['n']} | {r['windows']} | {r['seconds']:.2f} | {r['peak_mib']:.1f} | "
                     f"{r['working_mib']:.1f} | {r['arrays_mib']:.1f} | {r['flops_per_s'] / 1e9:.1f} | "
                     f"{r['flops_per_s'] / peak[compute]:.1%} |")
    rat = result["ratios"]
    lines += ["", "Each frame model at its best against the 3D model at its best (settings named: frame / 3D).", "",
              "| model | slices | time / 3D | settings (time) | memory / 3D | settings (memory) |",
              "| --- | ---: | ---: | --- | ---: | --- |"]
    for fm, mine in rat.items():
        for n, v in sorted(mine.get("vs_3d", {}).items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {fm} | {n} | {v['time_ratio']:.2f} | {' / '.join(v['time_settings'])} | "
                         f"{v['memory_ratio']:.3f} | {' / '.join(v['memory_settings'])} |")
    lines.append("")
    for fm, mine in rat.items():
        for mode, v in mine.get("memory_flatness", {}).items():
            lines.append(f"{fm} {mode}: working memory {v['working_mib'][0]:.1f} -> {v['working_mib'][1]:.1f} MiB "
                         f"({v['working_ratio']:.3f}x) from {v['n'][0]} to {v['n'][1]} slices; peak less the volume's "
                         f"arrays {v['peak_less_arrays_mib'][0]:.1f} -> {v['peak_less_arrays_mib'][1]:.1f} MiB; the "
                         f"arrays {v['arrays_mib'][0]:.1f} -> {v['arrays_mib'][1]:.1f} MiB.  ")
    return "\n".join(lines) + "\n"


def _settings(row: dict) -> str:
    s = row.get("sampling") or {"mode": row["mode"]}
    extra = ", ".join(f"{k} {v}" for k, v in s.items() if k not in ("mode", "steps"))
    return row["mode"] + (f" ({extra})" if extra else "")


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for model, mode in sorted({(r["model"], r["mode"]) for r in result["rows"]}):
        rows = sorted((r for r in result["rows"] if r["model"] == model and r["mode"] == mode and r["status"] == "ok"),
                      key=lambda r: r["n"])
        if not rows:
            continue
        n = [r["n"] for r in rows]
        label = f"{model} ({mode})"
        axes[0].plot(n, [r["seconds"] for r in rows], "o-", label=label)
        axes[1].plot(n, [r["peak_mib"] for r in rows], "o-", label=label)
    for ax, title in zip(axes, ("time per volume (s)", "peak memory above the loaded process (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("slices")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
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
