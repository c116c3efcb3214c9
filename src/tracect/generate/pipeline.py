"""The generation pipeline: a mask and a report in, a CT in Hounsfield units on the mask's grid out.

::

    gen = Generator.from_checkpoint("runs/cpu")
    result = gen.generate(read_mask("seg.nii.gz"), "Arterial phase CT ...", seed=0)
    result.ct        # Volume: int16 HU, same shape and affine as the mask
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tracect import __version__
from tracect.config import RunConfig
from tracect.data.prepare import AIR_HU, PrepareConfig, output_grid, unit_to_hu
from tracect.data.resample import resample_to_grid
from tracect.diffusion.schedule import Schedule
from tracect.generate import strategies
from tracect.generate.masks import GenerationMask, prepare_mask
from tracect.io.volume import Volume
from tracect.labels.vocabulary import Vocabulary, get_vocabulary
from tracect.model.denoiser import geometry_features
from tracect.model.text import TextEncoder
from tracect.train.checkpoint import checkpoint_hash, load_model
from tracect.train.trainer import autocast_factory, resolve_device

MODES = ("sequential", "parallel")
DEFAULT_WARMUP = 16  # burn-in slices in sequential mode (a chain's memory of its start lasts ~10)


@dataclass
class GeneratedVolume:
    """``ct``: int16 HU on the mask's grid; ``canonical``: float HU on the generation grid
    ``(Z, size, size)``; ``labels``: the generation grid's mask; ``info``: the reproducibility record."""

    ct: Volume
    canonical: Volume
    labels: Volume
    info: dict = field(default_factory=dict)


def mask_hash(mask: Volume) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(mask.array).tobytes())
    h.update(np.asarray(mask.affine, np.float64).tobytes())
    h.update(str(mask.shape).encode())
    return h.hexdigest()


def volume_window(model_config, Z: int, window: int | None = None) -> int:
    """Window length of a 3D model for ``Z`` slices: the whole volume (its network is convolutional
    along z too) or ``window``, rounded up to what its down-sampling levels divide."""
    m = 2 ** (len(model_config.channels) - 1)
    return -(-min(Z, window or Z) // m) * m


class Generator:
    """A loaded model ready to generate volumes (load once, generate many)."""

    def __init__(self, model, config: RunConfig, data: dict, device, text: TextEncoder | None = None,
                 checkpoint: Path | None = None):
        self.model, self.config, self.device = model, config, device
        self.data = data
        self.prepare = PrepareConfig.from_json(data["prepare"])
        self.vocabulary = Vocabulary.from_json(data["vocabulary"])
        self.schedule = Schedule(config.diffusion)
        mc = config.model
        if text is not None and (text.units, text.max_tokens) != (mc.text_units, mc.text_max_tokens):
            text = None  # a shared encoder set up for another model: load the right one
        self.text = text or TextEncoder(mc.text_encoder, mc.text_max_tokens, units=mc.text_units)
        self.autocast = autocast_factory(device, config.train.precision)
        self.checkpoint = checkpoint
        self.checkpoint_sha256 = checkpoint_hash(checkpoint) if checkpoint is not None else None

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", text: TextEncoder | None = None,
                        allow_pickle: bool = False):
        """Load a run folder or checkpoint (safetensors; a pickle file only with ``allow_pickle``)."""
        dev = resolve_device(device)
        model, config, ckpt = load_model(path, dev, allow_pickle=allow_pickle)
        data_path = (ckpt if ckpt.is_dir() else ckpt.parent) / "data.json"
        if not data_path.is_file():
            raise ValueError(f"{ckpt}: no data.json (prepare configuration); was it written by tracect train?")
        return cls(model, config, json.loads(data_path.read_text()), dev, text, ckpt)

    # ------------------------------------------------------------------ grid

    def _thickness(self, canon: Volume) -> float:
        """The mask's slice spacing, held inside the range the model was trained on."""
        trained = self.data.get("slice_thickness_mm") or [canon.spacing[0]]
        return float(np.clip(canon.spacing[0], min(trained), max(trained)))

    def generation_grid(self, gm: GenerationMask) -> tuple[np.ndarray, tuple[int, int, int]]:
        canon = gm.labels
        cfg = dataclasses.replace(self.prepare, slice_thickness=self._thickness(canon))
        return output_grid(canon, canon.array > 0, cfg)

    # ------------------------------------------------------------------ generate

    @torch.no_grad()
    def generate(self, mask: Volume, report: str = "", *, vocabulary: str | Vocabulary = "total",
                 seed: int = 0, steps: int | None = None, guidance: float | None = None,
                 mode: str = "sequential", overlap: int = 1, chunk: int = 64, progress: bool = False,
                 log=None, window: int | None = None, warmup: int | None = None) -> GeneratedVolume:
        """Generate a CT for ``mask`` (any orientation, labels of ``vocabulary``) and ``report``.

        ``window`` (3D models only): slices per network window; default the whole volume in one window.
        A shorter window (e.g. the block length it was trained on) needs ``mode="parallel"``, which fuses
        the overlapping slices of neighbouring windows at every step (a 3D model has no known-frame input
        to continue from).

        ``warmup`` (sequential mode): slices of burn-in. A chain remembers where it came from for about
        ten slices, and a chain started from noise alone begins elsewhere than one that arrives at the
        same anatomy from its neighbours (on the ``cpu`` model the lung and spleen of the first slices
        were 90–230 HU darker than the same mask slices later in the volume). So the chain first runs
        through the mask's top ``warmup`` slices mirrored (slices warmup, ..., 1) and turns at slice 0,
        like reflect padding; those slices are generated and dropped. 0 gives TRACE's plain start.
        Costs about ``warmup / (K - overlap)`` extra windows. ``None``: :data:`DEFAULT_WARMUP`."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        warmup = DEFAULT_WARMUP if warmup is None else warmup
        if warmup < 0 or chunk < 1:
            raise ValueError(f"warmup must be >= 0 and chunk >= 1, got {warmup} and {chunk}")
        mc = self.config.model
        steps = steps or self.config.diffusion.sample_steps
        guidance = self.config.diffusion.guidance if guidance is None else guidance
        t0 = time.perf_counter()
        gm = prepare_mask(mask, get_vocabulary(vocabulary), self.vocabulary)
        for note in gm.notes:
            if log:
                log(note)
        affine, shape = self.generation_grid(gm)
        labels = resample_to_grid(gm.labels, affine, shape, order=0, dtype=np.uint8).array
        Z, H, W = shape
        K = mc.frames
        if mc.kind == "3d":
            K = volume_window(mc, Z, window)
            if K < Z and mode != "parallel":
                raise ValueError(f"a 3D model sampled in windows of {K} < {Z} slices needs mode='parallel'")
        # burn-in (sequential mode): the chain first runs through the top ``B`` slices mirrored (mask
        # slices B, B-1, ..., 1), then on through slices 0..Z-1; the first B generated slices are dropped
        o = overlap if K > 1 else 0
        B = min(warmup, Z - 1) if mode == "sequential" and mc.known_frames and K > 1 else 0
        pad = max(0, K - (B + Z))  # fewer slices than a window: repeat the last slice, crop afterwards
        chain = np.concatenate([np.arange(B, 0, -1), np.arange(Z + pad)])  # chain slice -> mask slice
        lab = torch.from_numpy(labels[np.minimum(chain, Z - 1)])  # uint8 (Zp, H, W)
        Zp = len(chain)
        spacing = Volume(labels, affine).spacing  # (z, y, x) mm
        tokens, pooled = self.text.encode([report])
        null_t, null_p = self.text.encode([""])
        tokens, pooled, null_t, null_p = (v.to(self.device) for v in (tokens, pooled, null_t, null_p))
        positions = torch.from_numpy(chain).float() / max(Z - 1, 1)
        T = self.config.diffusion.train_timesteps

        def denoise_windows(x, t, starts, known, known_values, use_report):
            n = x.shape[0]
            idx = torch.tensor(starts)[:, None] + torch.arange(K)[None]  # (n, K)
            m = lab[idx].long().to(self.device)
            pos = positions[idx]
            geom = geometry_features(torch.full((n,), spacing[1]), torch.full((n,), spacing[0]),
                                     pos[:, 0], pos[:, -1]).to(self.device)
            tk, pl = (tokens, pooled) if use_report else (null_t, null_p)
            with self.autocast() if self.autocast else contextlib.nullcontext():
                out = self.model(x, t * T, m, tk.expand(n, -1, -1), pl.expand(n, -1), geom, known, known_values)
            return out.float()

        gen = torch.Generator().manual_seed(int(seed))
        n_windows = len(strategies.window_starts(Zp, K, o))
        bar = _bar(progress, n_windows if mode == "sequential" else steps,
                   "windows" if mode == "sequential" else "steps")
        common = dict(schedule=self.schedule, Z=Zp, K=K, H=H, W=W, overlap=o,
                      steps=steps, guidance=guidance, generator=gen, device=self.device)
        if mode == "sequential":
            unit = strategies.sequential(denoise_windows, on_window=lambda i: bar.update(), **common)
        else:
            unit = strategies.parallel(denoise_windows, chunk=chunk, on_step=lambda i: bar.update(), **common)
        bar.close()
        unit = unit[B:B + Z].numpy()
        hu = unit_to_hu(unit, self.prepare.hu_window)
        canonical = Volume(hu, affine)
        # back to the mask's own grid: canonical mask grid, then the mask's axis order
        src_canon = gm.source.canonical()
        on_mask = resample_to_grid(canonical, src_canon.affine, src_canon.shape, order=1, cval=AIR_HU,
                                   antialias=False)
        ct = Volume(np.clip(np.rint(on_mask.array), -1024, 3071).astype(np.int16), src_canon.affine).like(gm.source)
        info = {
            "tracect_version": __version__, "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "checkpoint_sha256": self.checkpoint_sha256, "config_name": self.config.name,
            "seed": int(seed), "sampler": "ddim", "parametrization": self.config.diffusion.parametrization,
            "schedule": self.schedule.name, "steps": steps, "guidance": guidance, "mode": mode,
            "overlap": o, "warmup": B, "frames": K, "windows": n_windows, "report": report,
            "mask_sha256": mask_hash(gm.source), "mask_source": gm.source.meta.get("source"),
            "vocabulary": get_vocabulary(vocabulary).name, "notes": gm.notes,
            "organ_files": gm.source.meta.get("organ_files"),
            "generation_grid": {"shape": list(shape), "spacing_mm": list(spacing)},
            "output": {"shape": list(ct.shape), "spacing_mm": list(ct.spacing),
                       "orientation": "".join(ct.orientation)},
            "device": str(self.device), "seconds": round(time.perf_counter() - t0, 3),
        }
        return GeneratedVolume(ct, canonical, Volume(labels, affine), info)


def _bar(enabled: bool, total: int, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc="generate", unit=unit, disable=not enabled)
