"""Training loop: AdamW with warm-up + cosine LR, gradient clipping and accumulation, EMA, bf16
autocast where supported, data-parallel over ``torchrun`` processes, atomic checkpoints and exact resume.

Windows come in the order of one global :class:`~tracect.data.windows.WindowSampler` stream,
restarted at the count already consumed; each rank takes its share of every step
(:mod:`tracect.train.distributed`). All training randomness (times, noise, condition dropout,
revealed frames) comes from one generator per window, seeded by a per-step key and the window's place
in the step's global batch; the keys come from one CPU ``torch.Generator`` whose state is checkpointed.
So ``N`` steps straight equal ``N/2`` steps, a resume and ``N/2`` more, on any number of processes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from tracect import __version__
from tracect.config import RunConfig
from tracect.data.cache import PreparedCache
from tracect.data.windows import FrameWindows, WindowSampler
from tracect.diffusion.schedule import Schedule
from tracect.model.conditioning import build_condition
from tracect.model.denoiser import FrameDenoiser
from tracect.model.text import TextEncoder
from tracect.runtime import autocast_context, autocast_factory, resolve_device
from tracect.model.weights import resolve_checkpoint
from tracect.train.augment import jitter_known
from tracect.train.checkpoint import optimizer_from_tensors, save_checkpoint
from tracect.train.distributed import (ShardSampler, StepLayout, all_reduce_sum, barrier, broadcast_flag,
                                       sample_generators)
from tracect.train.losses import diffusion_loss, flow_loss, region_loss
from tracect.train.run_files import ProgressBar, append_metrics, remove_leftovers, tensorboard_writer, trim_metrics
from tracect.utils.atomic import write_json

METRICS = ("step", "loss", "loss_diffusion", "loss_flow", "lr", "grad_norm", "steps_per_s",
           "windows_per_s", "elapsed_s", "loss_region")


def lr_at(step: int, config) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr / 10`` at ``max_steps``."""
    c = config
    if step < c.warmup_steps:
        return c.lr * (step + 1) / c.warmup_steps
    progress = min(1.0, (step - c.warmup_steps) / max(1, c.max_steps - c.warmup_steps))
    return c.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class TrainState:
    step: int = 0
    consumed: int = 0  # windows drawn from the global stream so far (all ranks together)
    elapsed_s: float = 0.0  # training wall time over all sessions of this run


def sized_for_cache(config: RunConfig, cache: str | Path) -> tuple[RunConfig, str | None]:
    """``config`` with ``model.num_classes`` raised to the cache vocabulary's size where the preset's is
    smaller (a preset is sized for ``tracect``; ``tracect-fat`` has one class more), and a note saying so."""
    from tracect.data.cache import PreparedCache

    vocab = PreparedCache(cache).vocabulary
    if vocab.num_classes <= config.model.num_classes:
        return config, None
    note = (f"model.num_classes {config.model.num_classes} -> {vocab.num_classes} for the cache's vocabulary "
            f"'{vocab.name}'")
    return config.replace(model={"num_classes": vocab.num_classes}), note


def build_model(config: RunConfig) -> FrameDenoiser:
    """The denoiser of a run configuration (untrained)."""
    return FrameDenoiser(config.model)


class Trainer:
    """Trains a :class:`FrameDenoiser` on a prepared cache, writing a run folder.

    Python API: ``Trainer(config, cache, run_dir).fit()``, or :meth:`train_step` on batches from
    :meth:`batches` for custom loops. With ``world_size > 1`` the process group must already be
    initialised (:func:`tracect.train.distributed.init_from_env`); every rank builds a Trainer and
    calls :meth:`fit`, and only rank 0 writes to ``run_dir``. ``resume=True`` on a folder with no
    checkpoint yet starts the run (``resumed_from`` is then ``None``), so a job can always be re-run
    with the same command.
    """

    def __init__(self, config: RunConfig, cache: str | Path, run_dir: str | Path, *, device: str = "auto",
                 resume: bool = False, text: TextEncoder | None = None, progress: bool = True,
                 rank: int = 0, world_size: int = 1):
        self.config, self.run_dir = config, Path(run_dir)
        self.device = resolve_device(device)
        self.autocast = autocast_factory(self.device, config.train.precision)
        self.progress, self.rank, self.world_size = progress and rank == 0, rank, world_size
        mc, tc = config.model, config.train
        self.layout = StepLayout(tc.batch_size, tc.grad_accum, world_size, rank)  # refuses uneven splits
        if world_size > 1 and not torch.distributed.is_initialized():
            raise RuntimeError("world_size > 1 needs a process group: start the processes with torchrun "
                               "and call tracect.train.distributed.init_from_env first")
        self.cache = PreparedCache(cache)
        self.latent = None
        if mc.latent_channels > 1:  # a latent model: the cache's encoded slices
            from tracect.autoencoder.latents import latent_info

            self.latent = latent_info(self.cache.root)
            if self.latent is None:
                raise ValueError(f"{self.cache.root} holds no latents for a latent model: run "
                                 "`tracect autoencoder encode --cache` on it first")
            if self.latent["latent_channels"] != mc.latent_channels:
                raise ValueError(f"cache latents have {self.latent['latent_channels']} channels; "
                                 f"model.latent_channels is {mc.latent_channels}")
        grid = self.cache.config.size // (self.latent["factor"] if self.latent else 1)
        if grid != mc.image_size:
            raise ValueError(f"cache frames are {grid} px (slices of {self.cache.config.size} px"
                             f"{' / ' + str(self.latent['factor']) if self.latent else ''}) but model.image_size is "
                             f"{mc.image_size}")
        if self.latent and tc.known_jitter_hu > 0:
            raise ValueError("train.known_jitter_hu shifts HU per label: a pixel model's option, not a latent one's")
        if self.latent and tc.region_loss_weight > 0:
            raise ValueError("train.region_loss_weight holds each label's mean HU: a pixel model's option, "
                             "not a latent one's")
        if self.cache.vocabulary.num_classes > mc.num_classes:
            raise ValueError(f"cache vocabulary has {self.cache.vocabulary.num_classes} classes; "
                             f"model.num_classes is {mc.num_classes}")
        split = "train" if any(m["split"] == "train" for m in self.cache.cases) else None
        latent_labels = mc.num_classes + 1 if self.latent else None
        self.windows = FrameWindows(self.cache.root, k=mc.frames, split=split, latent_labels=latent_labels,
                                    lesion_repeat=tc.lesion_window_repeat, pseudo_repeat=tc.pseudo_window_repeat)
        has_val = any(m["split"] == "val" and m["n_slices"] >= mc.frames for m in self.cache.cases)
        self.val_windows = FrameWindows(self.cache.root, k=mc.frames, split="val" if has_val else split,
                                        latent_labels=latent_labels)

        torch.manual_seed(tc.seed)  # parameter initialisation
        self.model = build_model(config).to(self.device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        if tc.channels_last and mc.kind != "3d":
            self.model.to(memory_format=torch.channels_last)
            self.ema.to(memory_format=torch.channels_last)
        # the fused kernel does the whole update in a few launches on a GPU (same arithmetic)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                                           fused=self.device.type == "cuda")
        self.schedule = Schedule(config.diffusion)
        self.text = text or TextEncoder(mc.text_encoder, mc.text_max_tokens, units=mc.text_units)
        if (self.text.units, self.text.max_tokens) != (mc.text_units, mc.text_max_tokens):
            raise ValueError(f"text encoder gives {self.text.max_tokens} {self.text.units}; the model expects "
                             f"{mc.text_max_tokens} {mc.text_units}")
        if self.text.dim != mc.text_dim:
            raise ValueError(f"text encoder '{mc.text_encoder}' has width {self.text.dim}; model.text_dim is {mc.text_dim}")
        # the same stream on every rank: it only hands out per-step keys (see _micro_loss)
        self.generator = torch.Generator().manual_seed(tc.seed * 7919)
        self.state = TrainState()
        self.resumed_from: Path | None = None
        if resume and (self.run_dir / "latest").exists():
            self.resumed_from = self._resume()
        elif (self.run_dir / "latest").exists():
            raise FileExistsError(f"{self.run_dir} already holds a run; use --resume or another --out")
        if self.rank == 0:
            if self.run_dir.is_dir():
                remove_leftovers(self.run_dir)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.run_dir / "config.json", config.to_json())
            write_json(self.run_dir / "data.json", self.data_info())
        # gradients are averaged over ranks; checkpoints and the EMA use the unwrapped self.model
        self.net: torch.nn.Module = self.model
        if world_size > 1:
            self._check_same_start()
            self.net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if tc.compile:
            self.net = torch.compile(self.net)

    # ------------------------------------------------------------------ state

    def _resume(self) -> Path:
        ckpt = resolve_checkpoint(self.run_dir)
        saved = RunConfig.from_json(json.loads((ckpt / "config.json").read_text()))
        if saved.model != self.config.model or saved.diffusion != self.config.diffusion:
            raise ValueError(f"{self.run_dir}: the checkpoint's model/diffusion config differs from --config")
        self.model.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=str(self.device)))
        self.ema.load_state_dict(load_file(str(ckpt / "ema.safetensors"), device=str(self.device)))
        trainer = json.loads((ckpt / "trainer.json").read_text())
        opt_tensors = load_file(str(ckpt / "optimizer.safetensors"), device=str(self.device))
        optimizer_from_tensors(self.optimizer, opt_tensors, trainer["optimizer"])
        rng = load_file(str(ckpt / "rng.safetensors"))
        self.generator.set_state(rng["train_generator"])
        torch.set_rng_state(rng["torch_cpu"])
        self.state = TrainState(step=trainer["step"], consumed=trainer["consumed"],
                                elapsed_s=trainer.get("elapsed_s", 0.0))
        return ckpt

    def _check_same_start(self) -> None:
        """Every rank must start from rank 0's checkpoint (or all from scratch): a run folder that not
        every node can read would otherwise let the ranks train from different states."""
        mine = torch.tensor([self.state.step, self.state.consumed], dtype=torch.int64, device=self.device)
        lead = mine.clone()
        torch.distributed.broadcast(lead, src=0)
        if not torch.equal(mine, lead):
            raise RuntimeError(f"rank {self.rank} starts at step {int(mine[0])} but rank 0 at step {int(lead[0])}: "
                               f"{self.run_dir} must be one folder that every node reads (a shared filesystem)")

    def data_info(self) -> dict:
        """What generation needs to know about the training data: grid and intensity conventions."""
        return {"cache": str(self.cache.root.resolve()), "windows": len(self.windows), "latent": self.latent,
                "lesion_windows": self.windows.n_lesion_windows,  # each listed lesion_window_repeat times in "windows"
                "pseudo_labelled_cases": [self.windows.cache.cases[i]["case"] for i in self.windows.pseudo_cases()],
                "cases": [m["case"] for m in self.windows.cache.cases],  # the cases trained on
                "tracect_version": __version__, "torch_version": torch.__version__,
                "prepare": self.cache.config.to_json(), "vocabulary": self.cache.vocabulary.to_json(),
                "slice_thickness_mm": sorted({round(m["spacing"][0], 3) for m in self.cache.cases}),
                "pixel_spacing_mm": [min(m["spacing"][1] for m in self.cache.cases),
                                     max(m["spacing"][1] for m in self.cache.cases)]}

    def save(self) -> Path:
        rng = {"train_generator": self.generator.get_state(), "torch_cpu": torch.get_rng_state()}
        trainer = {"consumed": self.state.consumed, "elapsed_s": self.state.elapsed_s,
                   "windows": len(self.windows), "world_size": self.world_size,
                   "global_batch": self.layout.global_batch}
        return save_checkpoint(self.run_dir, self.state.step, self.config, self.model, self.ema,
                               self.optimizer, rng, trainer, keep=self.config.train.keep_checkpoints,
                               extra={"data.json": self.data_info()})

    # ------------------------------------------------------------------ data

    def batches(self):
        """Endless micro-batches of this rank in the resumable order (each a dict of ``(b, K, ...)``
        tensors, ``b = layout.local_batch``; ``layout.micro_batches`` of them make one step)."""
        tc = self.config.train
        stream = WindowSampler(len(self.windows), seed=tc.seed, start=self.state.consumed)
        loader = DataLoader(self.windows, batch_size=self.layout.local_batch,
                            sampler=ShardSampler(stream, self.layout), num_workers=tc.num_workers,
                            persistent_workers=tc.num_workers > 0, drop_last=False,
                            pin_memory=self.device.type == "cuda")
        for batch in loader:
            yield batch

    def _next_key(self) -> int:
        return int(torch.randint(0, 2**62, (1,), generator=self.generator))

    def _draws(self, gens: list[torch.Generator], K: int) -> dict[str, torch.Tensor]:
        """Each window's random choices but its noise, from its own generator -> ``(n,)`` or ``(n, K)``.

        The noise is drawn after these, from the same generators, only for the windows this rank
        trains on; every rank can so afford the choices of a whole micro-batch (the loss normalisers).
        """
        tc = self.config.train
        t = torch.cat([self.schedule.sample_t(1, g) for g in gens])
        u = torch.stack([torch.rand(6 + K, generator=g) for g in gens])  # (n, 6 + K)
        return {"t": t, "drop_report": u[:, 0] < tc.p_drop_report, "drop_mask": u[:, 1] < tc.p_drop_mask,
                "drop_geometry": u[:, 2] < tc.p_drop_geometry, "known": self._reveal(u[:, 3:], K)}

    def _reveal(self, u: torch.Tensor, K: int) -> torch.Tensor:
        """Which frames are given clean ``(n, K)``: none, a prefix (how a volume continues) or any
        proper subset, so one model both starts and continues a volume. ``u`` ``(n, 3 + K)`` uniforms."""
        n = u.shape[0]
        known = torch.zeros(n, K, dtype=torch.bool)
        if K < 2 or not self.config.model.known_frames:
            return known
        take, mode, frac, bits = u[:, 0], u[:, 1], u[:, 2], u[:, 3:] < 0.5
        n_prefix = (frac * (K - 1)).long() + 1  # 1..K-1 frames
        prefix = torch.arange(K)[None] < n_prefix[:, None]
        subset = bits & ~(bits.all(1, keepdim=True) & (torch.arange(K)[None] == K - 1))
        chosen = torch.where((mode < 0.7)[:, None], prefix, subset)
        return torch.where((take < self.config.train.p_known)[:, None], chosen, known)

    def _jitter_known(self, img: torch.Tensor, mask: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
        """:func:`tracect.train.augment.jitter_known` with the run's settings (HU -> the cache's unit)."""
        tc, (lo, hi) = self.config.train, self.cache.config.hu_window
        return jitter_known(img, mask, gens, tc.known_jitter_hu * 2.0 / (hi - lo), tc.p_known_jitter,
                            self.config.model.num_classes + 1)

    # ------------------------------------------------------------------ step

    def _micro_loss(self, batch: dict, key: int | None = None, whole: range | None = None,
                    part: slice | None = None) -> tuple[torch.Tensor, dict]:
        """Loss of ``batch`` ``(b, K, ...)``, which is ``part`` of the micro-batch at step positions
        ``whole`` (default: the batch is a whole micro-batch at positions ``0..b-1``); ``key`` is the
        step's random key (default: a fresh one).

        The loss is this part's share of the whole micro-batch's loss: the masked means of
        :mod:`tracect.train.losses` are re-normalised by the whole micro-batch's counts, which depend
        only on the keyed random choices, so the parts' losses on G ranks add up to the loss of one
        process without any communication.
        """
        tc, mc, dev = self.config.train, self.config.model, self.device
        img = batch["image"]
        B, K = img.shape[:2]
        key = self._next_key() if key is None else key
        whole, part = (range(B), slice(0, B)) if whole is None else (whole, part)
        gens = sample_generators(key, whole)
        everyone = self._draws(gens, K)
        eps = torch.stack([torch.randn(img.shape[1:], generator=g) for g in gens[part]])
        if eps.shape != img.shape:
            raise ValueError(f"micro-batch of {B} windows but its place {part} in the step holds {len(eps)}")
        t, drop_report, drop_mask, drop_geom, known = (
            everyone[k][part] for k in ("t", "drop_report", "drop_mask", "drop_geometry", "known"))
        # share of the whole micro-batch's normalisers (exactly 1 when the part is the whole)
        share_diff = (max(float((~known).sum()), 1.0) / max(float((~everyone["known"]).sum()), 1.0))
        near = everyone["t"] < tc.flow_loss_max_t
        share_flow = max(float(near[part].sum()), 1e-8) / max(float(near.sum()), 1e-8)

        jittered = self._jitter_known(img, batch["mask"], gens[part]) if tc.known_jitter_hu > 0 else None
        img, eps, t = img.to(dev), eps.to(dev), t.to(dev)
        given = img if jittered is None else jittered.to(dev)  # what the known frames show
        cond = build_condition(self.text, batch["mask"], batch["report"], batch["spacing"], batch["position"], dev,
                               known=known, known_values=given, flow=batch["flow"] if mc.flow_input else None,
                               num_classes=mc.num_classes, drop_report=drop_report, drop_mask=drop_mask,
                               drop_geometry=drop_geom, findings=mc.findings, lesion=batch.get("lesion"))
        known = cond.known
        x_t = self.schedule.add_noise(img, eps, t)
        with autocast_context(self.autocast):
            pred = self.net(x_t, self.schedule.network_time(t), *cond.inputs())
        pred = pred.float()
        weight = None
        if tc.lesion_loss_weight != 1.0 and cond.lesion is not None:
            # a lesion is a fraction of a per cent of the pixels: its pixels count this many times
            weight = 1.0 + (tc.lesion_loss_weight - 1.0) * (cond.lesion > 0).float()  # (B, K, H, W)
        l_diff = diffusion_loss(pred, self.schedule.target(img, eps, t), ~known, weight) * share_diff
        loss = l_diff
        l_flow = torch.zeros((), device=dev)
        l_region = torch.zeros((), device=dev)
        x0_hat = None
        if tc.region_loss_weight > 0:
            x0_hat, _ = self.schedule.split(x_t, pred, t)
            # a lesion's pixels are a region of their own: its level is the finding, not the organ's
            lesion = batch.get("lesion")
            n_labels = mc.num_classes
            regions = batch["mask"] if lesion is None else batch["mask"] + n_labels * (lesion > 0).long()
            l_region = region_loss(x0_hat, img, regions, ~known, 2 * n_labels) * share_diff
            loss = loss + tc.region_loss_weight * l_region
        if tc.flow_loss_weight > 0 and K > 1:
            if x0_hat is None:
                x0_hat, _ = self.schedule.split(x_t, pred, t)
            # known frames are real: the loss then ties a generated frame to its given neighbour
            x0 = torch.where(known.reshape(*known.shape, *([1] * (img.ndim - 2))), img, self.schedule.clip(x0_hat))
            l_flow = flow_loss(x0, batch["flow"].to(dev), batch["body"].to(dev),
                               (t < tc.flow_loss_max_t).float()) * share_flow
            loss = loss + tc.flow_loss_weight * l_flow
        stats = {"loss_diffusion": l_diff.item(), "loss_flow": l_flow.item(), "loss_region": l_region.item(),
                 "drop_report": drop_report.float().mean().item(), "drop_mask": drop_mask.float().mean().item(),
                 "drop_geometry": drop_geom.float().mean().item(), "known_frac": known.float().mean().item()}
        return loss, stats

    def _placements(self, micro_batches: list[dict]) -> tuple[list[tuple[range, slice]], int]:
        """Where each of this rank's micro-batches sits in the step -> ([(whole, part)], micro-batches
        in the whole step)."""
        sizes = [len(b["report"]) for b in micro_batches]
        if self.world_size == 1:  # each micro-batch is a whole one, of any size (custom loops)
            starts = [sum(sizes[:i]) for i in range(len(sizes))]
            return [(range(s, s + n), slice(0, n)) for s, n in zip(starts, sizes)], len(sizes)
        L = self.layout
        if sizes != [L.local_batch] * L.micro_batches:
            raise ValueError(f"rank {self.rank} expects {L.micro_batches} micro-batches of {L.local_batch} "
                             f"windows per step, got sizes {sizes}")
        return [L.placement(i) for i in range(L.micro_batches)], L.grad_accum

    def train_step(self, micro_batches: list[dict]) -> dict:
        """One optimizer step over this rank's micro-batches (see :class:`StepLayout`); returns the
        step's metrics, the same on every rank."""
        tc, G = self.config.train, self.world_size
        self.net.train()
        lr = lr_at(self.state.step, tc)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        key = self._next_key()  # one per step on every rank: the generator streams stay equal
        places, n_whole = self._placements(micro_batches)
        n_local = sum(len(b["report"]) for b in micro_batches)
        names = ("loss", "loss_diffusion", "loss_flow", "loss_region", "drop_report", "drop_mask", "drop_geometry",
                 "known_frac")
        sums = torch.zeros(len(names), dtype=torch.float64)
        for i, (batch, (whole, part)) in enumerate(zip(micro_batches, places)):
            last = i == len(micro_batches) - 1
            # DDP averages gradients over the G ranks, hence the factor G; it all-reduces once per step
            with self.net.no_sync() if G > 1 and not last else contextlib.nullcontext():
                loss, stats = self._micro_loss(batch, key, whole, part)
                (loss * (G / n_whole)).backward()
            n = len(batch["report"])
            # the loss terms add up over micro-batches and ranks; the rates are averaged over windows
            sums += torch.tensor([loss.item() / n_whole, *(stats[k] / n_whole for k in names[1:4]),
                                  *(stats[k] * n / (n_local * G) for k in names[4:])], dtype=torch.float64)
        sums = all_reduce_sum(sums.to(self.device)).cpu() if G > 1 else sums
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.optimizer.step()
        self._update_ema()
        self.state.step += 1
        self.state.consumed += n_local * G
        return {"lr": lr, "grad_norm": float(grad_norm), **dict(zip(names, sums.tolist()))}

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = min(self.config.train.ema_decay, (1 + self.state.step) / (10 + self.state.step))
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p.detach(), 1 - decay)
        for e, b in zip(self.ema.buffers(), self.model.buffers()):
            e.copy_(b)

    # ------------------------------------------------------------------ loop

    def out_of_time(self) -> bool:
        """Whether the run has used its ``max_minutes`` of training (over all its sessions); rank 0's
        clock decides for every rank, so all stop after the same step."""
        limit = self.config.train.max_minutes
        if limit is None:
            return False
        return broadcast_flag(self.state.elapsed_s / 60 >= limit, self.device)

    def fit(self, max_steps: int | None = None) -> TrainState:
        """Train until ``max_steps`` (default: the config's) or until the run's training time reaches
        ``max_minutes``; checkpoint on exit. Every rank calls it; rank 0 alone logs and writes."""
        from tracect.train.visualize import save_validation_grid

        tc = self.config.train
        max_steps = max_steps or tc.max_steps
        lead = self.rank == 0
        data = self.batches()
        metrics_path = self.run_dir / "metrics.csv"
        if lead:
            trim_metrics(metrics_path, self.state.step, METRICS)
        writer = tensorboard_writer(self.run_dir, self.state.step) if lead else None
        bar = ProgressBar(self.state, max_steps, tc.max_minutes, disable=not self.progress)
        start, session_start = time.perf_counter(), self.state.elapsed_s
        last_t, last_step = start, self.state.step
        saved_at = self.state.step
        stop = self.out_of_time()
        while self.state.step < max_steps and not stop:
            m = self.train_step([next(data) for _ in range(self.layout.micro_batches)])
            self.state.elapsed_s = session_start + time.perf_counter() - start
            step = self.state.step
            bar.advance(self.state)
            stop = self.out_of_time()
            # the last step of a run is always logged, also when the time budget ends it
            if lead and (step % tc.log_every == 0 or step == max_steps or stop):
                now = time.perf_counter()
                rate = (step - last_step) / max(now - last_t, 1e-9)
                last_t, last_step = now, step
                row = {"step": step, "loss": m["loss"], "loss_diffusion": m["loss_diffusion"],
                       "loss_flow": m["loss_flow"], "lr": m["lr"], "grad_norm": m["grad_norm"],
                       "steps_per_s": rate, "windows_per_s": rate * self.layout.global_batch,
                       "elapsed_s": self.state.elapsed_s, "loss_region": m["loss_region"]}
                bar.set_postfix(step=f"{step}/{max_steps}", loss=f"{m['loss']:.4f}", flow=f"{m['loss_flow']:.4f}")
                append_metrics(metrics_path, row, METRICS)
                if writer is not None:
                    for k, v in row.items():
                        if k != "step":
                            writer.add_scalar(k, v, step)
            if lead and (step % tc.val_every == 0 or step == max_steps or stop):
                save_validation_grid(self, self.run_dir / "samples" / f"step_{step:07d}.png")
            if step % tc.checkpoint_every == 0 or step == max_steps or stop:
                if lead:
                    self.save()
                saved_at = step
        bar.close()
        if lead and saved_at != self.state.step:
            self.save()
        if writer is not None:
            writer.close()
        barrier(self.device)  # no rank leaves before the last checkpoint is complete
        return self.state
