"""What the files of an organ folder mean: the one policy every reader of organ folders follows.

A TotalSegmentator output folder holds one binary file per structure, and routinely files of its other
tasks beside those of ``total`` (vessels, body, tissue types, heart chambers, ...). Each file name is
one of:

- **known**: a label of the vocabulary the folder is read in; its voxels get that label's id;
- **merged**: not a label of the vocabulary, but its coarse group (:func:`coarse_group_of`) has a label
  there: a named artery becomes ``aorta`` (the coarse group of arteries), ``liver_segment_4`` becomes
  ``liver``. Merged files fill only voxels that no known file claims, so a coarse fold never overwrites
  a specific organ; files of the body envelope (``body``, ``skin``, fat) come last, filling what no
  organ claims, since they cover the organs;
- **ignored**: neither (no coarse group, or the vocabulary has no label of that group, as ``total``
  has none for ``body``); its voxels stay background.

With ``strict`` any name outside the vocabulary refuses the folder instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tracect.labels.vocabulary import Vocabulary, coarse_group_of


class OrganFilesError(ValueError):
    """Organ files a strict read refuses (names outside the vocabulary)."""


@dataclass(frozen=True)
class OrganFiles:
    """How the names of an organ folder map onto ``vocabulary``.

    ``known``: name -> id; ``merged``: name -> label name it was folded into; ``ignored``: name -> why.
    """

    vocabulary: str
    known: dict[str, int] = field(default_factory=dict)
    merged: dict[str, str] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)

    def notes(self) -> list[str]:
        """One line for what was merged and one for what was ignored (none when every name is known)."""
        out = []
        if self.merged:
            into: dict[str, list[str]] = {}
            for name, target in sorted(self.merged.items()):
                into.setdefault(target, []).append(name)
            out.append("organ files merged into coarser labels of vocabulary "
                       f"'{self.vocabulary}': " + "; ".join(f"{', '.join(v)} -> {k}" for k, v in into.items()))
        if self.ignored:
            out.append("organ files ignored: " + "; ".join(f"{n} ({why})" for n, why in sorted(self.ignored.items())))
        return out

    def to_json(self) -> dict:
        return {"vocabulary": self.vocabulary, "merged": dict(sorted(self.merged.items())),
                "ignored": dict(sorted(self.ignored.items()))}


def representative(vocabulary: Vocabulary, group: str) -> str | None:
    """The label of ``vocabulary`` that stands for coarse ``group``: the label named like the group,
    else the lowest-id label of that group, else ``None``."""
    names = set(vocabulary.labels.values())
    if group in names:
        return group
    for i in vocabulary.ids:
        if coarse_group_of(vocabulary.labels[i]) == group:
            return vocabulary.labels[i]
    return None


def classify_organ_files(names: list[str], vocabulary: Vocabulary, strict: bool = False) -> OrganFiles:
    """Sort organ file names (suffix removed) into known, merged and ignored (see the module
    docstring). Raises :class:`OrganFilesError` for unknown names when ``strict``."""
    labels = set(vocabulary.labels.values())
    unknown = sorted(n for n in names if n not in labels)
    if strict and unknown:
        raise OrganFilesError(f"organ files {unknown} are not labels of vocabulary '{vocabulary.name}' "
                              "(without --strict they are merged into coarser labels or ignored)")
    known = {n: vocabulary.id_of(n) for n in names if n in labels}
    merged, ignored = {}, {}
    for name in unknown:
        group = coarse_group_of(name)
        target = representative(vocabulary, group) if group else None
        if target is not None:
            merged[name] = target
        elif group is None:
            ignored[name] = "no coarse label"
        else:
            ignored[name] = f"vocabulary '{vocabulary.name}' has no label of group '{group}'"
    return OrganFiles(vocabulary.name, known, merged, ignored)
