"""Several volumes in one call: jobs from the command line or a JSONL manifest, one loaded model.

A job whose sidecar already exists is skipped (so a rerun after a crash finishes the set without
duplicates); a job that fails (a bad mask) is reported and the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tracect.data.layout import resolve_inside
from tracect.utils.jsonl import iter_jsonl


@dataclass(frozen=True)
class Job:
    name: str | None
    mask: str | None
    slices: int | None
    report: str
    seed: int
    out: Path | None = None

    @staticmethod
    def read_manifest(path: Path, allow_outside: bool = False) -> list["Job"]:
        """JSONL: ``{"mask": "m.nii.gz" | "slices": N, "report": "...", "seed": 0, "name": "vol1"}``.

        Mask paths are relative to the manifest's folder and must stay inside it unless
        ``allow_outside``."""
        jobs = []
        for n, d in iter_jsonl(path):
            if "mask" not in d and "slices" not in d:
                raise ValueError(f"{path.name}:{n}: each job needs 'mask' or 'slices'")
            mask = str(resolve_inside(path.parent, d["mask"], allow_outside)) if d.get("mask") else None
            name = str(d.get("name") or f"vol_{n:05d}")
            if "/" in name or name.startswith("."):
                raise ValueError(f"{path.name}:{n}: name '{name}' must be a plain file name")
            jobs.append(Job(name, mask, int(d["slices"]) if d.get("slices") else None,
                            str(d.get("report", "")), int(d.get("seed", 0))))
        return jobs


def _mask_for(job: Job, vocabulary: str):
    from tracect.io.readers import read_mask
    from tracect.labels.vocabulary import get_vocabulary
    from tracect.phantom import make_mask

    if job.mask is not None:
        return read_mask(job.mask, get_vocabulary(vocabulary)), vocabulary
    if not job.slices or job.slices < 1:
        raise ValueError("slices must be >= 1")
    # the phantom's own field of view; generation resamples it to the model's grid
    return make_mask(job.slices, seed=job.seed), "total"


def run_jobs(jobs: list[Job], checkpoint, out_dir: Path, *, vocabulary: str = "total", steps=None,
             guidance=None, mode: str = "sequential", overlap: int = 1, formats=("nifti",),
             pictures: bool = True, overwrite: bool = False, device: str = "auto", progress: bool = True,
             log=print, generator=None, skip_existing: bool = True) -> dict:
    """Generate every job with one model; returns ``{"done", "skipped", "failed", "failures", "outputs"}``.

    With ``skip_existing`` (manifests), a job whose sidecar exists is skipped; without it (a volume
    named on the command line), an existing output is an error before any work, unless ``overwrite``.
    """
    from tracect.generate.outputs import check_writable, output_paths, write_outputs
    from tracect.generate.pipeline import Generator

    summary = {"done": 0, "skipped": 0, "failed": 0, "failures": [], "outputs": []}
    todo = []
    for i, job in enumerate(jobs):
        out = job.out or Path(out_dir) / f"{job.name or f'vol_{i:05d}'}.nii.gz"
        if output_paths(out)["sidecar"].exists() and not overwrite and skip_existing:
            summary["skipped"] += 1
            continue
        if not skip_existing:
            check_writable(output_paths(out, formats, pictures), overwrite)
        todo.append((job, out))
    if not todo:
        return summary
    gen = generator or Generator.from_checkpoint(checkpoint, device=device)
    for job, out in todo:
        label = job.name or str(out)
        try:
            mask, vocab = _mask_for(job, vocabulary)
            result = gen.generate(mask, job.report, vocabulary=vocab, seed=job.seed, steps=steps,
                                  guidance=guidance, mode=mode, overlap=overlap, progress=progress, log=log)
            write_outputs(result, out, formats, pictures, overwrite)
        except (ValueError, OSError) as e:  # a bad job must not stop the others
            summary["failed"] += 1
            summary["failures"].append({"job": label, "error": str(e)})
            log(f"failed {label}: {e}")
            continue
        summary["done"] += 1
        summary["outputs"].append(str(out))
        log(f"wrote {out} ({result.info['seconds']:.1f} s, {result.ct.shape})")
    return summary
