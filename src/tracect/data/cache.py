"""Read a prepared cache: memory-mapped arrays per case, opened lazily in each process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracect.data.grid import PrepareConfig
from tracect.labels.vocabulary import Vocabulary


@dataclass(frozen=True)
class CaseArrays:
    """One prepared case. Arrays are read-only memory maps.

    image ``(Z, H, W)`` float16 in [-1, 1]; mask ``(Z, H, W)`` uint8; body ``(Z, H, W)`` uint8;
    flow ``(Z-1, 2, H, W)`` float16 px (slice k -> k+1); lesion ``(Z, H, W)`` uint8 kind codes
    (:mod:`tracect.data.lesions`) or None where the dataset did not know its lesions.
    """

    meta: dict
    image: np.ndarray
    mask: np.ndarray
    body: np.ndarray
    flow: np.ndarray
    lesion: np.ndarray | None = None


class PreparedCache:
    """The cases of a cache made by :func:`tracect.data.prepare.prepare_dataset`.

    Only metadata is read on construction; arrays are memory-mapped on first access in each process
    (so a DataLoader's workers do not inherit open maps through pickling).
    """

    def __init__(self, root: str | Path, split: str | None = None):
        self.root = Path(root)
        manifest_path = self.root / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{self.root}: no manifest.json; run `tracect prepare` first")
        manifest = json.loads(manifest_path.read_text())
        self.config = PrepareConfig.from_json(manifest["config"])
        self.vocabulary = Vocabulary.from_json(manifest["vocabulary"])
        self.cases = [m for m in manifest["cases"] if split is None or m["split"] == split]
        self._open: dict = {}  # case index -> CaseArrays; ("latent", index) -> its latent map

    def __len__(self) -> int:
        return len(self.cases)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_open"] = {}
        return state

    def case(self, i: int) -> CaseArrays:
        if i not in self._open:
            meta = self.cases[i]
            folder = self.root / "cases" / meta["case"]
            arrays = {n: np.load(folder / f"{n}.npy", mmap_mode="r") for n in ("image", "mask", "body", "flow")}
            if (folder / "lesion.npy").is_file():
                arrays["lesion"] = np.load(folder / "lesion.npy", mmap_mode="r")
            self._open[i] = CaseArrays(meta=meta, **arrays)
        return self._open[i]

    def latents(self, i: int) -> np.ndarray:
        """Case ``i``'s encoded slices ``(Z, C, h, w)`` float16 (memory-mapped; see
        :mod:`tracect.autoencoder.latents`)."""
        key = ("latent", i)
        if key not in self._open:
            self._open[key] = np.load(self.root / "cases" / self.cases[i]["case"] / "latent.npy", mmap_mode="r")
        return self._open[key]

    def index_of(self, case_id: str) -> int:
        for i, m in enumerate(self.cases):
            if m["case"] == case_id:
                return i
        raise KeyError(f"case '{case_id}' is not in {self.root}")
