"""The latent grid: a prepared cache's slices encoded once, and masks, bodies and flows brought down to
the latent resolution.

- :func:`encode_cache` writes ``cases/CASE/latent.npy`` ``(Z, C, s, s)`` float16 (the autoencoder's
  mean latent times its latent scale: unit variance) beside each case's pixel arrays, and
  ``latent.json`` naming the autoencoder (path and weight hash), so a latent model knows what decodes it;
- :func:`mask_fractions`: a label mask becomes, per latent pixel, the fraction of its ``f x f`` pixels
  each label covers. Nearest-neighbour downsampling would drop anything thinner than ``f`` pixels (a
  vessel, the bowel wall, a rib); fractions keep it, as a part of a pixel;
- :func:`pool_body` (a latent pixel is body if any of its pixels is) and :func:`pool_flow` (the mean
  displacement of its pixels, in latent pixels).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

LATENT_FILE = "latent.npy"


def mask_fractions(labels: torch.Tensor, num_labels: int, factor: int) -> torch.Tensor:
    """Label ids ``(..., H, W)`` (ids ``0..num_labels-1``) -> fractions ``(..., num_labels, H/f, W/f)`` float32."""
    lead, (H, W) = labels.shape[:-2], labels.shape[-2:]
    onehot = F.one_hot(labels.reshape(-1, H, W).long(), num_labels).permute(0, 3, 1, 2).float()
    frac = F.avg_pool2d(onehot, factor) if factor > 1 else onehot
    return frac.reshape(*lead, num_labels, H // factor, W // factor)


def pool_body(body: torch.Tensor, factor: int) -> torch.Tensor:
    """Body ``(..., H, W)`` bool -> ``(..., H/f, W/f)`` bool: any pixel of the block."""
    lead, (H, W) = body.shape[:-2], body.shape[-2:]
    pooled = F.max_pool2d(body.reshape(-1, 1, H, W).float(), factor) if factor > 1 else body.reshape(-1, 1, H, W).float()
    return pooled.reshape(*lead, H // factor, W // factor) > 0


def pool_flow(flow: torch.Tensor, factor: int) -> torch.Tensor:
    """Flow ``(..., 2, H, W)`` in pixels -> ``(..., 2, H/f, W/f)`` in latent pixels (block mean / f)."""
    lead, (H, W) = flow.shape[:-2], flow.shape[-2:]
    pooled = F.avg_pool2d(flow.reshape(-1, 1, H, W).float(), factor) if factor > 1 else flow.reshape(-1, 1, H, W)
    return pooled.reshape(*lead, H // factor, W // factor) / factor


def latent_info(cache_root: str | Path) -> dict | None:
    """The cache's ``latent.json``, or None when it holds no latents."""
    path = Path(cache_root) / "latent.json"
    return json.loads(path.read_text()) if path.is_file() else None


def encode_cache(cache_root: str | Path, autoencoder, batch: int = 16, progress: bool = True, log=print) -> dict:
    """Encode every case of a prepared cache with ``autoencoder`` (a
    :class:`~tracect.autoencoder.weights.LoadedAutoencoder`); cases already encoded by the same weights
    are kept. Returns the ``latent.json`` record."""
    from tqdm import tqdm

    from tracect.autoencoder.model import encode_all
    from tracect.data.cache import PreparedCache
    from tracect.data.grid import hu_to_unit, unit_to_hu
    from tracect.utils.atomic import atomic_path, write_json

    root = Path(cache_root)
    cache = PreparedCache(root)
    cfg = autoencoder.config.model
    if cache.config.size != cfg.image_size:
        raise ValueError(f"{root}: slices of {cache.config.size} px; the autoencoder encodes {cfg.image_size} px")
    lo, hi = cache.config.hu_window
    if lo > cfg.hu_window[0] + 1 or hi < cfg.hu_window[1] - 1:
        log(f"note: the cache keeps HU {lo:g}..{hi:g}, narrower than the autoencoder's window "
            f"{cfg.hu_window[0]:g}..{cfg.hu_window[1]:g}: what lies outside was clipped when it was prepared")
    record = {"autoencoder": str(autoencoder.checkpoint.resolve()), "autoencoder_sha256": autoencoder.sha256,
              "latent_scale": autoencoder.latent_scale, "factor": cfg.factor, "latent_channels": cfg.latent_channels,
              "hu_window": list(cfg.hu_window)}
    old = latent_info(root)
    fresh = old is None or old.get("autoencoder_sha256") != autoencoder.sha256
    if fresh and old is not None:  # latents of other weights: none of them may be taken for these
        (root / "latent.json").unlink()
    device = next(autoencoder.model.parameters()).device
    for i in tqdm(range(len(cache.cases)), desc="encode", unit="case", disable=not progress):
        target = root / "cases" / cache.cases[i]["case"] / LATENT_FILE
        if target.is_file() and not fresh:
            continue
        hu = unit_to_hu(np.asarray(cache.case(i).image, np.float32), cache.config.hu_window)
        z = encode_all(autoencoder.model, hu_to_unit(hu, cfg.hu_window), batch, device) * autoencoder.latent_scale
        with atomic_path(target) as tmp, open(tmp, "wb") as f:
            np.save(f, z.astype(np.float16))
    write_json(root / "latent.json", record)
    return record
