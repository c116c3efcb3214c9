"""CT slices for the autoencoder, on the grid the frame model generates on.

Sources: dataset folders (``images/`` is enough: no masks needed, so unlabelled real CT counts), single
image files (NIfTI, NRRD, a DICOM folder), or prepared caches made at the autoencoder's slice size. A
volume is reoriented, cropped to its body and resampled exactly as ``prepare`` does
(:func:`tracect.data.grid.output_grid`: ``image_size``² square pixels fitted to the body), so the
autoencoder learns slices as the generator will see and make them. Slices are kept in memory as float16
in [-1, 1] (HU through the autoencoder's window), with their body masks.

Each source weighs the same when crops are drawn, unless given weights (a dataset of 40 phantoms does not
drown 5 real CTs); cases named in ``holdout`` are kept apart, for judging.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass
class Case:
    source: str
    case_id: str
    unit: np.ndarray  # (Z, S, S) float16 in [-1, 1]
    body: np.ndarray  # (Z, S, S) bool


@dataclass
class SliceBank:
    """Training cases grouped by source, and the held-out cases."""

    sources: dict[str, list[Case]] = field(default_factory=dict)
    held_out: list[Case] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)  # source -> share of the crops (default equal)

    @property
    def slices(self) -> int:
        return sum(len(c.unit) for cases in self.sources.values() for c in cases)

    def describe(self) -> dict:
        return {"sources": {s: {"cases": [c.case_id for c in cases], "slices": int(sum(len(c.unit) for c in cases)),
                                "weight": self.share(s)} for s, cases in self.sources.items()},
                "held_out": [f"{c.source}/{c.case_id}" for c in self.held_out]}

    def share(self, source: str) -> float:
        """The share of the crops drawn from ``source``."""
        total = sum(self.weights.get(s, 1.0) for s in self.sources)
        return self.weights.get(source, 1.0) / total

    def sample(self, batch: int, crop: int, generator: torch.Generator, body_fraction: float = 0.5) -> torch.Tensor:
        """``batch`` random ``crop``² crops ``(B, 1, crop, crop)`` float32: a source by its share, then a
        slice of it, then a position (centred on a body pixel with probability ``body_fraction``)."""
        names = sorted(self.sources)
        edges = np.cumsum([self.share(s) for s in names])
        out = np.empty((batch, 1, crop, crop), np.float32)
        u = torch.rand(batch, 6, generator=generator).numpy()
        for b in range(batch):
            cases = self.sources[names[min(int(np.searchsorted(edges, u[b, 0], side="right")), len(names) - 1)]]
            sizes = np.array([len(c.unit) for c in cases])
            k = int(np.searchsorted(np.cumsum(sizes), u[b, 1] * sizes.sum(), side="right"))
            case = cases[min(k, len(cases) - 1)]
            z = int(u[b, 2] * len(case.unit))
            S = case.unit.shape[1]
            if u[b, 3] < body_fraction and case.body[z].any():
                ys, xs = np.nonzero(case.body[z])
                i = int(u[b, 4] * len(ys))
                y0, x0 = ys[i] - crop // 2, xs[i] - crop // 2
            else:
                y0, x0 = int(u[b, 4] * (S - crop + 1)), int(u[b, 5] * (S - crop + 1))
            y0, x0 = int(np.clip(y0, 0, S - crop)), int(np.clip(x0, 0, S - crop))
            out[b, 0] = case.unit[z, y0:y0 + crop, x0:x0 + crop]
        return torch.from_numpy(out)


def volume_on_grid(path: Path, size: int, hu_window: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """One CT -> ``(unit (Z, size, size) float16, body (Z, size, size) bool)`` on its generation grid."""
    from tracect.data.body import body_from_ct
    from tracect.data.grid import AIR_HU, PrepareConfig, hu_to_unit, output_grid
    from tracect.data.resample import resample_to_grid
    from tracect.io.readers import read_volume
    from tracect.io.volume import Volume

    canon = read_volume(path).canonical()
    # scanners pad outside their field of view (-3024 HU, not air): air it is
    hu = np.maximum(canon.array.astype(np.float32), -1024.0)
    body = body_from_ct(hu)
    affine, shape = output_grid(canon, body, PrepareConfig(size=size))
    on_grid = resample_to_grid(Volume(hu, canon.affine), affine, shape, order=1, cval=AIR_HU).array
    body_g = resample_to_grid(Volume(body.astype(np.uint8), canon.affine), affine, shape, order=0, dtype=np.uint8).array
    return hu_to_unit(on_grid, hu_window).astype(np.float16), body_g > 0


def _cache_cases(root: Path, size: int, hu_window) -> list[tuple[str, np.ndarray, np.ndarray]]:
    from tracect.data.cache import PreparedCache
    from tracect.data.grid import hu_to_unit, unit_to_hu

    cache = PreparedCache(root)
    if cache.config.size != size:
        raise ValueError(f"{root}: cache slices are {cache.config.size} px, the autoencoder's {size}")
    out = []
    for i, meta in enumerate(cache.cases):
        arr = cache.case(i)
        hu = unit_to_hu(np.asarray(arr.image, np.float32), cache.config.hu_window)
        out.append((meta["case"], hu_to_unit(hu, hu_window).astype(np.float16), np.asarray(arr.body) > 0))
    return out


def load_bank(sources: list[str | Path], size: int, hu_window: tuple[float, float], holdout=(), log=print,
              weights: list[float] | None = None) -> SliceBank:
    """Read every source into a :class:`SliceBank` (see the module docstring); ``weights``: one per
    source, its share of the crops (relative)."""
    from tracect.data.layout import load_dataset

    if weights is not None and (len(weights) != len(sources) or min(weights) <= 0):
        raise ValueError(f"give one positive weight per source ({len(sources)}), got {weights}")
    bank = SliceBank(weights={Path(s).name: float(w) for s, w in zip(sources, weights)} if weights else {})
    for src in map(Path, sources):
        name = src.name
        if (src / "manifest.json").is_file():
            items = _cache_cases(src, size, hu_window)
        elif src.is_dir() and (src / "images").is_dir():
            ds = load_dataset(src)
            items = [(c.case_id, *volume_on_grid(c.image, size, hu_window)) for c in ds.cases if c.image is not None]
        else:
            items = [(src.name.split(".")[0], *volume_on_grid(src, size, hu_window))]
        for case_id, unit, body in items:
            case = Case(name, case_id, unit, body)
            (bank.held_out if case_id in holdout else bank.sources.setdefault(name, [])).append(case)
        if log:
            log(f"{name}: {len(items)} volume(s)")
    missing = set(holdout) - {c.case_id for c in bank.held_out}
    if missing:
        raise ValueError(f"held-out case(s) {sorted(missing)} are in none of the sources")
    if not bank.sources:
        raise ValueError("no training slices: every case is held out")
    return bank
