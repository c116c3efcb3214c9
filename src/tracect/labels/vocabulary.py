"""Label vocabularies (id -> name tables) and the remapping between them.

Built in:
- ``total``: TotalSegmentator v2 ``total`` task, 117 classes (ids and names as that task defines them).
- ``tracect``: the coarse organ set the generative model is trained on (:data:`COARSE_GROUPS`), with a
  ``body`` class for tissue inside the body envelope that no organ label covers.
- ``tissue``: what Hounsfield units alone tell apart (fat, soft tissue, lung, gas, bone, enhancing
  vessel), the vocabulary of ``tracect label`` (:mod:`tracect.labels.pseudo`).
- ``tracect-fat``: ``tracect`` and a ``fat`` class, for models that learn from pseudo-labelled real CT:
  its pseudo-labels tell fat from soft tissue, which ``tracect``'s ``body`` merges.

A user vocabulary is a JSON file ``{"name": "...", "labels": {"1": "liver", ...}}`` (or a plain
``{"1": "liver", ...}`` mapping). A remap table maps source names to target names; unknown source
labels are reported (:class:`UnknownLabelsError`), never dropped silently.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Mapping

import numpy as np

BACKGROUND = 0


class UnknownLabelsError(ValueError):
    """Raised when a mask holds label ids that its vocabulary does not define."""

    def __init__(self, vocabulary: str, ids: list[int]):
        self.vocabulary = vocabulary
        self.ids = sorted(int(i) for i in ids)
        super().__init__(f"labels {self.ids} are not in vocabulary '{vocabulary}'")


@dataclass(frozen=True)
class Vocabulary:
    """An id -> name table. Id 0 is always background and is not listed in ``labels``."""

    name: str
    labels: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self):
        if BACKGROUND in self.labels:
            raise ValueError(f"vocabulary '{self.name}': id 0 is reserved for background")
        names = list(self.labels.values())
        if len(set(names)) != len(names):
            raise ValueError(f"vocabulary '{self.name}': label names must be unique")
        if any(int(i) < 0 or int(i) > 65535 for i in self.labels):
            raise ValueError(f"vocabulary '{self.name}': ids must be in 1..65535")

    @property
    def ids(self) -> list[int]:
        return sorted(self.labels)

    @property
    def num_classes(self) -> int:
        """Number of classes including background (for one-hot channels)."""
        return max(self.labels, default=0) + 1

    def id_of(self, name: str) -> int:
        for i, n in self.labels.items():
            if n == name:
                return i
        raise KeyError(f"'{name}' is not a label of vocabulary '{self.name}'")

    def unknown_ids(self, mask: np.ndarray) -> list[int]:
        present = np.unique(mask)
        return [int(i) for i in present if i != BACKGROUND and int(i) not in self.labels]

    def check(self, mask: np.ndarray) -> None:
        bad = self.unknown_ids(mask)
        if bad:
            raise UnknownLabelsError(self.name, bad)

    def to_json(self) -> dict:
        return {"name": self.name, "labels": {str(k): v for k, v in sorted(self.labels.items())}}

    @classmethod
    def from_json(cls, data: Mapping, name: str | None = None) -> "Vocabulary":
        labels = data.get("labels", data) if isinstance(data, Mapping) else data
        try:
            parsed = {int(k): str(v) for k, v in labels.items() if int(k) != BACKGROUND}
        except (TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"vocabulary file is not an id -> name mapping: {e}") from None
        return cls(name=str(data.get("name", name or "custom")), labels=parsed)


# The coarse organ set of the generative model: each target lists source label names (shell-style
# patterns). Grouping keeps the one-hot input small while every structure the phantom draws and the
# reports mention keeps its own class. The first names of each group are TotalSegmentator `total`
# labels; the rest are names from its other tasks (vessels, body, tissue types, heart chambers,
# appendicular bones, liver segments, head and neck, ...), which users find in the same output folders,
# so that masks and organ folders from those tasks fold into the same coarse labels. Groups are tried in
# order and the first match wins.
COARSE_GROUPS: dict[str, list[str]] = {
    # inside the body envelope, no organ label (fat, muscle, connective tissue)
    "body": ["body", "body_trunc", "body_extremities", "skin", "subcutaneous_fat", "torso_fat",
             "intermuscular_fat"],
    "lung": ["lung_*", "trachea", "lung", "bronchus*", "bronchi*"],
    "liver": ["liver", "liver_*"],  # liver_vessels, liver_tumor, liver_segment_1..8
    "spleen": ["spleen"],
    "kidney": ["kidney_left", "kidney_right", "kidney_cyst_*", "adrenal_gland_*", "kidney"],
    "aorta": ["aorta", "iliac_artery_*", "brachiocephalic_trunk", "subclavian_artery_*",
              "common_carotid_artery_*", "celiac_trunk", "*_artery", "*_artery_*", "*_arteries"],
    "vein": ["inferior_vena_cava", "superior_vena_cava", "portal_vein_and_splenic_vein",
             "iliac_vena_*", "brachiocephalic_vein_*", "pulmonary_vein", "*_vein", "*_vein_*", "*_veins",
             "*vena_cava*"],
    "heart": ["heart", "atrial_appendage_left", "heart_*", "atrial_appendage_*", "pericardium"],
    "stomach": ["stomach", "esophagus"],
    "bowel": ["small_bowel", "duodenum", "colon", "rectum", "appendix"],
    "pancreas": ["pancreas"],
    "gallbladder": ["gallbladder"],
    "bladder": ["urinary_bladder", "prostate"],
    "bone": ["vertebrae_*", "rib_*", "sacrum", "sternum", "costal_cartilages", "hip_*", "femur_*",
             "humerus_*", "scapula_*", "clavicula_*", "skull", "vertebrae", "patella*", "tibia*",
             "fibula*", "tarsal*", "metatarsal*", "phalanges_*", "ulna*", "radius*", "carpal*",
             "metacarpal*", "mandible*", "hyoid", "teeth*", "tooth_*", "zygomatic_arch_*",
             "styloid_process_*", "skull_*"],
    "muscle": ["autochthon_*", "iliopsoas_*", "gluteus_*", "skeletal_muscle", "*_muscle", "*_muscle_*",
               "*_muscles", "sternocleidomastoid_*", "trapezius_*", "quadriceps_femoris_*", "sartorius_*",
               "thigh_*_compartment_*", "pectoralis_*", "rectus_abdominis_*", "*oblique*",
               "transversus_abdominis_*", "deltoid_*", "latissimus_dorsi_*", "psoas_*", "iliacus_*"],
    "other": ["thyroid_gland", "spinal_cord", "brain", "spinal_canal", "brainstem", "eye_*",
              "optic_nerve_*", "parotid_gland_*", "submandibular_gland_*", "breast*", "larynx*",
              "thyroid_cartilage", "cricoid_cartilage", "intervertebral_discs", "intervertebral_disc_*"],
}


# The ``tissue`` pseudo-labels in the ``tracect`` vocabulary, so that pseudo-labelled real CT, phantoms and
# TotalSegmentator masks train and drive one model: fat and soft tissue are what ``body`` stands for
# (tissue with no organ label; HU cannot tell the organs apart), gas inside the body is bowel or stomach
# gas (airways join the lungs' component), and the enhancing-vessel class becomes ``aorta``, the label
# whose HU follows the contrast phase (it also takes veins and enhancing kidneys when contrast fills them).
TISSUE_GROUPS: dict[str, list[str]] = {
    "body": ["fat", "soft_tissue"], "lung": ["lung"], "bowel": ["gas"], "bone": ["bone"], "aorta": ["vessel"],
}


# ``tracect-fat``: fat apart from ``body``. From ``tissue``: soft tissue is ``body``; from TotalSegmentator
# and other vocabularies: its fat tasks' labels are ``fat``, the rest as in ``tracect``.
FAT_NAMES = ["fat", "subcutaneous_fat", "torso_fat", "intermuscular_fat"]
TISSUE_FAT_GROUPS: dict[str, list[str]] = {**TISSUE_GROUPS, "body": ["soft_tissue"], "fat": ["fat"]}
COARSE_FAT_GROUPS: dict[str, list[str]] = {"fat": FAT_NAMES, **COARSE_GROUPS}


def coarse_group_of(name: str) -> str | None:
    """The :data:`COARSE_GROUPS` entry a label name belongs to (the first that matches), or ``None``."""
    if name in COARSE_GROUPS:
        return name
    for group, patterns in COARSE_GROUPS.items():
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return group
    return None


@lru_cache(maxsize=None)
def total() -> Vocabulary:
    """TotalSegmentator v2 ``total`` (117 classes)."""
    text = resources.files("tracect.labels").joinpath("total.json").read_text()
    return Vocabulary.from_json({"name": "total", "labels": json.loads(text)})


@lru_cache(maxsize=None)
def coarse() -> Vocabulary:
    """The ``tracect`` coarse vocabulary (see :data:`COARSE_GROUPS`)."""
    return Vocabulary("tracect", {i + 1: name for i, name in enumerate(COARSE_GROUPS)})


@lru_cache(maxsize=None)
def tissue() -> Vocabulary:
    """The ``tissue`` vocabulary of HU pseudo-labels (:mod:`tracect.labels.pseudo`): the classes HU tells
    apart; the body is every labelled voxel."""
    return Vocabulary("tissue", {1: "fat", 2: "soft_tissue", 3: "lung", 4: "gas", 5: "bone", 6: "vessel"})


@lru_cache(maxsize=None)
def coarse_fat() -> Vocabulary:
    """``tracect-fat``: the ``tracect`` labels and ``fat`` (last, so ``tracect``'s ids keep their values)."""
    labels = dict(coarse().labels)
    return Vocabulary("tracect-fat", {**labels, len(labels) + 1: "fat"})


BUILTIN = {"total": total, "tracect": coarse, "tissue": tissue, "tracect-fat": coarse_fat}


def get_vocabulary(spec: str | Path | Vocabulary) -> Vocabulary:
    """A built-in vocabulary by name, or a user JSON file by path."""
    if isinstance(spec, Vocabulary):
        return spec
    if str(spec) in BUILTIN:
        return BUILTIN[str(spec)]()
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"unknown vocabulary '{spec}': not one of {sorted(BUILTIN)} nor a JSON file")
    return Vocabulary.from_json(json.loads(path.read_text()), name=path.stem)


@dataclass(frozen=True)
class Remap:
    """A lookup from source ids to target ids, built from name patterns."""

    source: Vocabulary
    target: Vocabulary
    table: Mapping[int, int]  # source id -> target id (0 = drop to background, explicitly)

    def __call__(self, mask: np.ndarray) -> np.ndarray:
        """Map a mask of source ids to target ids. Raises :class:`UnknownLabelsError` first."""
        self.source.check(mask)
        lut_size = max(max(self.source.labels, default=0), int(mask.max(initial=0))) + 1
        lut = np.zeros(lut_size, dtype=np.uint16 if self.target.num_classes > 255 else np.uint8)
        for s, t in self.table.items():
            lut[s] = t
        if not np.issubdtype(mask.dtype, np.unsignedinteger):
            mask = mask.astype(np.int64)  # signed or float ids (checked non-negative above) index the LUT
        return lut[mask]

    def describe(self, present: "np.ndarray | list[int]") -> list[str]:
        """What the remap does to the source labels ``present`` in a mask, one line per kind: labels
        folded into a target label of another name (finer than the target vocabulary, e.g. the
        TotalSegmentator kidneys into ``kidney``), and labels the target has no place for (dropped to
        background). Empty when every present label maps to a label of the same name."""
        merged: dict[str, list[str]] = {}
        dropped: list[str] = []
        for sid in sorted({int(i) for i in np.asarray(present).ravel()} - {BACKGROUND}):
            sname = self.source.labels.get(sid, str(sid))
            tid = self.table.get(sid, 0)
            if tid == 0:
                dropped.append(sname)
            elif self.target.labels[tid] != sname:
                merged.setdefault(self.target.labels[tid], []).append(sname)
        out = []
        if merged:
            out.append(f"labels merged into the coarser labels of vocabulary '{self.target.name}': "
                       + "; ".join(f"{t} <- {', '.join(s)}" for t, s in sorted(merged.items())))
        if dropped:
            out.append(f"labels with no place in vocabulary '{self.target.name}' (dropped to background): "
                       + ", ".join(dropped))
        return out


def build_remap(source: Vocabulary, target: Vocabulary,
                groups: Mapping[str, list[str]] | None = None) -> Remap:
    """Remap ``source`` -> ``target``.

    ``groups`` maps each target name to source-name patterns; without it, labels are matched by
    identical names, ``tissue`` -> ``tracect`` uses :data:`TISSUE_GROUPS` (``tracect-fat``:
    :data:`TISSUE_FAT_GROUPS`) and any other vocabulary -> ``tracect`` :data:`COARSE_GROUPS` with ``fat``
    in ``body`` (``tracect-fat``: :data:`COARSE_FAT_GROUPS`). Source labels that no
    group claims map to background and are listed in ``Remap.table`` as 0.
    """
    if groups is None:
        if source.name == "tissue" and target.name in ("tracect", "tracect-fat"):
            groups = TISSUE_GROUPS if target.name == "tracect" else TISSUE_FAT_GROUPS
        elif target.name == "tracect":
            groups = {**COARSE_GROUPS, "body": FAT_NAMES + COARSE_GROUPS["body"]}  # fat is tissue without an organ
        elif target.name == "tracect-fat":
            groups = COARSE_FAT_GROUPS
        else:
            groups = {n: [n] for n in target.labels.values()}
    table: dict[int, int] = {}
    for sid, sname in source.labels.items():
        table[sid] = 0
        if sname in target.labels.values():  # identity (e.g. tracect -> tracect)
            table[sid] = target.id_of(sname)
            continue
        for tname, patterns in groups.items():
            if any(fnmatch.fnmatchcase(sname, p) for p in patterns):
                table[sid] = target.id_of(tname)
                break
    return Remap(source, target, table)


def load_remap(path: str | Path, source: Vocabulary, target: Vocabulary) -> Remap:
    """A user remap table: JSON ``{"target_name": ["source pattern", ...], ...}``."""
    groups = json.loads(Path(path).read_text())
    unknown = [t for t in groups if t not in target.labels.values()]
    if unknown:
        raise ValueError(f"remap {path}: targets {unknown} are not in vocabulary '{target.name}'")
    return build_remap(source, target, groups)
