"""Loading a trained slice autoencoder (EMA weights) from its run or checkpoint folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from tracect.autoencoder.config import AERunConfig
from tracect.autoencoder.model import SliceAutoencoder


@dataclass
class LoadedAutoencoder:
    """The EMA model (eval mode), its configuration, its ``data.json`` (latent scale, window, what it
    learned from), the checkpoint folder and the sha256 of its weights."""

    model: SliceAutoencoder
    config: AERunConfig
    info: dict
    checkpoint: Path
    sha256: str

    @property
    def latent_scale(self) -> float:
        return float(self.info["latent_scale"])


def load_autoencoder(path: str | Path, device: str | torch.device = "cpu") -> LoadedAutoencoder:
    from safetensors.torch import load_file

    from tracect.model.weights import CheckpointError, checkpoint_hash, resolve_checkpoint

    ckpt = resolve_checkpoint(path)
    if ckpt.is_file():
        raise CheckpointError(f"{ckpt}: an autoencoder is a checkpoint folder of safetensors + JSON")
    try:
        config = AERunConfig.from_json(json.loads((ckpt / "config.json").read_text()))
        info = json.loads((ckpt / "data.json").read_text())
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{ckpt}: not an autoencoder checkpoint ({type(e).__name__}: {e})") from None
    model = SliceAutoencoder(config.model)
    try:
        model.load_state_dict(load_file(str(ckpt / "ema.safetensors")))
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt}: weights do not fit the autoencoder of config.json ({str(e)[:200]})") from None
    return LoadedAutoencoder(model.to(device).eval().requires_grad_(False), config, info, ckpt, checkpoint_hash(ckpt))
