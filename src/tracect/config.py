"""Typed, frozen run configuration: model, diffusion and training, one YAML file per run.

A run's resolved configuration is saved as ``config.json`` beside its weights, so any checkpoint
rebuilds exactly. Built-in presets live in ``tracect/configs/*.yaml`` (``tiny``, ``cpu``, ``gpu``);
``load_config("cpu")`` takes a preset, ``load_config("my.yaml")`` a file. Unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

MODEL_KINDS = ("pair", "slice", "3d")
PARAMETRIZATIONS = ("eps", "v", "flow")
SCHEDULES = ("cosine", "linear")


def _check(cond: bool, owner: str, name: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{owner}.{name}: {msg}")


@dataclass(frozen=True)
class ModelConfig:
    """The denoiser: a MONAI ``DiffusionModelUNet`` over a window of ``frames`` slices.

    ``pair`` and ``slice`` models are 2D with the window's frames as channels; ``3d`` is the same
    network with ``spatial_dims=3`` over a block of ``frames`` slices (the baseline).
    """

    kind: str = "pair"
    frames: int = 2  # K: slices per window
    image_size: int = 64
    channels: tuple[int, ...] = (32, 64, 128)
    num_res_blocks: int = 1
    attention_levels: tuple[bool, ...] = (False, False, True)
    num_head_channels: int = 32
    norm_num_groups: int = 8
    num_classes: int = 17  # mask ids 0..num_classes-1 (the `tracect` vocabulary has 16 + background)
    mask_embed_dim: int = 4  # learned embedding per label, concatenated per frame as channels
    text_encoder: str = "minilm"  # "minilm" (shipped offline) or a local Hugging Face folder
    text_dim: int = 384  # hidden size of the text encoder
    text_units: str = "wordpieces"  # cross-attention over word-piece embeddings, or "sentences"
    text_max_tokens: int = 256  # word pieces (or sentences) per report
    cross_attention_dim: int = 64
    geometry: bool = True  # pixel spacing, slice thickness, relative position
    known_frames: bool = True  # clean frames + per-frame indicator as input
    flow_input: bool = False  # optional: the real flow between frames as input channels
    latent_channels: int = 1  # channels per frame: 1 for CT pixels, the autoencoder's for a latent model
    # the report's structured findings (tracect.data.findings) beside its text: a findings vector on the
    # time path and, for pixel models, a lesion map embedded beside the mask
    findings: bool = False
    # the lesion map's embedding: its own channels per frame (this many), or 0: added to the mask's
    # embedding (the `cpu` preset; `cpu-report` uses 4 channels of their own, docs/model.md)
    lesion_embed_dim: int = 0
    # the findings vector also shifts each label's embedding through a map of its own per label, so that
    # a finding acts on the pixels of the organ it concerns (steatosis on the liver, the phase on the
    # vessels) instead of only on the time path shared by the whole window (docs/model.md)
    findings_per_label: bool = False
    # the mask's (and lesion map's) embedding also sets the scale and shift of every normalisation in the
    # decoder (SPADE, Park et al. 2019; MONAI's SPADEDiffusionModelUNet), through a hidden layer of this
    # many channels; 0: the mask enters at the input only. A label then reaches each decoder level
    # directly instead of through the features mixed over the whole slice (docs/model.md)
    spade_channels: int = 0

    def __post_init__(self):
        o = "model"
        _check(self.kind in MODEL_KINDS, o, "kind", f"one of {MODEL_KINDS}, got {self.kind!r}")
        _check(self.frames >= 1, o, "frames", "must be >= 1")
        _check(self.kind != "slice" or self.frames == 1, o, "frames", "a 'slice' model has frames=1")
        _check(len(self.channels) == len(self.attention_levels), o, "attention_levels",
               "needs one entry per channels level")
        _check(all(c % self.norm_num_groups == 0 for c in self.channels), o, "channels",
               f"each must be divisible by norm_num_groups={self.norm_num_groups}")
        _check(self.image_size % (2 ** (len(self.channels) - 1)) == 0, o, "image_size",
               f"must be divisible by {2 ** (len(self.channels) - 1)} for {len(self.channels)} levels")
        _check(self.num_classes >= 2, o, "num_classes", "must be >= 2")
        _check(not (self.flow_input and self.frames < 2), o, "flow_input", "needs frames >= 2")
        _check(self.text_units in ("sentences", "wordpieces"), o, "text_units", "sentences or wordpieces")
        _check(self.latent_channels >= 1, o, "latent_channels", "must be >= 1")
        _check(self.lesion_embed_dim >= 0, o, "lesion_embed_dim", "must be >= 0")
        _check(self.spade_channels >= 0, o, "spade_channels", "must be >= 0")
        _check(self.findings or not self.findings_per_label, o, "findings_per_label", "needs findings: true")
        _check(self.latent_channels == 1 or self.kind != "3d", o, "latent_channels", "latent frames are for 2D models")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "attention_levels", tuple(bool(a) for a in self.attention_levels))


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule, parametrisation and default sampler (see :mod:`tracect.diffusion`)."""

    parametrization: str = "v"  # eps | v | flow (rectified flow: velocity)
    schedule: str = "cosine"
    train_timesteps: int = 1000
    sample_steps: int = 12  # DDIM steps per window
    guidance: float = 3.0  # classifier-free guidance on the report (1 = off; else 2 evaluations a step)
    # the guidance inside a placed lesion (a model with findings; None: `guidance` there too). Guidance
    # multiplies the difference a lesion makes to its organ, so above 1 it overshoots the density
    lesion_guidance: float | None = None
    # clean estimates are clipped to [-clip_sample, clip_sample] (pixels in [-1, 1]); None for latents,
    # whose values have no fixed range
    clip_sample: float | None = 1.0

    def __post_init__(self):
        o = "diffusion"
        _check(self.parametrization in PARAMETRIZATIONS, o, "parametrization", f"one of {PARAMETRIZATIONS}")
        _check(self.schedule in SCHEDULES, o, "schedule", f"one of {SCHEDULES}")
        _check(10 <= self.train_timesteps <= 10000, o, "train_timesteps", "in 10..10000")
        _check(1 <= self.sample_steps <= self.train_timesteps, o, "sample_steps", "in 1..train_timesteps")
        _check(self.guidance >= 0, o, "guidance", ">= 0")
        _check(self.lesion_guidance is None or self.lesion_guidance >= 0, o, "lesion_guidance", ">= 0 or None")
        _check(self.clip_sample is None or self.clip_sample > 0, o, "clip_sample", "> 0 or None")

    @property
    def evaluations_per_window(self) -> int:
        """Network evaluations of one window with the default sampler."""
        return self.sample_steps * (1 if self.guidance == 1.0 and self.lesion_guidance in (None, 1.0) else 2)


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 16
    grad_accum: int = 1  # micro-batches per optimizer step (global batch = batch_size * grad_accum)
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    max_steps: int = 2000
    max_minutes: float | None = None  # stop (with a checkpoint) after this much training time, summed over resumes
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    precision: str = "auto"  # auto: bf16 autocast on GPUs that support it, fp32 on CPU
    flow_loss_weight: float = 0.5
    flow_loss_max_t: float = 0.5  # apply the flow loss for t/T below this (x0 estimates are noise above)
    p_drop_report: float = 0.15  # condition dropout, for classifier-free guidance
    p_drop_mask: float = 0.0
    p_drop_geometry: float = 0.1
    p_known: float = 0.5  # probability that a window reveals some of its frames as known
    # A window's known frames shift each label's pixels by its own random HU offset (std this many HU)
    # with probability p_known_jitter. At inference the known frame is a generated one and can be wrong
    # where the mask changes (lung above the spleen); a model given only real known frames copies that
    # error down the chain instead of drawing the organ its mask names (docs/model.md).
    known_jitter_hu: float = 0.0
    p_known_jitter: float = 0.5
    checkpoint_every: int = 250
    val_every: int = 250
    val_windows: int = 4
    log_every: int = 10
    keep_checkpoints: int = 2
    # windows that show a lesion appear this many times per epoch (a lesion covers a few per cent of
    # the windows and a fraction of a per cent of the pixels; measured, not in a preset: docs/model.md)
    lesion_window_repeat: int = 1
    # windows of pseudo-labelled cases (real CT labelled from HU by prepare --pseudo-labels) appear this
    # many times per epoch: a few real scans beside many phantom cases (the cpu-real preset)
    pseudo_window_repeat: int = 1
    lesion_loss_weight: float = 1.0  # the diffusion loss of a pixel inside a (not dropped) lesion map, x this
    # weight of the squared error of each labelled region's mean density (lesions regions of their own),
    # every region counted once whatever its area (tracect.train.losses.region_loss); pixel models only
    region_loss_weight: float = 0.0
    num_workers: int = 0  # window-loading processes beside the training process
    # GPU throughput (no effect on what is learned beyond float rounding): channels-last memory layout
    # for the 2D network's convolutions, and torch.compile of the network (slow to start: minutes)
    channels_last: bool = False
    compile: bool = False
    seed: int = 0

    def __post_init__(self):
        o = "train"
        for name in ("batch_size", "grad_accum", "max_steps", "checkpoint_every", "val_every", "log_every",
                     "keep_checkpoints", "lesion_window_repeat",
                     "pseudo_window_repeat"):
            _check(getattr(self, name) >= 1, o, name, "must be >= 1")
        for name in ("p_drop_report", "p_drop_mask", "p_drop_geometry", "p_known", "p_known_jitter",
                     "flow_loss_max_t"):
            _check(0.0 <= getattr(self, name) <= 1.0, o, name, "must be in [0, 1]")
        _check(self.lr > 0, o, "lr", "must be > 0")
        _check(0 <= self.ema_decay < 1, o, "ema_decay", "must be in [0, 1)")
        _check(self.precision in ("auto", "fp32", "bf16"), o, "precision", "auto, fp32 or bf16")
        _check(self.flow_loss_weight >= 0, o, "flow_loss_weight", "must be >= 0")
        _check(self.lesion_loss_weight >= 1, o, "lesion_loss_weight", "must be >= 1")
        _check(self.known_jitter_hu >= 0, o, "known_jitter_hu", "must be >= 0")
        _check(self.region_loss_weight >= 0, o, "region_loss_weight", "must be >= 0")


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = "custom"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunConfig":
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"config: unknown sections {sorted(unknown)}")
        parts = {}
        for f, sub in (("model", ModelConfig), ("diffusion", DiffusionConfig), ("train", TrainConfig)):
            section = dict(data.get(f) or {})
            bad = set(section) - {x.name for x in fields(sub)}
            if bad:
                raise ValueError(f"config: unknown keys in '{f}': {sorted(bad)}")
            for k, v in section.items():
                if isinstance(v, list):
                    section[k] = tuple(v)
            parts[f] = sub(**section)
        return cls(**parts, name=str(data.get("name", "custom")))

    def replace(self, **sections) -> "RunConfig":
        """A copy with some fields of sections changed: ``cfg.replace(train={"max_steps": 10})``."""
        out = self
        for section, changes in sections.items():
            if section == "name":
                out = dataclasses.replace(out, name=changes)
            else:
                out = dataclasses.replace(out, **{section: dataclasses.replace(getattr(out, section), **changes)})
        return out


PRESETS = ("tiny", "tiny-slice", "tiny-3d", "tiny-latent", "cpu", "cpu-report", "cpu-real", "cpu-k4", "cpu-slice", "cpu-3d", "cpu-latent", "gpu",
           "gpu-latent")


def load_config(spec: str | Path) -> RunConfig:
    """A preset name (``tiny``, ``cpu``, ``gpu``), a YAML file, or a run's ``config.json``."""
    import yaml

    if str(spec) in PRESETS:
        text = resources.files("tracect.configs").joinpath(f"{spec}.yaml").read_text()
        data = yaml.safe_load(text)
    else:
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"config '{spec}' is neither a preset {PRESETS} nor a file")
        data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"config '{spec}': expected a mapping")
    return RunConfig.from_json(data)
