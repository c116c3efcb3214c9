"""Frame models vs `slice` vs `3d` at equal training time, evaluated with the evaluation harness.

1. Data: a phantom dataset and its 64 px cache (made here unless given).
2. Training: the presets (``cpu`` frame pair, ``cpu-k4`` four-frame windows, ``cpu-slice``, ``cpu-3d``;
   same blocks and widths) train on the
   same cache *at the same time*, one process each with an equal share of the CPU threads, for the same
   wall-clock budget, so that whatever else loads the machine loads all of them alike.
3. The evaluation segmenter trains on the same cache (after the models; its own budget).
4. Generation: every held-out (``test``) case from its own report (seed 0), a second seed of the
   first cases (diversity), and a counterfactual report with the contrast phase and steatosis flipped
   (report adherence needs both answers on the same anatomy); time and peak memory per volume.
5. Evaluation of each model's volumes; one table.

Runs resume: a model whose run already holds its budget is not trained again, volumes already
written are not generated again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tracect.bench.measure import in_fresh_process
from tracect.bench.specs import MODELS as SPECS
from tracect.bench.specs import compact

MODELS = {name: spec.preset for name, spec in SPECS.items()}  # what trains: model name -> preset


def _trained_minutes(run: Path) -> float:
    latest = run / "latest"
    if not latest.exists():
        return 0.0
    from tracect.model.weights import resolve_checkpoint

    ck = resolve_checkpoint(run)
    return json.loads((ck / "trainer.json").read_text()).get("elapsed_s", 0.0) / 60


def train_all(cache: Path, runs: Path, minutes: float, threads: int, log=print, presets: dict | None = None) -> dict:
    """Train the models side by side (resuming runs short of ``minutes``)."""
    procs = {}
    for name, preset in (presets or MODELS).items():
        run = runs / name
        done = _trained_minutes(run)
        if done >= minutes:
            log(f"{name}: already trained {done:.1f} min")
            continue
        # the wall-clock budget is the limit: a step cap far beyond it, so no model stops early
        cmd = [sys.executable, "-m", "tracect.cli.main", "train", "--config", preset, "--data", str(cache),
               "--out", str(run), "--max-minutes", str(minutes), "--max-steps", "1000000", "--quiet"]
        if run.exists():
            cmd.append("--resume")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        runs.mkdir(parents=True, exist_ok=True)
        logf = open(runs / f"{name}.log", "a")
        procs[name] = (subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT), logf)
        log(f"{name}: training for {minutes} min ({threads} thread(s)), log {runs / f'{name}.log'}")
    for name, (p, logf) in procs.items():
        rc = p.wait()
        logf.close()
        if rc != 0:
            raise RuntimeError(f"training {name} failed (exit {rc}); see {runs / f'{name}.log'}")
    from tracect.model.weights import resolve_checkpoint

    out = {}
    for name in (presets or MODELS):
        ck = resolve_checkpoint(runs / name)
        t = json.loads((ck / "trainer.json").read_text())
        out[name] = {"steps": int(t.get("step", ck.name.split("_")[-1])), "minutes": t.get("elapsed_s", 0) / 60}
    return out


def counterfactual(findings: dict, seed: int) -> str:
    """The report of ``findings`` with the contrast phase and steatosis flipped (lesions kept)."""
    from tracect.phantom.reports import write_report

    f = dict(findings)
    f["contrast_phase"] = "non-contrast" if f["contrast_phase"] == "arterial" else "arterial"
    f["fatty_liver"] = not f["fatty_liver"]
    if f["contrast_phase"] != "arterial":  # only the arterial phase shows hyperenhancing lesions
        f["lesions"] = [x for x in f["lesions"] if x.get("kind") != "hyperenhancing"]
    return write_report(f, np.random.default_rng(seed))


def generation_jobs(dataset: Path, split: str = "test", diversity_cases: int = 2) -> list[dict]:
    from tracect.data.layout import load_dataset

    ds = load_dataset(dataset)
    findings = {}
    fpath = dataset / "findings.jsonl"
    if fpath.is_file():
        for line in fpath.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                findings[d["case"]] = d
    jobs = []
    cases = [c for c in ds.cases if c.split == split and c.image is not None and c.mask is not None]
    for i, c in enumerate(cases):
        jobs.append({"name": c.case_id, "mask": c.mask, "reference": c.image, "report": c.report or "", "seed": 0})
        if i < diversity_cases:
            jobs.append({"name": f"{c.case_id}__seed1", "mask": c.mask, "reference": c.image,
                         "report": c.report or "", "seed": 1})
        if c.case_id in findings:
            jobs.append({"name": f"{c.case_id}__cf", "mask": c.mask, "reference": None,
                         "report": counterfactual(findings[c.case_id], i), "seed": 0})
    return jobs


def judged_samplings(presets: dict) -> dict[str, tuple[str, str]]:
    """What is generated and evaluated: name -> (model, mode). Each model in its first judged mode under
    its own name, further judged modes as ``"MODEL MODE"`` (:data:`tracect.bench.specs.MODELS`; a
    model not listed there in sequential mode)."""
    out = {}
    for model in presets:
        modes = SPECS[model].judged if model in SPECS else ("sequential",)
        out[model] = (model, modes[0])
        out.update({f"{model} {mode}": (model, mode) for mode in modes[1:]})
    return out


def sampling_of(run: Path, model: str, mode: str) -> dict:
    """The :class:`~tracect.generate.sampling.Sampling` (as JSON) of ``model`` in ``mode`` for the run's
    network (:meth:`tracect.bench.specs.ModelSpec.sampling`)."""
    from tracect.bench.specs import ModelSpec
    from tracect.config import RunConfig

    mc = RunConfig.from_json(json.loads((run / "config.json").read_text())).model
    spec = SPECS.get(model, ModelSpec(str(run)))
    return spec.sampling(mode, mc).to_json()


def generate_all(run: Path, jobs: list[dict], out: Path, how: dict, log=print) -> dict:
    """Generate ``jobs`` with one model in this process (``how``: a Sampling as JSON); returns per-volume
    seconds and peak resident-memory growth. A volume is reused only if it was made by the same
    checkpoint with the same sampling."""
    from tracect.bench.measure import PeakRSS, trim_heap
    from tracect.generate.outputs import write_outputs
    from tracect.generate.pipeline import Generator
    from tracect.generate.sampling import Sampling
    from tracect.io.readers import read_mask

    gen = Generator.from_checkpoint(run, device="cpu")
    sampling = Sampling(**how)
    resolved = sampling.resolved(gen.config.diffusion)
    out.mkdir(parents=True, exist_ok=True)
    times, peaks, warm = [], [], False
    for job in jobs:
        target, side = out / f"{job['name']}.nii.gz", out / f"{job['name']}.json"
        if target.exists() and side.exists():
            made = json.loads(side.read_text())
            if made.get("checkpoint_sha256") == gen.checkpoint_sha256 and made.get("sampling") == resolved.to_json():
                continue
        mask = read_mask(job["mask"])
        if not warm:  # first call: allocator, kernels and caches, not the volume
            gen.generate(mask, job["report"], seed=0, sampling=sampling, steps=1)
            warm = True
        trim_heap()
        with PeakRSS() as rss:
            result = gen.generate(mask, job["report"], seed=job["seed"], sampling=sampling)
        write_outputs(result, target, pictures=False, overwrite=True)
        times.append(result.info["seconds"])
        peaks.append((rss.peak - rss.start) / 2 ** 20)
        log(f"  {job['name']}: {result.info['seconds']:.1f} s")
    record = {"seconds": times, "peak_mib": peaks, "sampling": compact(sampling)}
    if times:  # a run that found every volume made keeps the record of the run that made them
        (out / "timing.json").write_text(json.dumps(record))
    return json.loads((out / "timing.json").read_text()) if (out / "timing.json").exists() else record


def _generate_in_subprocess(run: Path, jobs: list[dict], out: Path, log, how: dict) -> dict:
    """Each model generates in a fresh process, so none inherits another's freed memory."""
    spec = json.dumps({"run": str(run), "out": str(out), "how": how,
                       "jobs": [{**j, "mask": str(j["mask"]), "reference": str(j["reference"]) if j["reference"] else None}
                                for j in jobs]})
    r = in_fresh_process("tracect.bench.quality", [spec])
    for line in r.lines:
        log(line)
    if r.status != "ok":
        raise RuntimeError(f"generation with {run} failed ({r.status}): {r.note}")
    return r.value


def run_quality(out: str | Path, minutes: float, cache: str | Path | None = None, dataset: str | Path | None = None,
                cases: int = 40, segmenter_minutes: float | None = None, threads: int | None = None,
                log=print, presets: dict | None = None, size: int = 64, segmenter: dict | None = None) -> dict:
    """The whole comparison into ``out`` (``presets``: model name -> preset or YAML file, default
    :data:`MODELS`, each sampled as :func:`judged_samplings` says; ``size`` of the cache made when none
    is given; ``segmenter``: SegmenterConfig fields)."""
    from tracect.data.prepare import PrepareConfig, prepare_dataset
    from tracect.evaluate.harness import collect_entries, evaluate
    from tracect.evaluate.segmenter import SegmenterConfig, train_segmenter
    from tracect.phantom.generator import write_dataset

    log = log or (lambda *a: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if dataset is None:
        dataset = out / "phantom"
        write_dataset(dataset, cases, seed=0, workers=min(2, os.cpu_count() or 1), progress=False)
    dataset = Path(dataset)
    if cache is None:
        cache = out / f"cache{size}"
        if not (cache / "manifest.json").exists():
            prepare_dataset(dataset, cache, PrepareConfig(size=size), progress=False)
    cache = Path(cache)
    threads = threads or max(1, (os.cpu_count() or 1) // len(presets or MODELS))
    presets = presets or MODELS
    training = train_all(cache, out / "runs", minutes, threads, log, presets)

    seg_dir = out / "segmenter"
    if not (seg_dir / "segmenter.json").exists():
        train_segmenter(cache, seg_dir, SegmenterConfig(**{"max_minutes": segmenter_minutes or min(10.0, minutes),
                                                            **(segmenter or {})}), progress=False, log=log)

    jobs = generation_jobs(dataset)
    results = {"minutes": minutes, "threads_per_model": threads, "cache": str(cache), "dataset": str(dataset),
               "training": training, "volumes": len(jobs), "models": {}}
    for name, (model, mode) in judged_samplings(presets).items():
        how = sampling_of(out / "runs" / model, model, mode)
        log(f"{name}: generating {len(jobs)} volumes")
        timing = _generate_in_subprocess(out / "runs" / model, jobs, out / "generated" / name, log, how)
        manifest = out / "generated" / name / "evaluate.jsonl"
        with open(manifest, "w") as f:
            for j in jobs:
                line = {"name": j["name"], "generated": f"{j['name']}.nii.gz", "mask": str(j["mask"]),
                        "report": j["report"], "seed": j["seed"], "checkpoint": str(out / "runs" / model)}
                if j["reference"] is not None:
                    line["reference"] = str(j["reference"])
                f.write(json.dumps(line) + "\n")
        entries = collect_entries(manifest, allow_absolute=True)
        for e in entries:  # the sidecar's hash groups seeds of one mask for the diversity figure
            e.mask_sha256 = json.loads((manifest.parent / f"{e.name}.json").read_text())["mask_sha256"]
        m = evaluate(entries, out / "evaluation" / name, segmenter=seg_dir, reference_dataset=dataset,
                     training_cache=cache, progress=False, log=log)
        results["models"][name] = {**summarise(m, timing), "model": model}
    results["seconds"] = time.perf_counter() - t0
    (out / "quality.json").write_text(json.dumps(results, indent=2))
    (out / "quality.md").write_text(markdown(results))
    return results


def summarise(m: dict, timing: dict) -> dict:
    a, adh = m["aggregate"], m["adherence"]["generated"]
    g = adh.get
    return {
        "dice": a["dice_mean"], "dice_reference": a["dice_reference_mean"], "flow_epe_px": a["flow_epe_px"],
        "warp_error": a["warp_error"], "warp_error_reference": a["warp_error_reference"],
        "hu_abs_error": a["hu_abs_error_mean"],
        "phase_auroc": (g("contrast_phase") or {}).get("auroc"), "phase_accuracy": (g("contrast_phase") or {}).get("accuracy"),
        "fatty_auroc": (g("fatty_liver") or {}).get("auroc"), "lesion_auroc": (g("lesion") or {}).get("auroc"),
        "fd_axial": m["distribution"].get("fd_axial"), "fd_coronal": m["distribution"].get("fd_coronal"),
        "fd_sagittal": m["distribution"].get("fd_sagittal"),
        "diversity_ms_ssim": (m["diversity"].get("ms_ssim") or {}).get("mean"),
        "memorised_fraction": (m["privacy"].get("generated") or {}).get("fraction_above_threshold"),
        "real_adherence": m["adherence"].get("real"),
        "seconds_per_volume": float(np.median(timing["seconds"])) if timing["seconds"] else None,
        "peak_mib_per_volume": float(np.median(timing["peak_mib"])) if timing["peak_mib"] else None,
        "sampling": timing.get("sampling"),
    }


def _f(x, fmt="{:.3f}"):
    if x is None:
        return "n/a"
    if isinstance(x, dict):
        if x.get("mean") is None:
            return "n/a"
        lo, hi = x.get("ci95") or (None, None)
        if lo is None or hi is None:  # too few masks for a bootstrap interval
            return f"{fmt.format(x['mean'])} [no CI, n={x.get('n', '?')}]"
        return f"{fmt.format(x['mean'])} [{fmt.format(lo)}, {fmt.format(hi)}]"
    return fmt.format(x)


def markdown(r: dict) -> str:
    lines = [f"Training budget {r['minutes']} min per model, the {len(r['training'])} side by side with "
             f"{r['threads_per_model']} thread(s) each; {r['volumes']} volumes per model; 95% bootstrap CIs.", "",
             "| figure | " + " | ".join(r["models"]) + " |", "| --- |" + " ---: |" * len(r["models"])]
    rows = [("training steps", lambda n, v: str(r["training"][v.get("model", n)]["steps"])),
            ("sampling", lambda n, v: ", ".join(f"{k} {x}" for k, x in (v.get("sampling") or {}).items())),
            ("Dice (segmenter on generated)", lambda n, v: _f(v["dice"])),
            ("Dice ceiling (segmenter on real)", lambda n, v: _f(v["dice_reference"])),
            ("flow EPE (px)", lambda n, v: _f(v["flow_epe_px"])),
            ("warping error", lambda n, v: _f(v["warp_error"])),
            ("warping error, real CT", lambda n, v: _f(v["warp_error_reference"])),
            ("per-organ abs. HU median error", lambda n, v: _f(v["hu_abs_error"], "{:.1f}")),
            ("contrast phase AUROC / accuracy", lambda n, v: f"{_f(v['phase_auroc'], '{:.2f}')} / {_f(v['phase_accuracy'], '{:.2f}')}"),
            ("steatosis AUROC", lambda n, v: _f(v["fatty_auroc"], "{:.2f}")),
            ("lesion AUROC", lambda n, v: _f(v["lesion_auroc"], "{:.2f}")),
            ("FD axial / coronal / sagittal (segmenter features)",
             lambda n, v: f"{_f(v['fd_axial'], '{:.2f}')} / {_f(v['fd_coronal'], '{:.2f}')} / {_f(v['fd_sagittal'], '{:.2f}')}"),
            ("MS-SSIM between seeds", lambda n, v: _f(v["diversity_ms_ssim"])),
            ("slices with NCC >= 0.95 to a training slice", lambda n, v: _f(v["memorised_fraction"])),
            ("time per volume (s, median)", lambda n, v: _f(v["seconds_per_volume"], "{:.1f}")),
            ("peak memory growth per volume (MiB, median)", lambda n, v: _f(v["peak_mib_per_volume"], "{:.0f}"))]
    for label, fn in rows:
        lines.append(f"| {label} | " + " | ".join(fn(n, v) for n, v in r["models"].items()) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # one model's generation, in its own process (see _generate_in_subprocess)
    spec = json.loads(sys.argv[1])
    result = generate_all(Path(spec["run"]), spec["jobs"], Path(spec["out"]), spec["how"], log=print)
    print(json.dumps(result))
