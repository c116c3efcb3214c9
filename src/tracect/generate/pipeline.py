"""The generation pipeline: a mask and a report in, a CT in Hounsfield units on the mask's grid out.

::

    gen = Generator.from_checkpoint("runs/cpu")
    result = gen.generate(read_mask("seg.nii.gz"), "Arterial phase CT ...", seed=0)
    result.ct        # Volume: int16 HU, same shape and affine as the mask

A volume goes through three stages, which :meth:`Generator.generate` runs for one volume and
:meth:`Generator.generate_many` for a cohort (several volumes' windows in one network call):

1. :meth:`Generator.plan`: the mask validated, remapped and given a body, the generation grid
   (:func:`tracect.data.grid.output_grid`), the labels on it, and the :class:`~strategies.Chain` of
   windows with the burn-in and the report;
2. sampling: :func:`strategies.sequential` (cohorts in lockstep) or :func:`strategies.parallel`,
   which ask :meth:`Generator.denoiser_for` for the guided denoiser of each batch of windows;
3. :meth:`Generator.finish`: [-1, 1] -> HU, back onto the mask's grid and axis order (optionally with
   CT noise above the generation grid's resolution, :mod:`tracect.generate.grain`), the sidecar record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from tracect import __version__
from tracect.config import RunConfig
from tracect.data.findings import findings_record, parse_findings
from tracect.data.grid import AIR_HU, PrepareConfig, output_grid, unit_to_hu
from tracect.data.resample import resample_to_grid, resample_to_int16
from tracect.diffusion.schedule import Schedule
from tracect.generate import strategies
from tracect.generate.grain import Grain, add_grain
from tracect.generate.lesions import place_lesions
from tracect.generate.masks import GenerationMask, prepare_mask
from tracect.generate.sampling import Sampling
from tracect.io.volume import Volume
from tracect.labels.vocabulary import Vocabulary, get_vocabulary
from tracect.model.conditioning import build_condition, make_denoise
from tracect.model.text import TextEncoder
from tracect.model.weights import checkpoint_hash, load_model
from tracect.runtime import autocast_factory, resolve_device


@dataclass
class GeneratedVolume:
    """``ct``: int16 HU on the mask's grid; ``canonical``: float HU on the generation grid
    ``(Z, size, size)``; ``labels``: the generation grid's mask; ``info``: the reproducibility record."""

    ct: Volume
    canonical: Volume
    labels: Volume
    info: dict = field(default_factory=dict)


@dataclass(eq=False)
class Plan:
    """One volume ready to sample: its mask, generation grid ``(affine, (Z, H, W))``, labels on that grid,
    chain of windows (burn-in first), settings and the caller's ``key``."""

    mask: GenerationMask
    affine: np.ndarray
    shape: tuple[int, int, int]
    labels: np.ndarray
    chain: strategies.Chain
    burn_in: int
    report: str
    seed: int
    vocabulary: str
    sampling: Sampling
    key: object = None
    started: float = field(default_factory=time.perf_counter)
    lesions: list = field(default_factory=list)  # the report's lesions as placed (generate.lesions)


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
                 checkpoint: Path | None = None, autoencoder=None):
        self.model, self.config, self.device = model, config, device
        if config.model.kind != "3d":
            # channels-last convolutions: the same arithmetic to float rounding, 1.2x faster per network
            # call on a 2-core CPU (measured side by side at 1 and 8 guided windows per call)
            self.model.to(memory_format=torch.channels_last)
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
        # a latent model generates latent frames; its autoencoder turns them into slices
        self.autoencoder = autoencoder
        if mc.latent_channels > 1 and autoencoder is None:
            raise ValueError("a latent model needs its autoencoder (Generator.from_checkpoint finds it)")

    @property
    def latent(self) -> bool:
        return self.config.model.latent_channels > 1

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", text: TextEncoder | None = None,
                        allow_pickle: bool = False, autoencoder: str | Path | None = None):
        """Load a run folder or checkpoint (safetensors; a pickle file only with ``allow_pickle``). A latent
        model's autoencoder is the one its training cache was encoded with (``data.json``; a relative
        path is relative to the checkpoint folder), or ``autoencoder``; its weights must be the same."""
        dev = resolve_device(device)
        model, config, ckpt = load_model(path, dev, allow_pickle=allow_pickle)
        folder = ckpt if ckpt.is_dir() else ckpt.parent
        data_path = folder / "data.json"
        if not data_path.is_file():
            raise ValueError(f"{ckpt}: no data.json (prepare configuration); was it written by tracect train?")
        data = json.loads(data_path.read_text())
        ae = None
        if config.model.latent_channels > 1:
            from tracect.autoencoder.weights import load_autoencoder

            latent = data.get("latent") or {}
            where = Path(autoencoder or latent.get("autoencoder") or "")
            ae = load_autoencoder(where if where.is_absolute() else folder / where, dev)
            if latent.get("autoencoder_sha256") and ae.sha256 != latent["autoencoder_sha256"]:
                raise ValueError(f"{where}: not the autoencoder {ckpt} was trained with (its latents were made "
                                 f"by weights {latent['autoencoder_sha256'][:12]}..., these are {ae.sha256[:12]}...)")
        return cls(model, config, data, dev, text, ckpt, ae)

    # ------------------------------------------------------------------ 1. plan

    def _thickness(self, canon: Volume) -> float:
        """The mask's slice spacing, held inside the range the model was trained on."""
        trained = self.data.get("slice_thickness_mm") or [canon.spacing[0]]
        return float(np.clip(canon.spacing[0], min(trained), max(trained)))

    def generation_grid(self, gm: GenerationMask) -> tuple[np.ndarray, tuple[int, int, int]]:
        canon = gm.labels
        cfg = dataclasses.replace(self.prepare, slice_thickness=self._thickness(canon))
        return output_grid(canon, canon.array > 0, cfg)

    def plan(self, mask: Volume, report: str = "", *, vocabulary: str | Vocabulary = "total", seed: int = 0,
             sampling: Sampling | None = None, log=None, key=None, body: Volume | None = None) -> Plan:
        """Validate ``mask`` (any orientation, labels of ``vocabulary``) and lay out its chain of windows.
        ``body``: a body mask on the mask's grid, for a mask without a body label (see
        :func:`~tracect.generate.masks.prepare_mask`).

        The burn-in (``sampling.warmup``, sequential mode): a chain remembers where it came from for about
        ten slices, and a chain started from noise alone begins elsewhere than one that arrives at the
        same anatomy from its neighbours (on the ``cpu`` model the lung and spleen of the first slices
        were 90–230 HU darker than the same mask slices later in the volume). So the chain first runs
        through the mask's top ``B`` slices mirrored (slices B, ..., 1) and turns at slice 0, like reflect
        padding; those slices are generated and dropped. It costs about ``B / (K - overlap)`` windows.
        """
        sampling = (sampling or Sampling()).resolved(self.config.diffusion)
        mc = self.config.model
        gm = prepare_mask(mask, get_vocabulary(vocabulary), self.vocabulary, body)
        affine, shape = self.generation_grid(gm)
        labels = resample_to_grid(gm.labels, affine, shape, order=0, dtype=np.uint8).array
        lesion, placed = None, []
        if mc.findings and not self.latent:
            # the report's lesions, placed once per volume from its seed (numpy's stream; torch's
            # generator below draws the noise)
            names = {n: i for i, n in self.vocabulary.labels.items()}
            lesion, placed, notes = place_lesions(parse_findings(report), labels, affine, names,
                                                  np.random.default_rng(int(seed)))
            gm.notes.extend(notes)
        for note in gm.notes:
            if log:
                log(note)
        Z = shape[0]
        K = mc.frames
        if mc.kind == "3d":
            K = volume_window(mc, Z, sampling.window)
            if K < Z and sampling.mode != "parallel":
                raise ValueError(f"a 3D model sampled in windows of {K} < {Z} slices needs mode='parallel'")
        B = min(sampling.warmup, Z - 1) if sampling.mode == "sequential" and mc.known_frames and K > 1 else 0
        pad = max(0, K - (B + Z))  # fewer slices than a window: repeat the last slice, crop afterwards
        order = np.concatenate([np.arange(B, 0, -1), np.arange(Z + pad)])  # chain slice -> mask slice
        spacing = Volume(labels, affine).spacing  # (z, y, x) mm
        frame = None
        if self.latent:  # latent frames (C, h, w); the labels stay at the slices' resolution
            s = mc.image_size
            frame = (mc.latent_channels, s, s)
        chain = strategies.Chain(torch.from_numpy(labels[np.minimum(order, Z - 1)]),
                                 torch.from_numpy(order).float() / max(Z - 1, 1), torch.tensor(spacing, dtype=torch.float32),
                                 report, K, sampling.overlap, torch.Generator().manual_seed(int(seed)), key, frame,
                                 None if lesion is None else torch.from_numpy(lesion[np.minimum(order, Z - 1)]))
        vocab_name = get_vocabulary(vocabulary).name
        return Plan(gm, affine, shape, labels, chain, B, report, int(seed), vocab_name, sampling, key,
                    lesions=placed)

    # ------------------------------------------------------------------ 2. sample

    def denoiser_for(self, sampling: Sampling):
        """``denoiser_for(chains, starts, known, known_values) -> denoise(x_t, t)`` of the strategies:
        the windows' conditions built by :func:`~tracect.model.conditioning.build_condition`, guided in
        one network call."""
        if self.latent:
            from tracect.autoencoder.latents import mask_fractions

            factor = self.autoencoder.config.model.factor
            labels_of = lambda m: mask_fractions(m, self.config.model.num_classes + 1, factor)  # noqa: E731
        else:
            labels_of = lambda m: m  # noqa: E731

        def build(chains, starts, known, known_values):
            K = chains[0].K
            # (B, K, H, W) uint8 ids; a latent model: (B, K, L, h, w) label fractions per latent pixel
            mask = labels_of(torch.stack([c.labels[s:s + K] for c, s in zip(chains, starts)]))
            position = torch.stack([c.positions[s:s + K] for c, s in zip(chains, starts)])  # (B, K)
            spacing = torch.stack([c.spacing for c in chains])  # (B, 3)
            lesion = None
            if chains[0].lesion is not None:  # (B, K, H, W) lesion kind codes
                lesion = torch.stack([c.lesion[s:s + K] for c, s in zip(chains, starts)])
            cond = build_condition(self.text, mask, [c.report for c in chains], spacing, position, self.device,
                                   known=known, known_values=known_values, null=sampling.guided,
                                   findings=self.config.model.findings, lesion=lesion)
            return make_denoise(self.model, cond, self.config.diffusion.train_timesteps, self.autocast,
                                sampling.guidance, sampling.lesion_guidance)

        return build

    @torch.no_grad()
    def sample(self, plans: Iterable[Plan], sampling: Sampling, batch_volumes: int = 1,
               progress: bool = False) -> Iterator[Plan]:
        """Sample the chains of ``plans`` (all with ``sampling``), yielding each plan as its chain is
        complete. Sequential mode runs up to ``batch_volumes`` chains in lockstep (3D models: one at a
        time, their windows differ in length); parallel mode one volume at a time."""
        sampling = sampling.resolved(self.config.diffusion)
        denoiser_for = self.denoiser_for(sampling)
        bar = _bar(progress, "windows" if sampling.mode == "sequential" else "steps")

        def checked(plans):
            for p in plans:
                if p.sampling != sampling:  # the chain was laid out for the plan's settings
                    raise ValueError(f"a plan made with {p.sampling} cannot be sampled with {sampling}")
                yield p

        try:
            if sampling.mode == "sequential":
                by_chain = {}

                def chains():
                    for p in checked(plans):
                        by_chain[id(p.chain)] = p
                        bar.total = (bar.total or 0) + len(p.chain.starts)
                        yield p.chain

                batch = 1 if self.config.model.kind == "3d" else batch_volumes
                for chain in strategies.sequential(chains(), denoiser_for, self.schedule, sampling.steps,
                                                   self.device, batch, on_window=lambda c: bar.update()):
                    yield by_chain.pop(id(chain))
            else:
                for p in checked(plans):
                    bar.total = (bar.total or 0) + sampling.steps
                    strategies.parallel(p.chain, denoiser_for, self.schedule, sampling.steps, self.device,
                                        sampling.chunk, on_step=lambda i: bar.update())
                    yield p
        finally:
            bar.close()

    # ------------------------------------------------------------------ 3. finish

    def finish(self, plan: Plan, batch_volumes: int = 1, grain: Grain | None = None) -> GeneratedVolume:
        """The sampled chain of ``plan`` as a CT on the mask's grid, with its reproducibility record.
        With ``grain``, the CT on the mask's grid gets real CT's noise above the generation grid's
        Nyquist frequency (``canonical``, the generation grid, is left as sampled)."""
        Z = plan.shape[0]
        frames = plan.chain.out[plan.burn_in:plan.burn_in + Z].numpy()
        if self.latent:  # decoded a few slices at a time, straight into the HU volume
            from tracect.autoencoder.model import decode_all

            ae = self.autoencoder
            hu = decode_all(ae.model, frames, 8, self.device, ae.latent_scale, ae.config.model.hu_window)
            canonical = Volume(hu, plan.affine)
        else:
            canonical = Volume(unit_to_hu(frames, self.prepare.hu_window), plan.affine)
        # back to the mask's own grid: canonical mask grid, then the mask's axis order
        source = plan.mask.source
        src_canon = source.canonical()
        hu = resample_to_int16(canonical, src_canon.affine, src_canon.shape, cval=AIR_HU)  # in slabs
        spacing = Volume(plan.labels, plan.affine).spacing
        if grain is not None:  # (Z, Y, X) int16 on the mask's canonical grid, axial slices
            hu = add_grain(hu, src_canon.spacing[1:], grain.spectrum, grain.cutoff(spacing[1:]), plan.seed)
        ct = Volume(hu, src_canon.affine).like(source)
        chain, s = plan.chain, plan.sampling
        info = {
            "tracect_version": __version__, "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "checkpoint_sha256": self.checkpoint_sha256, "config_name": self.config.name,
            **({"autoencoder": str(self.autoencoder.checkpoint), "autoencoder_sha256": self.autoencoder.sha256}
               if self.latent else {}),
            "seed": plan.seed, "sampler": "ddim", "parametrization": self.config.diffusion.parametrization,
            "schedule": self.schedule.name, "sampling": s.to_json(),
            # what ran, as distinct from what was asked: the burn-in and overlap in effect, the window length
            "steps": s.steps, "guidance": s.guidance, "mode": s.mode, "overlap": s.overlap if chain.K > 1 else 0,
            "warmup": plan.burn_in, "frames": chain.K, "windows": len(chain.starts), "batch_volumes": batch_volumes,
            "report": plan.report, **({"findings": findings_record(plan.report), "lesions": plan.lesions}
                                       if self.config.model.findings else {}),
            "mask_sha256": mask_hash(source), "mask_source": source.meta.get("source"),
            "vocabulary": plan.vocabulary, "notes": plan.mask.notes, "organ_files": source.meta.get("organ_files"),
            "generation_grid": {"shape": list(plan.shape), "spacing_mm": list(spacing),
                                "affine": np.asarray(plan.affine).tolist()},
            "output": {"shape": list(ct.shape), "spacing_mm": list(ct.spacing),
                       "orientation": "".join(ct.orientation)},
            "grain": grain.record(spacing[1:]) if grain is not None else None,
            "device": str(self.device), "seconds": round(time.perf_counter() - plan.started, 3),
        }
        return GeneratedVolume(ct, canonical, Volume(plan.labels, plan.affine), info)

    # ------------------------------------------------------------------ all three

    def generate(self, mask: Volume, report: str = "", *, vocabulary: str | Vocabulary = "total",
                 seed: int = 0, sampling: Sampling | None = None, progress: bool = False, log=None,
                 body: Volume | None = None, grain: Grain | None = None, **settings) -> GeneratedVolume:
        """Generate a CT for ``mask`` (any orientation, labels of ``vocabulary``) and ``report``.

        ``sampling`` (default :class:`Sampling`'s defaults and the model's steps and guidance), with any
        of its fields given as keywords on top (``steps=4, mode="parallel"``; ``None`` keeps the value).
        See :class:`Sampling`, :meth:`plan` (the burn-in, ``body``) and :meth:`finish` (``grain``)."""
        sampling = (sampling or Sampling()).replace(**settings)
        plan = self.plan(mask, report, vocabulary=vocabulary, seed=seed, sampling=sampling, log=log, body=body)
        (done,) = self.sample([plan], sampling, progress=progress)
        return self.finish(done, grain=grain)

    def generate_many(self, plans: Iterable[Plan], sampling: Sampling | None = None, batch_volumes: int = 8,
                      progress: bool = False, grain: Grain | None = None) -> Iterator[tuple[Plan, GeneratedVolume]]:
        """Generate a cohort: ``plans`` (from :meth:`plan`, with the same ``sampling``; consumed lazily)
        in lockstep, ``batch_volumes`` at a time; yields ``(plan, volume)`` as each volume completes. A
        volume comes out as it would alone (per-volume generators; batched network calls agree with
        single ones to float rounding)."""
        sampling = sampling or Sampling()
        for plan in self.sample(plans, sampling, batch_volumes, progress):
            yield plan, self.finish(plan, batch_volumes, grain)


def _bar(enabled: bool, unit: str):
    from tqdm import tqdm

    return tqdm(total=0, desc="generate", unit=unit, disable=not enabled)
