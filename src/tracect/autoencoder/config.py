"""Typed, frozen configuration of the slice autoencoder and its training; one YAML per run, saved as
``config.json`` beside the weights. Presets: ``ae-tiny`` (tests), ``ae-cpu`` (256² slices, 64² latents,
trainable on 2 CPU cores), ``ae-gpu`` (512² slices, 128² latents, one 24 GB GPU).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path

AE_PRESETS = ("ae-tiny", "ae-cpu", "ae-gpu")


def _check(cond: bool, owner: str, name: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{owner}.{name}: {msg}")


@dataclass(frozen=True)
class AutoencoderConfig:
    """A per-slice KL autoencoder (:class:`tracect.autoencoder.model.SliceAutoencoder`).

    The slice is first rearranged without loss into ``unshuffle``² channels at ``1/unshuffle`` of its size
    (pixel unshuffle: every pixel kept, nothing computed at full resolution), then MONAI's
    ``AutoencoderKL`` with ``channels`` (one entry per level; each level after the first halves the
    size again) maps it to ``latent_channels``. So the downsampling factor is
    ``unshuffle * 2 ** (len(channels) - 1)``: 4 by default, 8 with two levels.
    """

    image_size: int = 256  # slices of the generation grid (size x size)
    hu_window: tuple[float, float] = (-1024.0, 2048.0)  # HU mapped to [-1, 1] (air .. dense bone), clipped
    unshuffle: int = 4
    channels: tuple[int, ...] = (96,)
    num_res_blocks: int = 2
    latent_channels: int = 8
    norm_num_groups: int = 16

    def __post_init__(self):
        o = "autoencoder"
        _check(self.unshuffle in (1, 2, 4, 8), o, "unshuffle", "one of 1, 2, 4, 8")
        _check(len(self.channels) >= 1, o, "channels", "at least one level")
        _check(all(c % self.norm_num_groups == 0 for c in self.channels), o, "channels",
               f"each divisible by norm_num_groups={self.norm_num_groups}")
        _check(self.image_size % self.factor == 0, o, "image_size", f"divisible by the factor {self.factor}")
        _check(1 <= self.latent_channels <= 64, o, "latent_channels", "in 1..64")
        lo, hi = self.hu_window
        _check(lo < hi, o, "hu_window", "low < high")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "hu_window", (float(lo), float(hi)))

    @property
    def factor(self) -> int:
        """Slice pixels per latent pixel along each axis."""
        return self.unshuffle * 2 ** (len(self.channels) - 1)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.factor


@dataclass(frozen=True)
class AETrainConfig:
    """How the autoencoder learns: crops of slices, the losses' weights, and the usual run settings."""

    crop: int = 128  # square crops of the generation-grid slices (the network is convolutional)
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 200
    max_steps: int = 8000
    # the last steps see whole slices (crop = image_size, the batch shrunk to as many pixels per step):
    # GroupNorm's statistics depend on the field of view, so a model that only saw crops shifts the HU of
    # a whole slice (measured: +42 HU inside the body on a held-out 256² CT, -1 HU on its 128² crops)
    full_slice_steps: int = 0
    max_minutes: float | None = None
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    l1_weight: float = 1.0  # |x - x_hat| in the window's units (x 1536 = HU for the default window)
    gradient_weight: float = 1.0  # |grad x - grad x_hat|: edges and fine texture
    spectrum_weight: float = 0.1  # |log(eps + |F x|) - log(eps + |F x_hat|)|: the power at every frequency
    kl_weight: float = 1e-6
    body_fraction: float = 0.5  # crops whose centre must lie in the body (the rest anywhere)
    holdout: tuple[str, ...] = ()  # case ids kept out of training (judged on; validation pictures)
    val_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 25
    keep_checkpoints: int = 2
    seed: int = 0

    def __post_init__(self):
        o = "train"
        for name in ("crop", "batch_size", "max_steps", "val_every", "checkpoint_every", "log_every",
                     "keep_checkpoints"):
            _check(getattr(self, name) >= 1, o, name, "must be >= 1")
        _check(self.lr > 0, o, "lr", "must be > 0")
        _check(0 <= self.full_slice_steps < self.max_steps, o, "full_slice_steps", "in [0, max_steps)")
        _check(0 <= self.ema_decay < 1, o, "ema_decay", "must be in [0, 1)")
        _check(0 <= self.body_fraction <= 1, o, "body_fraction", "must be in [0, 1]")
        for name in ("l1_weight", "gradient_weight", "spectrum_weight", "kl_weight"):
            _check(getattr(self, name) >= 0, o, name, "must be >= 0")
        object.__setattr__(self, "holdout", tuple(str(h) for h in self.holdout))


@dataclass(frozen=True)
class AERunConfig:
    model: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    train: AETrainConfig = field(default_factory=AETrainConfig)
    name: str = "custom"

    def __post_init__(self):
        _check(self.train.crop % self.model.factor == 0 and self.train.crop <= self.model.image_size, "train",
               "crop", f"a multiple of the factor {self.model.factor}, at most image_size")

    def to_json(self) -> dict:
        return {"kind": "autoencoder", **asdict(self)}

    @classmethod
    def from_json(cls, data: dict) -> "AERunConfig":
        data = {k: v for k, v in data.items() if k != "kind"}
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"autoencoder config: unknown sections {sorted(unknown)}")
        parts = {}
        for f, sub in (("model", AutoencoderConfig), ("train", AETrainConfig)):
            section = dict(data.get(f) or {})
            bad = set(section) - {x.name for x in fields(sub)}
            if bad:
                raise ValueError(f"autoencoder config: unknown keys in '{f}': {sorted(bad)}")
            parts[f] = sub(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items()})
        return cls(**parts, name=str(data.get("name", "custom")))

    def replace(self, **sections) -> "AERunConfig":
        out = self
        for section, changes in sections.items():
            out = dataclasses.replace(out, **{section: dataclasses.replace(getattr(out, section), **changes)})
        return out


def load_ae_config(spec: str | Path) -> AERunConfig:
    """A preset name (``ae-tiny``, ``ae-cpu``, ``ae-gpu``), a YAML file, or a run's ``config.json``."""
    import yaml

    if str(spec) in AE_PRESETS:
        data = yaml.safe_load(resources.files("tracect.configs").joinpath(f"{spec}.yaml").read_text())
    else:
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"autoencoder config '{spec}' is neither a preset {AE_PRESETS} nor a file")
        data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"autoencoder config '{spec}': expected a mapping")
    return AERunConfig.from_json(data)
