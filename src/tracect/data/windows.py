"""Training windows: K consecutive axial slices of a prepared case (K=2: a frame pair).

A window is the unit the 2D frame-pair model sees. :class:`FrameWindows` enumerates every window of
every case in a fixed order; :class:`WindowSampler` draws them in a seeded order that can be resumed
exactly and sharded across distributed ranks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from tracect.data.cache import PreparedCache


class FrameWindows(Dataset):
    """All windows of ``k`` consecutive slices of the cache's cases (optionally one split).

    Item ``i`` is a dict of tensors:

    - ``image``  ``(K, H, W)`` float32 in [-1, 1]
    - ``mask``   ``(K, H, W)`` int64 model-vocabulary ids
    - ``body``   ``(K, H, W)`` bool
    - ``flow``   ``(K-1, 2, H, W)`` float32 px, frame k -> k+1 (``(0, 2, H, W)`` for K=1)
    - ``spacing`` ``(3,)`` float32 mm (slice thickness, row, column)
    - ``position`` ``(K,)`` float32: each slice's index / (n_slices - 1) in its case, 0 = top
    - ``lesion`` ``(K, H, W)`` int64 lesion kind codes (:mod:`tracect.data.lesions`; zeros where the
      cache holds no lesion map)
    - ``report`` str, ``case`` str, ``start`` int (first slice of the window)

    With ``latent_labels`` (a latent model: the number of mask channels, ``num_classes + 1``), the
    window is on the latent grid of the cache's encoded slices (:mod:`tracect.autoencoder.latents`):
    ``image`` ``(K, C, h, w)`` latents, ``mask`` ``(K, latent_labels, h, w)`` float32 label fractions,
    ``body`` ``(K, h, w)`` and ``flow`` ``(K-1, 2, h, w)`` in latent pixels; ``pixels`` keeps the slices.

    ``lesion_repeat`` > 1 lists each window that shows a lesion (any non-zero code in its lesion map)
    that many times, after all windows in order, so that a sampler's epoch meets it that often.
    ``pseudo_repeat`` > 1 does the same for every window of a pseudo-labelled case (real CT labelled from
    its HU by ``prepare --pseudo-labels``), so that a few real scans beside many phantoms weigh more.
    """

    def __init__(self, cache: str | Path | PreparedCache, k: int = 2, split: str | None = "train",
                 stride: int = 1, latent_labels: int | None = None, lesion_repeat: int = 1,
                 pseudo_repeat: int = 1):
        if k < 1 or stride < 1 or lesion_repeat < 1 or pseudo_repeat < 1:
            raise ValueError(f"k, stride, lesion_repeat and pseudo_repeat must be >= 1 (got k={k}, stride={stride}, "
                             f"lesion_repeat={lesion_repeat}, pseudo_repeat={pseudo_repeat})")
        self.cache = cache if isinstance(cache, PreparedCache) else PreparedCache(cache, split)
        self.k = k
        self.latent_labels, self.factor = latent_labels, 1
        if latent_labels is not None:
            from tracect.autoencoder.latents import latent_info

            info = latent_info(self.cache.root)
            if info is None:
                raise ValueError(f"{self.cache.root} holds no latents: run `tracect autoencoder encode` on it")
            self.factor = int(info["factor"])
        index = [(ci, s) for ci, meta in enumerate(self.cache.cases)
                 for s in range(0, meta["n_slices"] - k + 1, stride)]
        if not index:
            raise ValueError(f"no window of {k} slices in {self.cache.root} (split={split})")
        self.index = np.asarray(index, dtype=np.int64)  # (N, 2): case, first slice, each window once
        self._n_once, self._lesion_windows = len(self.index), None
        if lesion_repeat > 1:
            extra = self.lesion_windows()
            self.index = np.concatenate([self.index, np.tile(extra, (lesion_repeat - 1, 1))])
        if pseudo_repeat > 1:
            once = self.index[:self._n_once]
            extra = once[np.isin(once[:, 0], self.pseudo_cases())]
            self.index = np.concatenate([self.index, np.tile(extra, (pseudo_repeat - 1, 1))])

    def pseudo_cases(self) -> np.ndarray:
        """Indices of the cases whose mask is a pseudo-label (``meta["labels"]["kind"] == "pseudo"``)."""
        return np.asarray([ci for ci, m in enumerate(self.cache.cases)
                           if (m.get("labels") or {}).get("kind") == "pseudo"], dtype=np.int64)

    def lesion_windows(self) -> np.ndarray:
        """``(M, 2)`` case and first slice of each window that shows a lesion, in order; read from the
        cache's lesion maps on first use (a cache of 512-px slices holds large ones)."""
        if self._lesion_windows is None:
            shown = {}  # case -> (Z,) bool: the slice shows a lesion
            for ci in range(len(self.cache.cases)):
                lesion = self.cache.case(ci).lesion
                if lesion is not None:
                    shown[ci] = np.asarray(lesion).reshape(len(lesion), -1).any(axis=1)
            first = [(ci, s) for ci, s in self.index[:self._n_once].tolist()  # not the repeats
                     if ci in shown and shown[ci][s:s + self.k].any()]
            self._lesion_windows = np.asarray(first, dtype=np.int64).reshape(-1, 2)
        return self._lesion_windows

    @property
    def n_lesion_windows(self) -> int:
        """Windows that show a lesion, each counted once."""
        return len(self.lesion_windows())

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        ci, s = (int(v) for v in self.index[i])
        arr = self.cache.case(ci)
        meta, k = arr.meta, self.k
        sl = slice(s, s + k)
        n = meta["n_slices"]
        item = {
            "image": torch.from_numpy(np.asarray(arr.image[sl], dtype=np.float32)),
            "mask": torch.from_numpy(np.asarray(arr.mask[sl], dtype=np.int64)),
            "body": torch.from_numpy(np.asarray(arr.body[sl]) > 0),
            "flow": torch.from_numpy(np.asarray(arr.flow[s:s + k - 1], dtype=np.float32)),
            "spacing": torch.tensor(meta["spacing"], dtype=torch.float32),
            "position": torch.arange(s, s + k, dtype=torch.float32) / max(n - 1, 1),
            "lesion": (torch.zeros(k, *arr.mask.shape[1:], dtype=torch.int64) if arr.lesion is None
                       else torch.from_numpy(np.asarray(arr.lesion[sl], dtype=np.int64))),
            "report": meta["report"], "case": meta["case"], "start": s,
        }
        if self.latent_labels is not None:
            from tracect.autoencoder.latents import mask_fractions, pool_body, pool_flow

            f = self.factor
            item.update(pixels=item["image"],
                        image=torch.from_numpy(np.asarray(self.cache.latents(ci)[sl], dtype=np.float32)),
                        mask=mask_fractions(item["mask"], self.latent_labels, f), body=pool_body(item["body"], f),
                        flow=pool_flow(item["flow"], f))
        return item


class WindowSampler(Sampler[int]):
    """An endless, seeded stream of window indices: a fresh permutation each epoch.

    The stream is a pure function of ``(seed, position)``: ``start`` is how many indices this rank
    has already consumed, so a resumed run passes the count it trained on and continues with exactly
    the same order (a DataLoader's read-ahead does not matter). With ``world_size > 1`` each rank
    takes every ``world_size``-th index of the same permutation (wrapped so all ranks get as many),
    so ranks see disjoint windows. (Distributed training does not use this: it shares out each step
    of the one global stream, so that G processes train on exactly the batches of one; see
    :mod:`tracect.train.distributed`.)
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 start: int = 0):
        if n < 1:
            raise ValueError("nothing to sample")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world_size, self.start = rank, world_size, start
        self.per_rank = -(-n // world_size)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """This rank's indices for ``epoch``, ``(per_rank,)``."""
        if not self.shuffle:
            order = np.arange(self.n)
        else:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.n, generator=g).numpy()
        order = np.resize(order, self.per_rank * self.world_size)
        return order[self.rank::self.world_size]

    def __iter__(self):
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            order = self.epoch_order(epoch)
            for i in order[offset:]:
                yield int(i)
            epoch, offset = epoch + 1, 0
