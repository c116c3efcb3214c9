"""The dataset layout tracect reads, and discovery of its cases.

::

    DATASET/
      images/CASE.nii.gz        CT in HU (.nii, .nii.gz, .nrrd), or images/CASE/ holding one DICOM series
      masks/CASE.nii.gz         multi-label mask on the image's grid, or masks/CASE/ with per-organ files
      reports.csv               'case,report' or CT-RATE 'VolumeName,Findings_EN,Impressions_EN'
        (or reports.jsonl)      one {"case": ..., "report": ...} per line
      dataset.json              optional: {"vocabulary": "total" | "file.json", "split": {"train": [...], ...}}

Paths named in ``dataset.json`` resolve inside the dataset folder: one that leaves it (``..``, or a
symbolic link pointing out) is refused, and so is an absolute path unless ``allow_absolute=True``.
Files found by listing ``images/`` and ``masks/`` may be symbolic links to anywhere: whoever built the
folder chose them, while a path written in a table may come from anyone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from tracect.data.reports import case_id_from_name, read_reports
from tracect.labels.vocabulary import BUILTIN, Vocabulary, get_vocabulary
from tracect.utils import paths

SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset folder that cannot be used at all (not one bad case: those are skipped)."""


@dataclass(frozen=True)
class CaseSource:
    """Where one case's inputs live. ``image``/``mask`` are ``None`` when missing. ``lesions``: the
    focal lesions of ``findings.jsonl`` (organ, kind, diameter_mm, center_ras_mm), when the dataset
    knows where they are (the phantom does); they become the cache's lesion map."""

    case_id: str
    image: Path | None
    mask: Path | None
    report: str | None
    split: str
    lesions: tuple = ()


@dataclass(frozen=True)
class Dataset:
    root: Path
    cases: tuple[CaseSource, ...]
    vocabulary: Vocabulary
    info: dict = field(default_factory=dict)


def _vocabulary(root: Path, spec, allow_absolute: bool) -> Vocabulary:
    """The ``"vocabulary"`` entry of ``dataset.json``: a built-in name, a JSON file, or inline labels."""
    where = f"{root.name}/dataset.json"
    if isinstance(spec, dict):
        try:
            return Vocabulary.from_json(spec)
        except (ValueError, TypeError, AttributeError) as e:
            raise DatasetError(f"{where}: inline vocabulary unusable ({e})") from None
    if not isinstance(spec, str) or not spec:
        raise DatasetError(f"{where}: 'vocabulary' must be a built-in name {sorted(BUILTIN)}, a JSON file "
                           f"in the dataset folder or an object of labels, not {json.dumps(spec)[:80]}")
    if spec in BUILTIN:
        return get_vocabulary(spec)
    try:
        path = paths.resolve_inside(spec, root, allow_absolute=allow_absolute)
    except paths.UnsafePathError as e:
        raise DatasetError(f"{where}: vocabulary '{spec}' leaves the dataset folder ({e})") from None
    try:
        return get_vocabulary(path)
    except (ValueError, TypeError, AttributeError, RecursionError, OSError) as e:
        raise DatasetError(f"{where}: vocabulary file '{spec}' unusable ({type(e).__name__}: {str(e)[:160]})") from None


def _splits(root: Path, spec) -> dict[str, str]:
    """The ``"split"`` entry of ``dataset.json`` -> case id: split name."""
    where = f"{root.name}/dataset.json"
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise DatasetError(f"{where}: 'split' must be an object {{\"train\": [case ids], ...}}")
    split_of: dict[str, str] = {}
    for split, ids in spec.items():
        if split not in SPLITS:
            raise DatasetError(f"{where}: unknown split '{split}' (use {SPLITS})")
        if not isinstance(ids, list) or not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in ids):
            raise DatasetError(f"{where}: split '{split}' must be a list of case ids")
        for case in map(str, ids):  # numeric ids name files too: 123 is case "123"
            if split_of.setdefault(case, split) != split:
                raise DatasetError(f"{where}: case '{case}' is in splits '{split_of[case]}' and '{split}'")
    return split_of


def _entries(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        case = case_id_from_name(p.name) if p.is_file() else p.name
        if p.is_file() and case == p.name:  # not a volume file (README, thumbnail, ...)
            continue
        if case in out:
            raise DatasetError(f"{folder.name}: case '{case}' appears twice ({out[case].name}, {p.name})")
        out[case] = p
    return out


def default_split(case_id: str, fractions=(0.8, 0.1, 0.1)) -> str:
    """A split from a hash of the case id: stable when cases are added or removed."""
    u = int(hashlib.sha256(case_id.encode()).hexdigest()[:8], 16) / 0x100000000
    return "train" if u < fractions[0] else "val" if u < fractions[0] + fractions[1] else "test"


LESION_KEYS = ("organ", "kind", "diameter_mm", "center_ras_mm")


def read_lesions(root: Path) -> dict[str, tuple]:
    """``findings.jsonl`` (optional; the phantom writes it): one JSON object per line with ``case`` and
    ``lesions``, a list of ``{organ, kind, diameter_mm, center_ras_mm}`` (more keys are ignored) ->
    case -> lesions. A malformed line is a :class:`DatasetError`."""
    path = root / "findings.jsonl"
    if not path.is_file():
        return {}
    from tracect.data.findings import LESION_KINDS

    out: dict[str, tuple] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            lesions = tuple({k: les[k] for k in LESION_KEYS} for les in obj.get("lesions", []))
            for les in lesions:
                if les["kind"] not in LESION_KINDS or float(les["diameter_mm"]) <= 0 or len(les["center_ras_mm"]) != 3:
                    raise ValueError(f"lesion {les}")
            out[str(obj["case"])] = lesions
        except (ValueError, KeyError, TypeError) as e:
            raise DatasetError(f"{root.name}/findings.jsonl:{n}: unusable ({type(e).__name__}: {str(e)[:120]})") from None
    return out


def load_dataset(root: str | Path, allow_absolute: bool = False) -> Dataset:
    """Discover cases, reports, vocabulary and split of a dataset folder.

    ``allow_absolute`` lets ``dataset.json`` name files by absolute path; paths that climb out of the
    folder with ``..`` or a symbolic link are refused either way (:class:`DatasetError`).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    if not (root / "images").is_dir():
        raise DatasetError(f"{root}: no images/ folder (see the dataset layout in docs/data.md)")
    info: dict = {}
    if (root / "dataset.json").is_file():
        try:
            info = json.loads((root / "dataset.json").read_bytes().decode("utf-8-sig"))
        except (ValueError, RecursionError) as e:  # bad UTF-8 or JSON, nesting or numbers too big
            raise DatasetError(f"{root.name}/dataset.json: invalid JSON ({type(e).__name__}: {str(e)[:120]})") from None
        if not isinstance(info, dict):
            raise DatasetError(f"{root.name}/dataset.json: expected an object")
    vocabulary = _vocabulary(root, info.get("vocabulary", "total"), allow_absolute)
    split_of = _splits(root, info.get("split"))

    images, masks = _entries(root / "images"), _entries(root / "masks")
    reports = read_reports(root)
    lesions = read_lesions(root)
    cases = tuple(
        CaseSource(case, images.get(case), masks.get(case), reports.get(case),
                   split_of.get(case, default_split(case)), lesions.get(case, ()))
        for case in sorted(set(images) | set(masks)))
    return Dataset(root, cases, vocabulary, info)
