"""What `tracect evaluate` evaluates: the generated volumes with the mask, report and real CT each came
from, read from a folder of generation sidecars or a JSONL manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tracect.utils.jsonl import iter_jsonl
from tracect.utils.paths import resolve_inside


@dataclass
class EvalEntry:
    """One generated volume with what it was generated from."""

    name: str
    generated: Path
    mask: Path
    report: str = ""
    reference: Path | None = None
    vocabulary: str = "total"
    mask_sha256: str | None = None
    checkpoint: str | None = None
    seed: int | None = None

    @property
    def generation_grid_file(self) -> Path | None:
        """The volume on its generation grid (``NAME.grid.nii.gz`` beside ``NAME.nii.gz``, written by
        ``tracect generate --keep-grid``), if there is one."""
        from tracect.generate.outputs import output_paths

        path = output_paths(Path(self.generated), ("grid",), False)["grid"]
        return path if path.is_file() else None


class EvaluationError(ValueError):
    """Inputs the evaluation cannot use, with the reason."""


def collect_entries(generated: str | Path, reference: str | Path | None = None,
                    allow_absolute: bool = False) -> list[EvalEntry]:
    """Entries from a folder of generated volumes (their JSON sidecars) or a JSONL manifest with
    ``generated``, ``mask`` and optionally ``reference``, ``report``, ``name``, ``vocabulary`` per line
    (paths relative to the manifest, inside its folder unless ``allow_absolute``). ``reference``: a dataset folder whose ``images/NAME.*`` is the
    real CT of the volume called ``NAME``."""
    from tracect.data.layout import load_dataset

    generated = Path(generated)
    entries: list[EvalEntry] = []
    if generated.is_dir():
        for side in sorted(generated.glob("*.json")):
            info = json.loads(side.read_text())
            if not isinstance(info, dict) or "mask_sha256" not in info:
                continue  # not a generation sidecar (a summary, say)
            nifti = Path(info.get("files", {}).get("nifti", side.with_suffix(".nii.gz")))
            if not nifti.is_absolute():
                nifti = side.parent / nifti.name
            if not nifti.exists():
                nifti = side.with_name(side.stem + ".nii.gz")
            if not info.get("mask_source"):
                raise EvaluationError(f"{side}: the sidecar names no mask file (generated from a phantom "
                                      "mask in memory?); use a manifest with 'mask'")
            entries.append(EvalEntry(side.stem, nifti, Path(info["mask_source"]), info.get("report", ""),
                                     vocabulary=info.get("vocabulary", "total"), mask_sha256=info["mask_sha256"],
                                     checkpoint=info.get("checkpoint"), seed=info.get("seed")))
    elif generated.is_file():
        root = generated.parent

        def inside(p):
            return resolve_inside(p, root, allow_absolute)

        for n, line in iter_jsonl(generated, EvaluationError):
            if "generated" not in line or "mask" not in line:
                raise EvaluationError(f"{generated}:{n}: each line needs 'generated' and 'mask'")
            entries.append(EvalEntry(line.get("name", Path(line["generated"]).name.split(".")[0]),
                                     inside(line["generated"]), inside(line["mask"]), line.get("report", ""),
                                     inside(line["reference"]) if line.get("reference") else None,
                                     line.get("vocabulary", "total"), checkpoint=line.get("checkpoint"),
                                     seed=line.get("seed")))
    else:
        raise EvaluationError(f"{generated}: neither a folder of generated volumes nor a manifest")
    if not entries:
        raise EvaluationError(f"{generated}: no generated volumes found (no generation sidecars)")
    if reference is not None:
        ds = load_dataset(reference)
        images = {c.case_id: c.image for c in ds.cases if c.image is not None}
        for e in entries:
            if e.reference is None:
                base = case_of(e.name, images)
                e.reference = images.get(base) if base else None
    return entries


def case_of(name: str, known) -> str | None:
    """The reference case a generated volume belongs to: its name, or its name without a
    ``__suffix`` (``phantom_031__cf`` -> ``phantom_031``)."""
    if name in known:
        return name
    base = name.split("__")[0]
    return base if base in known else None
