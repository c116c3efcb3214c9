"""The dataset layout tracect reads, and discovery of its cases.

::

    DATASET/
      images/CASE.nii.gz        CT in HU (.nii, .nii.gz, .nrrd), or images/CASE/ holding one DICOM series
      masks/CASE.nii.gz         multi-label mask on the image's grid, or masks/CASE/ with per-organ files
      reports.csv               'case,report' or CT-RATE 'VolumeName,Findings_EN,Impressions_EN'
        (or reports.jsonl)      one {"case": ..., "report": ...} per line
      dataset.json              optional: {"vocabulary": "total" | "file.json", "split": {"train": [...], ...}}

Paths named in ``dataset.json`` resolve inside the dataset folder; an absolute path or one that
leaves the folder is refused unless ``allow_outside=True``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from tracect.data.reports import case_id_from_name, read_reports
from tracect.labels.vocabulary import Vocabulary, get_vocabulary

SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset folder that cannot be used at all (not one bad case: those are skipped)."""


@dataclass(frozen=True)
class CaseSource:
    """Where one case's inputs live. ``image``/``mask`` are ``None`` when missing."""

    case_id: str
    image: Path | None
    mask: Path | None
    report: str | None
    split: str


@dataclass(frozen=True)
class Dataset:
    root: Path
    cases: tuple[CaseSource, ...]
    vocabulary: Vocabulary
    info: dict = field(default_factory=dict)


def resolve_inside(root: Path, name: str, allow_outside: bool = False) -> Path:
    """``root/name``, refusing absolute paths and ``..`` escapes unless ``allow_outside``."""
    path = (root / name).resolve()
    if not allow_outside and (Path(name).is_absolute() or not path.is_relative_to(root.resolve())):
        raise DatasetError(f"path '{name}' leaves the dataset folder {root}; absolute paths must be allowed explicitly")
    return path


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


def load_dataset(root: str | Path, allow_outside: bool = False) -> Dataset:
    """Discover cases, reports, vocabulary and split of a dataset folder."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    if not (root / "images").is_dir():
        raise DatasetError(f"{root}: no images/ folder (see the dataset layout in docs/data.md)")
    info: dict = {}
    if (root / "dataset.json").is_file():
        try:
            info = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f"{root.name}/dataset.json: invalid JSON ({e})") from None
        if not isinstance(info, dict):
            raise DatasetError(f"{root.name}/dataset.json: expected an object")
    vocab_spec = info.get("vocabulary", "total")
    if isinstance(vocab_spec, dict):
        vocabulary = Vocabulary.from_json(vocab_spec)
    elif vocab_spec in ("total", "tracect"):
        vocabulary = get_vocabulary(vocab_spec)
    else:
        vocabulary = get_vocabulary(resolve_inside(root, str(vocab_spec), allow_outside))

    images, masks = _entries(root / "images"), _entries(root / "masks")
    reports = read_reports(root)
    split_of: dict[str, str] = {}
    for split, ids in (info.get("split") or {}).items():
        if split not in SPLITS:
            raise DatasetError(f"{root.name}/dataset.json: unknown split '{split}' (use {SPLITS})")
        for case in ids:
            split_of[str(case)] = split
    cases = tuple(
        CaseSource(case, images.get(case), masks.get(case), reports.get(case),
                   split_of.get(case, default_split(case)))
        for case in sorted(set(images) | set(masks)))
    return Dataset(root, cases, vocabulary, info)
