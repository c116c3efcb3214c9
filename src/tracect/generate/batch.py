"""Many volumes with one loaded model: jobs from the command line or a JSONL manifest, split into
shards across processes or GPUs.

A job is *finished* when its volume and its sidecar are both in place. Every output is written
atomically and the sidecar last (:func:`~tracect.generate.outputs.write_outputs`), so a volume without
a sidecar is the remains of an interrupted run: it is made again, never counted as done. A rerun after
a crash therefore finishes the set without duplicates; a job that fails (a bad mask) is reported with
its reason and the others go on.

Shards: job ``j`` (0-based manifest order) belongs to shard ``j % n + 1`` of ``n``, so shards are
disjoint, cover every job, and do not depend on which jobs are already done.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tracect.generate.sampling import Sampling
from tracect.utils.jsonl import iter_jsonl
from tracect.utils.paths import UnsafePathError, resolve_inside

MANIFEST_KEYS = ("name", "mask", "slices", "report", "report_file", "seed", "body")
PHANTOM_SIZE = 64  # in-plane matrix of the phantom mask a ``slices`` job is generated on
# every later job would fail the same way: stop instead of failing them one by one
FATAL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class ManifestError(ValueError):
    """A manifest that cannot be run at all (not one bad job: those fail alone)."""


def _inside(path: str, root: Path, allow_absolute: bool, where: str) -> Path:
    """:func:`resolve_inside` with the manifest line in the message."""
    try:
        return resolve_inside(path, root, allow_absolute)
    except UnsafePathError as e:
        raise UnsafePathError(f"{where}: {e}") from None


@dataclass(frozen=True)
class Job:
    """One volume: a mask file (or a phantom mask of ``slices`` slices), a report and a seed.

    ``report_file`` (read when the job runs) replaces ``report``; ``out`` overrides the
    ``OUT_DIR/NAME.nii.gz`` target."""

    name: str | None
    mask: str | None
    slices: int | None
    report: str
    seed: int
    out: Path | None = None
    report_file: Path | None = None
    body: str | None = None  # a body mask on the mask's grid (tracect.generate.masks.prepare_mask)

    @staticmethod
    def read_manifest(path: str | Path, allow_absolute: bool = False) -> list["Job"]:
        """Jobs of a JSONL manifest, one object per line::

            {"name": "a", "mask": "masks/a.nii.gz", "report": "...", "seed": 0}
            {"name": "b", "slices": 120, "report_file": "reports/b.txt", "seed": 1}

        ``mask`` or ``slices`` (not both), and with ``mask`` optionally ``body`` (a body mask on its
        grid, for a mask without a body label); ``report`` or ``report_file`` (UTF-8), default empty;
        ``seed`` default 0; ``name`` default ``vol_LINE``. File paths are relative to the manifest's
        folder and must stay inside it; absolute paths need ``allow_absolute``. Raises
        :class:`ManifestError` (or :class:`~tracect.utils.paths.UnsafePathError`) naming the line.
        """
        path = Path(path)
        root = path.parent
        jobs, seen = [], {}
        for n, d in iter_jsonl(path, ManifestError):
            where = f"{path.name}:{n}"
            unknown = sorted(set(d) - set(MANIFEST_KEYS))
            if unknown:  # a misspelt "seed" would silently give every volume seed 0
                raise ManifestError(f"{where}: unknown key(s) {unknown}; a job takes {list(MANIFEST_KEYS)}")
            mask, slices = d.get("mask"), d.get("slices")
            if (mask is None) == (slices is None):
                raise ManifestError(f"{where}: give exactly one of 'mask' or 'slices'")
            if mask is not None:
                mask = str(_inside(_text(d, "mask", where), root, allow_absolute, where))
            else:
                slices = _integer(d, "slices", where, minimum=1)
            body = d.get("body")
            if body is not None:
                if mask is None:
                    raise ManifestError(f"{where}: 'body' goes with 'mask' (a phantom mask has its body)")
                body = str(_inside(_text(d, "body", where), root, allow_absolute, where))
            if "report" in d and "report_file" in d:
                raise ManifestError(f"{where}: give 'report' or 'report_file', not both")
            report = _text(d, "report", where) if "report" in d else ""
            report_file = (_inside(_text(d, "report_file", where), root, allow_absolute, where)
                           if "report_file" in d else None)
            seed = _integer(d, "seed", where, minimum=0) if "seed" in d else 0
            name = _text(d, "name", where) if "name" in d else f"vol_{n:05d}"
            if not name or name.startswith(".") or any(c in name for c in "/\\\0") or len(name) > 200:
                raise ManifestError(f"{where}: name {name!r} must be a plain file name "
                                    "(no folders, not starting with '.')")
            # two jobs with one name would write one file; case-folded for case-insensitive disks
            if name.casefold() in seen:
                raise ManifestError(f"{where}: name {name!r} is already used on line {seen[name.casefold()]}")
            seen[name.casefold()] = n
            jobs.append(Job(name, mask, slices, report, seed, report_file=report_file, body=body))
        if not jobs:
            raise ManifestError(f"{path.name}: no jobs")
        return jobs


def _text(d: dict, key: str, where: str) -> str:
    if not isinstance(d[key], str):
        raise ManifestError(f"{where}: '{key}' must be a string, got {d[key]!r}")
    return d[key]


def _integer(d: dict, key: str, where: str, minimum: int) -> int:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum or v >= 2 ** 63:
        raise ManifestError(f"{where}: '{key}' must be an integer >= {minimum}, got {v!r}")
    return v


# ----------------------------------------------------------------------------------- shards


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``, 1-based like the ``--shard 2/4`` that names it."""

    index: int = 1
    count: int = 1

    def __post_init__(self):
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard must be i/n with 1 <= i <= n, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        try:
            i, n = (int(v) for v in text.split("/"))
        except ValueError:
            raise ValueError(f"--shard takes i/n (e.g. 1/4, 1-based), got {text!r}") from None
        return cls(i, n)

    @classmethod
    def resolve(cls, text: str | None = None, environ=os.environ) -> "Shard":
        """From ``--shard i/n``, else from torchrun's ``RANK``/``WORLD_SIZE``, else the whole set."""
        world = int(environ.get("WORLD_SIZE", "1"))
        if text is not None:
            if world > 1:
                raise ValueError("--shard and torchrun both split the jobs: use one of them")
            return cls.parse(text)
        if world > 1:
            if "RANK" not in environ:
                raise ValueError("WORLD_SIZE is set but RANK is not: start with torchrun or use --shard")
            return cls(int(environ["RANK"]) + 1, world)
        return cls()

    def take(self, jobs: list) -> list:
        """This shard's jobs: positions ``index - 1``, ``index - 1 + count``, ... of ``jobs``."""
        return jobs[self.index - 1::self.count]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def summary_name(self) -> str:
        return f"shard-{self.index}-of-{self.count}.json"


def device_for_process(device: str, environ=os.environ) -> str:
    """Under torchrun, ``auto``/``cuda`` become the process's own GPU, ``cuda:LOCAL_RANK``."""
    if "LOCAL_RANK" not in environ or device not in ("auto", "cuda"):
        return device
    import torch

    if not torch.cuda.is_available():
        return device
    local = int(environ["LOCAL_RANK"])
    if local >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s) visible; "
                         "use --nproc_per_node <= the GPU count")
    return f"cuda:{local}"


def wait_for_other_processes(environ=os.environ) -> bool:
    """Under torchrun with several processes, block until every process reaches this point.

    torchrun stops all workers as soon as one exits non-zero, so a process whose shard had a failed
    job must not exit before the others have finished theirs. Returns whether it waited.
    """
    if int(environ.get("WORLD_SIZE", "1")) <= 1 or "MASTER_ADDR" not in environ:
        return False
    import datetime

    import torch.distributed as dist

    # the group is made here, at the end: shards are independent and need no communication while
    # they work; the timeout covers the slowest shard finishing long after the fastest
    dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return True


def combine_summaries(folder: str | Path, count: int) -> dict:
    """Totals of the ``count`` shard summaries in ``folder`` (those that exist)."""
    total = {"done": 0, "skipped": 0, "failed": 0, "not_started": 0, "shards": 0}
    for i in range(1, count + 1):
        p = Path(folder) / Shard(i, count).summary_name
        if p.is_file():
            s = json.loads(p.read_text())
            for k in ("done", "skipped", "failed", "not_started"):
                total[k] += s.get(k, 0)
            total["shards"] += 1
    return total


# ------------------------------------------------------------------------------------- jobs


def is_finished(out: Path) -> bool:
    """The volume and its sidecar (written last) are both in place."""
    from tracect.generate.outputs import output_paths

    paths = output_paths(Path(out))
    return paths["sidecar"].is_file() and paths["nifti"].is_file()


def remove_leftovers(folder: Path, targets: set[str], log=print) -> int:
    """Remove temporary files in ``folder`` that a killed run left while writing one of ``targets``
    (file names). Temporaries of other targets are left alone: another shard may be writing them."""
    from tracect.utils.atomic import temporary_target

    if not folder.is_dir():
        return 0
    removed = 0
    for entry in folder.iterdir():
        if temporary_target(entry.name) in targets:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed += 1
    if removed:
        log(f"removed {removed} temporary file(s) left by an interrupted run")
    return removed


def estimate_output_bytes(jobs: list[tuple[Job, Path]], formats=("nifti",), pictures: bool = True) -> int:
    """Bytes the outputs of ``jobs`` take at most, from mask headers (no voxel data read).

    Per voxel: 2 bytes of int16 NIfTI before compression, 2 more with DICOM, about 1 for the GIF;
    plus the montage and the sidecar. A mask whose header cannot be read counts as the mean of the
    others (it will most likely fail and write nothing)."""
    from tracect.utils.preflight import header_shape

    per_voxel = 2 + (2 if "dicom" in formats else 0) + (1 if pictures else 0)
    fixed = 16 * 1024 + (400 * 1024 if pictures else 0)
    voxels, unknown = [], 0
    for job, _ in jobs:
        if job.mask is None:
            voxels.append((job.slices or 1) * PHANTOM_SIZE * PHANTOM_SIZE)
            continue
        found = header_shape(job.mask)
        if found is None or len(found[0]) < 3:
            unknown += 1
        else:
            s = found[0]
            voxels.append(s[0] * s[1] * s[2])
    mean = sum(voxels) / len(voxels) if voxels else 0
    return int((sum(voxels) + unknown * mean) * per_voxel + len(jobs) * fixed)


def _mask_for(job: Job, vocabulary: str, strict_labels: bool = False):
    from tracect.io.readers import read_mask
    from tracect.labels.vocabulary import get_vocabulary
    from tracect.phantom import make_mask

    if job.mask is not None:
        return read_mask(job.mask, get_vocabulary(vocabulary), strict=strict_labels), vocabulary
    if not job.slices or job.slices < 1:
        raise ValueError("slices must be >= 1")
    # the phantom's own field of view; generation resamples it to the model's grid
    return make_mask(job.slices, seed=job.seed, size=PHANTOM_SIZE), "total"


def run_jobs(jobs: list[Job], checkpoint, out_dir: Path, *, vocabulary: str = "total",
             sampling: Sampling | None = None, batch_volumes: int = 8, formats=("nifti",),
             pictures: bool = True, overwrite: bool = False, device: str = "auto", progress: bool = True,
             log=print, generator=None, skip_existing: bool = True, space_check: bool = True,
             summary_path: str | Path | None = None, allow_pickle: bool = False,
             strict_labels: bool = False, grain=None) -> dict:
    """Generate every job with one model, ``sampling`` for all, ``batch_volumes`` volumes in lockstep
    (sequential mode: their windows share each network call; see :meth:`Generator.generate_many`).

    Returns ``{"done", "skipped", "failed", "not_started", "failures", "outputs", "stopped",
    "seconds"}``, also written to ``summary_path`` (JSON) if given. With ``skip_existing`` (manifests)
    a finished job is skipped and the remains of an unfinished one are replaced; without it (volumes
    named on the command line) an existing output is an error before any work, unless ``overwrite``.
    The output folder's writability and free space are checked before the model is loaded
    (:class:`~tracect.utils.preflight.PreflightError`). ``strict_labels``: an organ folder with a file
    named outside ``vocabulary`` fails its job instead of being merged or ignored with a note.
    ``grain``: a :class:`~tracect.generate.grain.Grain` for every volume (None: none).
    """
    from tracect.generate.outputs import check_writable, output_paths
    from tracect.utils import preflight

    if batch_volumes < 1:
        raise ValueError(f"batch_volumes must be >= 1, got {batch_volumes}")
    t0 = time.perf_counter()
    summary = {"done": 0, "skipped": 0, "failed": 0, "not_started": 0, "failures": [], "outputs": [],
               "stopped": None, "seconds": 0.0}
    targets = [(job, Path(job.out or Path(out_dir) / f"{job.name or f'vol_{i:05d}'}.nii.gz"))
               for i, job in enumerate(jobs)]
    todo = []
    for job, out in targets:
        if skip_existing and not overwrite and is_finished(out):
            summary["skipped"] += 1
        else:
            todo.append((job, out))
    folders = {out.parent for _, out in targets} | ({Path(out_dir)} if summary_path else set())
    for folder in sorted(folders):
        preflight.check_writable(folder)
        # every file any format could have left, so a rerun with other options cleans up too
        mine = {p.name for _, out in targets if out.parent == folder
                for p in output_paths(out, ("nifti", "dicom", "grid"), True).values()}
        remove_leftovers(folder, mine, log)
    if not skip_existing:
        for _, out in todo:
            check_writable(output_paths(out, formats, pictures), overwrite)
    if todo and space_check:
        for folder in sorted({out.parent for _, out in todo}):
            mine = [(j, o) for j, o in todo if o.parent == folder]
            preflight.check_free_space(folder, estimate_output_bytes(mine, formats, pictures),
                                       f"{len(mine)} volume(s)")
    if todo:
        _generate_all(todo, summary, checkpoint, vocabulary=vocabulary, sampling=sampling or Sampling(),
                      batch_volumes=batch_volumes, formats=formats, pictures=pictures,
                      overwrite=overwrite or skip_existing, device=device, progress=progress, log=log,
                      generator=generator, allow_pickle=allow_pickle, strict_labels=strict_labels, grain=grain)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    if summary_path is not None:
        from tracect.utils.atomic import write_json

        summary_path = Path(summary_path)
        remove_leftovers(summary_path.parent, {summary_path.name}, log)
        write_json(summary_path, summary)
    return summary


def _generate_all(todo, summary, checkpoint, *, vocabulary, sampling, batch_volumes, formats, pictures,
                  overwrite, device, progress, log, generator, allow_pickle, strict_labels, grain) -> None:
    from tracect.generate.outputs import write_outputs
    from tracect.generate.pipeline import Generator

    gen = generator or Generator.from_checkpoint(checkpoint, device=device, allow_pickle=allow_pickle)
    open_jobs = {id(job): (job, out) for job, out in todo}  # neither written nor failed yet

    def fail(job, out, e: Exception) -> None:
        label = job.name or str(out)
        reason = str(e) if isinstance(e, (ValueError, OSError)) else f"{type(e).__name__}: {e}"
        summary["failed"] += 1
        summary["failures"].append({"job": label, "error": reason})
        open_jobs.pop(id(job), None)
        log(f"failed {label}: {reason}")

    def plans():
        """Each job's plan, made when the cohort has room for it; a bad job fails alone."""
        from tracect.io.readers import read_volume

        for job, out in todo:
            try:
                report = job.report
                if job.report_file is not None:
                    report = Path(job.report_file).read_text(encoding="utf-8").strip()
                mask, vocab = _mask_for(job, vocabulary, strict_labels)
                body = read_volume(job.body) if job.body is not None else None
                yield gen.plan(mask, report, vocabulary=vocab, seed=job.seed, sampling=sampling, log=log,
                               key=(job, out), body=body)
            except Exception as e:  # a bad job must not stop the others
                fail(job, out, e)

    cohort = gen.generate_many(plans(), sampling, batch_volumes, progress, grain)
    try:
        for plan, result in cohort:
            job, out = plan.key
            try:
                # without a sidecar, files already at ``out`` are the remains of an interrupted attempt
                write_outputs(result, out, formats, pictures, overwrite)
            except Exception as e:
                fail(job, out, e)
                if isinstance(e, OSError) and e.errno in FATAL_ERRNOS:  # every later job would fail too
                    summary["not_started"] = len(open_jobs)
                    summary["stopped"] = f"{os.strerror(e.errno)} while writing {out.parent}"
                    log(f"stopping: {summary['stopped']}")
                    return
                continue
            open_jobs.pop(id(job), None)
            summary["done"] += 1
            summary["outputs"].append(str(out))
            log(f"wrote {out} ({result.info['seconds']:.1f} s, {result.ct.shape})")
    except Exception as e:  # the sampler itself failed: the volumes in flight and the rest cannot be made
        for job, out in list(open_jobs.values()):
            fail(job, out, e)
    finally:
        cohort.close()
