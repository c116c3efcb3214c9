"""Structured findings of a radiology report: contrast phase, fatty liver, focal lesions.

One fixed rule set reads a report for training (the findings vector beside the free text), for
generation (the same vector, and the lesions that :mod:`tracect.generate.lesions` places) and for
evaluation (what a report states, :mod:`tracect.evaluate.adherence`). It reads the phantom's report
grammar and the common phrasing of real reports ("arterial phase", "portal venous", "non-contrast",
"hepatic steatosis", "hypodense lesion in segment 7"), sentence by sentence, with negations ("No focal
hepatic lesion.", "without steatosis"). Anything it does not recognise stays in the free text only.

Why a vector at all: a report's text embedding moves little when one finding changes. The pooled
MiniLM embeddings of an arterial and a non-contrast version of one phantom report have cosine
similarity 0.92 (median over 24 held-out reports), while the reports of two different cases sit at
0.85: one finding moves the embedding about half as far as another case's wording does
(docs/benchmarks.md), so a small model hears the finding late in training, if at all.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

PHASES = ("arterial", "portal venous", "non-contrast")
LESION_KINDS = ("cyst", "hypodense", "hyperenhancing")  # lesion map codes 1, 2, 3 (0 = none)
LESION_ORGANS = ("liver", "spleen", "kidney")  # organ groups of the vector; kidneys keep their side

_NON_CONTRAST = re.compile(r"non-?\s?contrast|without (?:iv |intravenous )?contrast|unenhanced|no (?:iv |intravenous )?contrast")
_ARTERIAL = re.compile(r"\barterial\b")  # not "arterially" (a lesion's enhancement, not the phase)
_PORTAL = re.compile(r"portal[- ]venous|\bvenous phase\b|\bpv phase\b")
_STEATOSIS = re.compile(r"steatosis|fatty (?:liver|infiltration)|hepatic fat|liver is diffusely hypoattenuating|"
                        r"decreased attenuation of the liver")
_NORMAL_LIVER = re.compile(r"liver (?:is )?normal in (?:size and )?attenuation|normal liver (?:size and )?attenuation")
_LESION = re.compile(r"lesion|cyst|mass|nodule|metasta|tumou?r|hypodensit|focus|foci")
_NEGATED = re.compile(r"^(?:no|none|without)\b|\bno (?:focal|suspicious|evidence)|\bwithout (?:a |any )?focal|\bnegative for\b")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(mm|cm)\b")
_HYPER = re.compile(r"hyperenhanc|hypervascular|enhancing avidly|avidly enhancing|arterially enhancing|hyperdense|"
                    r"hyperattenuating")
_CYST = re.compile(r"\bcyst")
_SENTENCE = re.compile(r"(?<=[.;!?])\s+|\n+")
_ORGAN_WORDS = {"liver": re.compile(r"liver|hepatic|segment (?:[1-8]|i{1,3}|iv|vi{0,3})\b|caudate"),
                "spleen": re.compile(r"spleen|splenic"),
                "kidney": re.compile(r"kidney|renal")}
RIGHT_LIVER_SEGMENTS = {"5", "6", "7", "8", "v", "vi", "vii", "viii"}
DEFAULT_LESION_MM = 15.0  # a lesion the report gives no size for


@dataclass(frozen=True)
class Lesion:
    """One focal lesion a report describes: ``organ`` "liver", "spleen", "kidney_left",
    "kidney_right" or "kidney" (side not stated); ``kind`` one of :data:`LESION_KINDS`; ``diameter_mm``
    (None: not stated); ``region``: "right lobe", "left lobe", "upper pole", "interpolar",
    "lower pole" or None (anywhere in the organ)."""

    organ: str
    kind: str
    diameter_mm: float | None = None
    region: str | None = None


@dataclass(frozen=True)
class Findings:
    """What a report states. ``contrast_phase`` is one of :data:`PHASES` or None (not stated);
    ``fatty_liver`` True (steatosis), False (a normal liver attenuation stated) or None (silent)."""

    contrast_phase: str | None = None
    fatty_liver: bool | None = None
    lesions: tuple[Lesion, ...] = field(default_factory=tuple)

    @property
    def lesion_organs(self) -> list[str]:
        """Organ groups of :data:`LESION_ORGANS` with at least one lesion."""
        return sorted({organ_group(les.organ) for les in self.lesions})


def organ_group(organ: str) -> str:
    """The organ group of :data:`LESION_ORGANS` an organ belongs to (both kidneys: ``kidney``)."""
    return "kidney" if organ.startswith("kidney") else organ


def _lesion(sentence: str) -> Lesion | None:
    if _NEGATED.search(sentence) or not _LESION.search(sentence):
        return None
    organs = [o for o, rx in _ORGAN_WORDS.items() if rx.search(sentence)]
    if not organs:
        return None
    organ = organs[0]
    region = None
    if organ == "kidney":
        side = re.search(r"\b(left|right)\b", sentence)
        organ = f"kidney_{side.group(1)}" if side else "kidney"
    if organ == "liver":
        seg = re.search(r"segment (\w+)", sentence)
        lobe = re.search(r"\b(right|left)\b (?:hepatic )?lobe", sentence)
        if lobe:
            region = f"{lobe.group(1)} lobe"
        elif seg:
            region = "right lobe" if seg.group(1) in RIGHT_LIVER_SEGMENTS else "left lobe"
    else:
        pole = re.search(r"upper pole|lower pole|interpolar", sentence)
        region = pole.group(0) if pole else None
    cyst = _CYST.search(sentence) and not re.search(r"not (?:a )?(?:simple )?cyst", sentence)
    kind = "cyst" if cyst and not _HYPER.search(sentence) else (
        "hyperenhancing" if _HYPER.search(sentence) else "hypodense")
    size = _SIZE.search(sentence)
    d = None if size is None else float(size.group(1)) * (10.0 if size.group(2) == "cm" else 1.0)
    return Lesion(organ, kind, d, region)


@lru_cache(maxsize=4096)
def parse_findings(text: str) -> Findings:
    """Read ``text`` sentence by sentence (see the module docstring). A lesion repeated in the
    IMPRESSION (same organ and size) counts once."""
    t = text.lower()
    phase = None
    if _NON_CONTRAST.search(t):
        phase = "non-contrast"
    elif _PORTAL.search(t):
        phase = "portal venous"
    elif _ARTERIAL.search(t):
        phase = "arterial"
    fatty = None
    lesions: list[Lesion] = []
    in_impression = False
    for sentence in _SENTENCE.split(t):
        s = sentence.strip()
        if not s:
            continue
        if s.startswith("impression"):
            in_impression = True
        s = re.sub(r"^(?:examination|findings|impression|technique)\s*:\s*", "", s)
        s = re.sub(r"^\d+\.\s*", "", s)  # numbered impression items
        if _STEATOSIS.search(s):
            fatty = not bool(_NEGATED.search(s) or re.search(r"\bno (?:hepatic )?steatosis|without steatosis", s))
        elif _NORMAL_LIVER.search(s) and fatty is None:
            fatty = False
        les = _lesion(s)
        if les is None:
            continue
        same = [x for x in lesions if organ_group(x.organ) == organ_group(les.organ) and x.diameter_mm == les.diameter_mm]
        if in_impression and same:
            continue  # the impression repeats a finding of the FINDINGS section
        lesions.append(les)
    return Findings(phase, fatty, tuple(lesions))


FINDINGS_DIM = len(PHASES) + 2 + len(LESION_ORGANS) * (2 + len(LESION_KINDS))


def findings_vector(f: Findings) -> np.ndarray:
    """``(FINDINGS_DIM,)`` float32: phase one-hot (zeros when not stated), steatosis stated, normal
    liver stated, then per organ group of :data:`LESION_ORGANS`: any lesion, one flag per kind, and the
    largest diameter / 30 mm. The empty report gives zeros: the unconditioned input of guidance."""
    v = np.zeros(FINDINGS_DIM, np.float32)
    if f.contrast_phase is not None:
        v[PHASES.index(f.contrast_phase)] = 1.0
    if f.fatty_liver is not None:
        v[len(PHASES) + (0 if f.fatty_liver else 1)] = 1.0
    base = len(PHASES) + 2
    for les in f.lesions:
        o = base + LESION_ORGANS.index(organ_group(les.organ)) * (2 + len(LESION_KINDS))
        v[o] = 1.0
        v[o + 1 + LESION_KINDS.index(les.kind)] = 1.0
        v[o + 1 + len(LESION_KINDS)] = max(v[o + 1 + len(LESION_KINDS)], (les.diameter_mm or DEFAULT_LESION_MM) / 30.0)
    return v


def findings_record(text: str) -> dict:
    """What the findings rules read in ``text``, as JSON (for the sidecar)."""
    return dataclasses.asdict(parse_findings(text))


def report_vectors(reports: list[str]) -> np.ndarray:
    """``(B, FINDINGS_DIM)`` for a batch of reports."""
    return np.stack([findings_vector(parse_findings(r)) for r in reports]) if reports else \
        np.zeros((0, FINDINGS_DIM), np.float32)
