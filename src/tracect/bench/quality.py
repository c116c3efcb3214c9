"""Frame models vs `slice` vs `3d` at equal training time, judged on held-out masks with paired intervals.

1. **Three phantom draws** (another seed each, case ids apart): the generators' training set (``cases``,
   seed 0), a held-out set no model trains on (``heldout`` masks, seed 1, all ``test``), and the
   evaluation segmenter's own training set (seed 2): a segmenter that saw the generators' training
   volumes would favour whatever they copy from them.
2. **Training** (:func:`train_all`): the models of :data:`tracect.bench.specs.MODELS` (same blocks and
   widths) train *at the same time*, one process each with an equal share of the CPU threads, so that
   whatever else loads the machine loads all of them alike. Each follows its preset's learning-rate
   schedule (warm-up, cosine decay) to its end: a short concurrent probe measures each model's steps per
   second, and its run is set to the number of steps it takes in the budget (a cap of 1.25x the budget
   in minutes stops a run the machine slowed down).
   A latent model (``frame-pair-latent``) trains on the same cases prepared at its autoencoder's slice
   size and encoded by it (``latent_cache{size}``); it is judged on the same masks by the same segmenter.
3. **Generation**: every held-out mask from its own report (seed 0), and a second seed of the first two
   (diversity); sequential models in lockstep cohorts. Volumes keep their generation grid
   (``NAME.grid.nii.gz``), which the evaluation scores without a second resampling.
4. **Evaluation** of each model's volumes (:func:`tracect.evaluate.harness.evaluate`), and **paired
   comparisons**: per held-out mask, the frame pair's figure minus each other model's, with a Student-t
   interval over masks and their number.

Time and memory per volume are ``bench efficiency``'s business (measured alone, like for like); this
benchmark records only how long each stage took. Runs resume: a model whose run reached its steps is not
trained again, volumes already made by the same checkpoint and sampling are not generated again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


from tracect.bench.measure import in_fresh_process
from tracect.bench.specs import MODELS as SPECS
from tracect.bench.specs import PIXEL_MODELS, compact

MODELS = {name: SPECS[name].preset for name in PIXEL_MODELS}  # what trains by default: model name -> preset
REFERENCE_MODEL = "frame-pair"  # TRACE: the model every other is compared with, mask by mask
# per-mask figures compared between models: (key in metrics.json's case rows, label, format)
PAIRED = (("dice_mean", "Dice", "{:+.3f}"), ("flow_epe_px", "flow EPE (px)", "{:+.3f}"),
          ("hu_abs_error_mean", "per-organ abs. HU median error", "{:+.1f}"),
          ("adjacent_dhu_ratio", "adjacent abs. dHU / real", "{:+.3f}"),
          ("z_hf_ratio", "through-plane HF / real", "{:+.3f}"),
          ("inplane_hf_ratio", "in-plane HF power / real", "{:+.3f}"),
          ("tissue_w1_mean", "tissue HU W1 (mean of 5 tissues)", "{:+.1f}"),
          ("soft_tissue_hf_ratio", "soft-tissue HF power / real", "{:+.3f}"))


def _trained(run: Path) -> dict | None:
    """``{"steps", "minutes"}`` of a run's latest checkpoint, or None."""
    if not (run / "latest").exists():
        return None
    from tracect.model.weights import resolve_checkpoint

    ck = resolve_checkpoint(run)
    t = json.loads((ck / "trainer.json").read_text())
    return {"steps": int(t["step"]), "minutes": t.get("elapsed_s", 0.0) / 60}


def _launch(name: str, preset: str, cache: Path, run: Path, threads: int, logs: Path, *args: str):
    cmd = [sys.executable, "-m", "tracect.cli.main", "train", "--config", preset, "--data", str(cache),
           "--out", str(run), "--quiet", *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    logs.mkdir(parents=True, exist_ok=True)
    logf = open(logs / f"{name}.log", "a")
    return subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT), logf


def _wait(procs: dict, logs: Path) -> None:
    for name, (p, logf) in procs.items():
        rc = p.wait()
        logf.close()
        if rc != 0:
            raise RuntimeError(f"training {name} failed (exit {rc}); see {logs / f'{name}.log'}")


def calibrate(caches: dict, runs: Path, presets: dict, threads: int, seconds: float = 90.0, log=print) -> dict:
    """Steps per second of each model trained concurrently as :func:`train_all` will train them (the
    rate of the second half of a ``seconds``-long probe, past start-up). Kept in ``runs/rates.json``."""
    import csv

    path = runs / "rates.json"
    if path.is_file():
        rates = json.loads(path.read_text())
        if set(rates) >= set(presets):
            return rates
    probe = runs / "probe"
    procs = {name: _launch(name, preset, caches[name], probe / name, threads, probe, "--max-minutes", str(seconds / 60))
             for name, preset in presets.items() if not (probe / name / "latest").exists()}
    log(f"probing training speed: {len(procs)} models side by side for {seconds:.0f} s")
    _wait(procs, probe)
    rates = {}
    for name in presets:
        with open(probe / name / "metrics.csv") as f:
            rows = [r for r in csv.DictReader(f)]
        if not rows:
            raise RuntimeError(f"probe of {name} logged no step; see {probe / f'{name}.log'}")
        # a slow model may log only its last step: then its rate includes the first steps' warm-up
        (s0, t0), (s1, t1) = [(int(r["step"]), float(r["elapsed_s"])) for r in (rows[len(rows) // 2], rows[-1])]
        rates[name] = (s1 - s0) / (t1 - t0) if s1 > s0 and t1 > t0 else s1 / max(t1, 1e-9)
    path.write_text(json.dumps(rates, indent=2))
    return rates


def train_all(caches: dict, runs: Path, minutes: float, threads: int, log=print, presets: dict | None = None,
              probe_seconds: float = 90.0) -> dict:
    """Train the models side by side (``caches``: model name -> its prepared cache), each to the number
    of steps it takes in ``minutes`` (its preset's learning-rate schedule run to its end); resumes runs
    short of their steps."""
    presets = presets or MODELS
    rates = calibrate(caches, runs, presets, threads, probe_seconds, log)
    steps = {name: max(10, int(rates[name] * minutes * 60)) for name in presets}
    procs = {}
    for name, preset in presets.items():
        run = runs / name
        done = _trained(run)
        if done is not None and done["steps"] >= steps[name]:
            log(f"{name}: already trained {done['steps']} steps")
            continue
        args = ["--max-steps", str(steps[name]), "--max-minutes", str(1.25 * minutes)]
        procs[name] = _launch(name, preset, caches[name], run, threads, runs, *args,
                              *(["--resume"] if run.exists() else []))
        log(f"{name}: training {steps[name]} steps ({rates[name]:.2f} steps/s probed, {threads} thread(s))")
    _wait(procs, runs)
    return {name: {**_trained(runs / name), "planned_steps": steps[name], "probed_steps_per_s": rates[name]}
            for name in presets}


def generation_jobs(dataset: Path, diversity_cases: int = 2) -> list[dict]:
    """Every case of a held-out dataset from its own report (seed 0), and a second seed of the first
    ``diversity_cases``."""
    from tracect.data.layout import load_dataset

    ds = load_dataset(dataset)
    jobs = []
    cases = [c for c in ds.cases if c.image is not None and c.mask is not None]
    for i, c in enumerate(cases):
        jobs.append({"name": c.case_id, "mask": c.mask, "reference": c.image, "report": c.report or "", "seed": 0})
        if i < diversity_cases:
            jobs.append({"name": f"{c.case_id}__seed1", "mask": c.mask, "reference": c.image,
                         "report": c.report or "", "seed": 1})
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


def generate_all(run: Path, jobs: list[dict], out: Path, how: dict, log=print, batch_volumes: int = 8) -> dict:
    """Generate ``jobs`` with one model in this process (``how``: a Sampling as JSON), ``batch_volumes``
    in lockstep; each volume with its generation grid. A volume is reused only if it was made by the same
    checkpoint with the same sampling. Returns the sampling and the seconds this took."""
    from tracect.generate.outputs import write_outputs
    from tracect.generate.pipeline import Generator
    from tracect.generate.sampling import Sampling
    from tracect.io.readers import read_mask

    gen = Generator.from_checkpoint(run, device="cpu")
    sampling = Sampling(**how)
    resolved = sampling.resolved(gen.config.diffusion)
    out.mkdir(parents=True, exist_ok=True)

    def made(job) -> bool:
        side = out / f"{job['name']}.json"
        if not (side.exists() and (out / f"{job['name']}.grid.nii.gz").exists()):
            return False
        info = json.loads(side.read_text())
        return info.get("checkpoint_sha256") == gen.checkpoint_sha256 and info.get("sampling") == resolved.to_json()

    todo = [j for j in jobs if not made(j)]
    t0 = time.perf_counter()
    plans = (gen.plan(read_mask(j["mask"]), j["report"], seed=j["seed"], sampling=sampling, key=j) for j in todo)
    for plan, result in gen.generate_many(plans, sampling, batch_volumes):
        write_outputs(result, out / f"{plan.key['name']}.nii.gz", ("nifti", "grid"), pictures=False, overwrite=True)
        log(f"  {plan.key['name']}: {result.ct.shape}")
    record = {"sampling": compact(sampling), "volumes_made": len(todo), "seconds": time.perf_counter() - t0,
              "batch_volumes": batch_volumes}
    if todo:  # a run that found every volume made keeps the record of the run that made them
        (out / "timing.json").write_text(json.dumps(record))
    return json.loads((out / "timing.json").read_text()) if (out / "timing.json").exists() else record


def _generate_in_subprocess(run: Path, jobs: list[dict], out: Path, log, how: dict) -> dict:
    """Each model generates in a fresh process, so none inherits another's memory or caches."""
    spec = json.dumps({"run": str(run), "out": str(out), "how": how,
                       "jobs": [{**j, "mask": str(j["mask"]), "reference": str(j["reference"]) if j["reference"] else None}
                                for j in jobs]})
    r = in_fresh_process("tracect.bench.quality", [spec])
    for line in r.lines:
        log(line)
    if r.status != "ok":
        raise RuntimeError(f"generation with {run} failed ({r.status}): {r.note}")
    return r.value


def make_draws(out: Path, cases: int, heldout: int, segmenter_cases: int, size: int, log=print,
               phantom_size: int | None = None) -> dict:
    """The three phantom draws (``phantom_size``² slices, the phantom's default if None) and the two
    prepared caches at ``size`` (see the module docstring)."""
    from tracect.data.prepare import PrepareConfig, prepare_dataset
    from tracect.phantom import PhantomConfig
    from tracect.phantom.generator import write_dataset

    workers = min(2, os.cpu_count() or 1)
    paths = {"train": out / "phantom", "heldout": out / "heldout", "segmenter": out / "segmenter_phantom"}
    for (key, path), n, seed, prefix, split in zip(paths.items(), (cases, heldout, segmenter_cases), (0, 1, 2),
                                                  ("phantom", "heldout", "segdraw"), (None, "test", None)):
        write_dataset(path, n, seed=seed, workers=workers, progress=False, prefix=prefix, split=split,
                      config=PhantomConfig(size=phantom_size) if phantom_size else PhantomConfig())
    caches = {"train": out / f"cache{size}", "segmenter": out / f"segmenter_cache{size}"}
    for key, cache in caches.items():
        if not (cache / "manifest.json").exists():
            prepare_dataset(paths[key], cache, PrepareConfig(size=size), workers=workers, progress=False)
    log(f"draws: {cases} training, {heldout} held-out, {segmenter_cases} segmenter cases")
    return {**{f"{k}_dataset": v for k, v in paths.items()}, **{f"{k}_cache": v for k, v in caches.items()}}


def latent_cache(dataset: Path, out: Path, autoencoder: str | Path, log=print) -> Path:
    """The training cases prepared at ``autoencoder``'s slice size and HU window, encoded by it
    (``out/latent_cache{size}``; kept when it holds these weights' latents)."""
    from tracect.autoencoder.latents import encode_cache
    from tracect.autoencoder.weights import load_autoencoder
    from tracect.data.prepare import PrepareConfig, prepare_dataset

    ae = load_autoencoder(autoencoder)
    m = ae.config.model
    cache = out / f"latent_cache{m.image_size}"
    if not (cache / "manifest.json").exists():
        prepare_dataset(dataset, cache, PrepareConfig(size=m.image_size, hu_window=m.hu_window),
                        workers=min(2, os.cpu_count() or 1), progress=False)
    encode_cache(cache, ae, progress=False, log=log)  # keeps the cases these weights already encoded
    log(f"latent cache: {cache} encoded by {autoencoder}")
    return cache


def _is_latent(preset: str) -> bool:
    from tracect.config import load_config

    return load_config(preset).model.latent_channels > 1


def per_mask(metrics: dict, key: str) -> dict:
    """``key`` of each held-out mask's seed-0 volume (the extra seeds of the diversity figure left out)."""
    return {r["case"]: r.get(key) for r in metrics["cases"] if "__" not in r["case"]}


def run_quality(out: str | Path, minutes: float, cases: int = 40, heldout: int = 24, segmenter_cases: int = 24,
                segmenter_minutes: float | None = None, threads: int | None = None, log=print,
                presets: dict | None = None, size: int = 64, segmenter: dict | None = None,
                probe_seconds: float = 90.0, autoencoder: str | Path | None = None,
                phantom_size: int | None = None) -> dict:
    """The whole comparison into ``out`` (``presets``: model name -> preset or YAML file, default
    :data:`MODELS`, each sampled as :func:`judged_samplings` says; ``size``: the pixel caches' matrix;
    ``segmenter``: SegmenterConfig fields; ``autoencoder``: the slice autoencoder of the latent models,
    required when there are any; ``phantom_size``: the phantoms' slices, e.g. 256 so that a latent
    model at 256² learns from and is judged against slices that fine)."""
    from tracect.evaluate import metrics as M
    from tracect.evaluate.entries import collect_entries
    from tracect.evaluate.harness import evaluate
    from tracect.evaluate.segmenter import SegmenterConfig, train_segmenter

    log = log or (lambda *a: None)
    out = Path(out).resolve()  # the evaluation manifests name masks and references by absolute path
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    draws = make_draws(out, cases, heldout, segmenter_cases, size, log, phantom_size)
    presets = presets or MODELS
    latent = [name for name, preset in presets.items() if _is_latent(preset)]
    if latent and autoencoder is None:
        raise ValueError(f"{latent}: latent models need the slice autoencoder (autoencoder=...)")
    caches = {name: draws["train_cache"] for name in presets}
    if latent:
        caches.update(dict.fromkeys(latent, latent_cache(draws["train_dataset"], out, autoencoder, log)))
    threads = threads or max(1, (os.cpu_count() or 1) // len(presets))
    training = train_all(caches, out / "runs", minutes, threads, log, presets, probe_seconds)
    t_trained = time.perf_counter()

    seg_dir = out / "segmenter"
    if not (seg_dir / "segmenter.json").exists():
        train_segmenter(draws["segmenter_cache"], seg_dir,
                        SegmenterConfig(**{"max_minutes": segmenter_minutes or min(10.0, minutes), **(segmenter or {})}),
                        progress=False, log=log)

    jobs = generation_jobs(draws["heldout_dataset"])
    results = {"minutes": minutes, "threads_per_model": threads, "draws": {k: str(v) for k, v in draws.items()},
               **({"autoencoder": str(autoencoder)} if latent else {}),
               "training": training, "volumes": len(jobs), "heldout_masks": heldout, "models": {}}
    figures = {}
    for name, (model, mode) in judged_samplings(presets).items():
        how = sampling_of(out / "runs" / model, model, mode)
        log(f"{name}: generating {len(jobs)} volumes")
        timing = _generate_in_subprocess(out / "runs" / model, jobs, out / "generated" / name, log, how)
        manifest = out / "generated" / name / "evaluate.jsonl"
        with open(manifest, "w") as f:
            for j in jobs:
                line = {"name": j["name"], "generated": f"{j['name']}.nii.gz", "mask": str(j["mask"]),
                        "report": j["report"], "seed": j["seed"], "checkpoint": str(out / "runs" / model),
                        "reference": str(j["reference"])}
                f.write(json.dumps(line) + "\n")
        entries = collect_entries(manifest, allow_absolute=True)
        for e in entries:  # the sidecar's hash groups seeds of one mask (diversity, intervals over masks)
            e.mask_sha256 = json.loads((manifest.parent / f"{e.name}.json").read_text())["mask_sha256"]
        m = evaluate(entries, out / "evaluation" / name, segmenter=seg_dir, reference_dataset=draws["heldout_dataset"],
                     training_cache=caches[model], progress=False, log=log)
        results["models"][name] = {**summarise(m, timing), "model": model}
        figures[name] = {key: per_mask(m, key) for key, _, _ in PAIRED}
    if REFERENCE_MODEL in figures:
        results["paired"] = {other: {key: M.paired_difference(figures[REFERENCE_MODEL][key], figures[other][key])
                                     for key, _, _ in PAIRED}
                             for other in figures if other != REFERENCE_MODEL}
    results["seconds"] = {"training": t_trained - t0, "total": time.perf_counter() - t0}
    (out / "quality.json").write_text(json.dumps(results, indent=2))
    (out / "quality.md").write_text(markdown(results))
    return results


def summarise(m: dict, timing: dict) -> dict:
    a, adh = m["aggregate"], m["adherence"]["generated"]
    g = adh.get
    priv = m["privacy"]
    return {
        **{k: a.get(k) for k in ("dice_mean", "dice_reference_mean", "hu_abs_error_mean", "flow_epe_px",
                                 "flow_epe_frozen_px", "warp_error", "warp_error_reference", "ssim_mean",
                                 "ssim_mean_reference", "adjacent_dhu", "adjacent_dhu_reference", "z_hf",
                                 "z_hf_reference", "inplane_hf_ratio", "tissue_w1_mean",
                                 "soft_tissue_hf_ratio")},
        "tissue_w1_real_vs_real": (m["distribution"].get("tissue_w1_real_vs_real") or {}).get("mean"),
        "phase": g("contrast_phase"), "fatty": g("fatty_liver"), "lesion": g("lesion"),
        "fd": {v: m["distribution"].get(f"fd_{v}") for v in ("axial", "coronal", "sagittal")},
        "diversity_ms_ssim": (m["diversity"].get("ms_ssim") or {}).get("mean"),
        "memorised_fraction": (priv.get("generated") or {}).get("fraction_above_threshold"),
        "memorised_fraction_real": (priv.get("real_held_out") or {}).get("fraction_above_threshold"),
        "segmenter": m.get("segmenter"), "sampling": timing.get("sampling"), "generation_seconds": timing.get("seconds"),
        "generation_batch_volumes": timing.get("batch_volumes"),
    }


def _f(x, fmt="{:.3f}"):
    """A figure as text: a mean with its interval and the number of units (masks) behind it."""
    if x is None:
        return "n/a"
    if isinstance(x, dict):
        if x.get("mean") is None:
            return "n/a"
        lo, hi = x.get("ci95") or (None, None)
        if lo is None or hi is None:  # too few masks for an interval
            return f"{fmt.format(x['mean'])} [no CI, n={x.get('n', '?')}]"
        return f"{fmt.format(x['mean'])} [{fmt.format(lo)}, {fmt.format(hi)}] n={x.get('n', '?')}"
    return fmt.format(x)


def _adh(x: dict | None) -> str:
    if not x:
        return "n/a"
    acc = x.get("accuracy")
    tail = f" / acc {acc:.2f} vs majority {x['majority_rate']:.2f}" if acc is not None and "majority_rate" in x else ""
    return f"{_f(x.get('auroc'), '{:.2f}')}{tail} (n={x.get('n', x.get('n_organs'))})"


def _fd(fd: dict) -> str:
    ax, co, sa = (fd.get(v) for v in ("axial", "coronal", "sagittal"))
    if ax is None or co is None or sa is None:
        return "n/a"
    return f"{ax:.3f} / {co:.3f} / {sa:.3f} (cor/ax {co / ax:.2f}, sag/ax {sa / ax:.2f})" if ax else "n/a"


def markdown(r: dict) -> str:
    names = list(r["models"])
    train = r["training"]
    lines = [f"Training budget {r['minutes']} min per model ({len(train)} side by side, {r['threads_per_model']} "
             f"thread(s) each, each following its learning-rate schedule to its end); {r['heldout_masks']} held-out "
             f"masks (another phantom draw); 95% Student-t intervals over masks, n = masks.", "",
             "| figure | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    v = r["models"]
    rows = [("training steps (planned)", lambda n: f"{train[v[n]['model']]['steps']} ({train[v[n]['model']]['planned_steps']})"),
            ("sampling", lambda n: ", ".join(f"{k} {x}" for k, x in (v[n].get("sampling") or {}).items())),
            ("Dice (segmenter on generated)", lambda n: _f(v[n]["dice_mean"])),
            ("Dice of the segmenter on the real CTs of the same masks", lambda n: _f(v[n]["dice_reference_mean"])),
            ("flow EPE (px)", lambda n: _f(v[n]["flow_epe_px"])),
            ("flow EPE of a frozen volume (mean real flow, px)", lambda n: _f(v[n]["flow_epe_frozen_px"])),
            ("warping error / real CT's", lambda n: f"{_f(v[n]['warp_error'])} / {_f(v[n]['warp_error_reference'])}"),
            ("SSIM along z / real CT's", lambda n: f"{_f(v[n]['ssim_mean'])} / {_f(v[n]['ssim_mean_reference'])}"),
            ("adjacent-slice abs. dHU / real CT's", lambda n: f"{_f(v[n]['adjacent_dhu'], '{:.1f}')} / {_f(v[n]['adjacent_dhu_reference'], '{:.1f}')}"),
            ("through-plane HF share / real CT's", lambda n: f"{_f(v[n]['z_hf'])} / {_f(v[n]['z_hf_reference'])}"),
            ("in-plane HF power / real CT's (1 = as sharp)", lambda n: _f(v[n].get("inplane_hf_ratio"))),
            ("HF power in soft tissue / real CT's (noise and texture)",
             lambda n: _f(v[n].get("soft_tissue_hf_ratio"))),
            ("per-organ abs. HU median error", lambda n: _f(v[n]["hu_abs_error_mean"], "{:.1f}")),
            ("tissue HU W1, mean of 5 tissues / real vs another real CT",
             lambda n: f"{_f(v[n].get('tissue_w1_mean'), '{:.1f}')} / {_f(v[n].get('tissue_w1_real_vs_real'), '{:.1f}')}"),
            ("contrast phase AUROC", lambda n: _adh(v[n]["phase"])),
            ("steatosis AUROC", lambda n: _adh(v[n]["fatty"])),
            ("lesion AUROC (organs)", lambda n: _adh(v[n]["lesion"])),
            ("FD axial / coronal / sagittal (segmenter features)", lambda n: _fd(v[n]["fd"])),
            ("MS-SSIM between seeds", lambda n: _f(v[n]["diversity_ms_ssim"])),
            ("slices with NCC >= 0.95 to a training slice / real held-out slices'",
             lambda n: f"{_f(v[n]['memorised_fraction'])} / {_f(v[n]['memorised_fraction_real'])}")]
    for label, fn in rows:
        lines.append(f"| {label} | " + " | ".join(fn(n) for n in names) + " |")
    if r.get("paired"):
        others = list(r["paired"])
        lines += ["", f"Paired differences, {REFERENCE_MODEL} minus each model, per held-out mask (mean [95% t-interval] "
                      "n masks):", "", "| figure | " + " | ".join(others) + " |", "| --- |" + " ---: |" * len(others)]
        for key, label, fmt in PAIRED:
            lines.append(f"| {label} | " + " | ".join(_f(r["paired"][o][key], fmt) for o in others) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # one model's generation, in its own process (see _generate_in_subprocess)
    spec = json.loads(sys.argv[1])
    result = generate_all(Path(spec["run"]), spec["jobs"], Path(spec["out"]), spec["how"], log=print)
    print(json.dumps(result))
