"""Training loop: AdamW with warm-up + cosine LR, gradient clipping and accumulation, EMA, bf16
autocast where supported, atomic checkpoints and exact resume.

All training randomness (times, noise, condition dropout, revealed frames) comes from one
``torch.Generator`` on the CPU whose state is checkpointed, and windows come in the order of a
:class:`~tracect.data.windows.WindowSampler` restarted at the count already consumed, so
``N`` steps straight equal ``N/2`` steps, a resume and ``N/2`` more.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from tracect import __version__
from tracect.config import RunConfig
from tracect.data.cache import PreparedCache
from tracect.data.windows import FrameWindows, WindowSampler
from tracect.diffusion.schedule import Schedule
from tracect.model.denoiser import FrameDenoiser, geometry_features
from tracect.model.text import TextEncoder
from tracect.train.checkpoint import optimizer_from_tensors, resolve_checkpoint, save_checkpoint
from tracect.train.losses import diffusion_loss, flow_loss
from tracect.utils.atomic import write_json

METRICS = ("step", "loss", "loss_diffusion", "loss_flow", "lr", "grad_norm", "steps_per_s",
           "windows_per_s", "elapsed_s")


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def autocast_factory(device: torch.device, precision: str):
    """A context-manager factory: bf16 autocast where asked and supported, else a no-op."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda"
                                       and torch.cuda.is_bf16_supported())
    if not use_bf16:
        return None
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


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
    consumed: int = 0  # windows drawn from the sampler so far (this rank)
    elapsed_s: float = 0.0  # training wall time over all sessions of this run


def build_model(config: RunConfig) -> FrameDenoiser:
    """The denoiser of a run configuration (untrained)."""
    return FrameDenoiser(config.model)


class Trainer:
    """Trains a :class:`FrameDenoiser` on a prepared cache, writing a run folder.

    Python API: ``Trainer(config, cache, run_dir).fit()``, or :meth:`train_step` on batches from
    :meth:`batches` for custom loops.
    """

    def __init__(self, config: RunConfig, cache: str | Path, run_dir: str | Path, *, device: str = "auto",
                 resume: bool = False, text: TextEncoder | None = None, progress: bool = True,
                 rank: int = 0, world_size: int = 1):
        self.config, self.run_dir = config, Path(run_dir)
        self.device = resolve_device(device)
        self.autocast = autocast_factory(self.device, config.train.precision)
        self.progress, self.rank, self.world_size = progress and rank == 0, rank, world_size
        mc, tc = config.model, config.train
        self.cache = PreparedCache(cache)
        if self.cache.config.size != mc.image_size:
            raise ValueError(f"cache slices are {self.cache.config.size} px but model.image_size is {mc.image_size}")
        if self.cache.vocabulary.num_classes > mc.num_classes:
            raise ValueError(f"cache vocabulary has {self.cache.vocabulary.num_classes} classes; "
                             f"model.num_classes is {mc.num_classes}")
        split = "train" if any(m["split"] == "train" for m in self.cache.cases) else None
        self.windows = FrameWindows(self.cache.root, k=mc.frames, split=split)
        has_val = any(m["split"] == "val" and m["n_slices"] >= mc.frames for m in self.cache.cases)
        self.val_windows = FrameWindows(self.cache.root, k=mc.frames, split="val" if has_val else split)

        torch.manual_seed(tc.seed)  # parameter initialisation
        self.model = build_model(config).to(self.device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.schedule = Schedule(config.diffusion)
        self.text = text or TextEncoder(mc.text_encoder, mc.text_max_tokens, units=mc.text_units)
        if (self.text.units, self.text.max_tokens) != (mc.text_units, mc.text_max_tokens):
            raise ValueError(f"text encoder gives {self.text.max_tokens} {self.text.units}; the model expects "
                             f"{mc.text_max_tokens} {mc.text_units}")
        if self.text.dim != mc.text_dim:
            raise ValueError(f"text encoder '{mc.text_encoder}' has width {self.text.dim}; model.text_dim is {mc.text_dim}")
        self.generator = torch.Generator().manual_seed(tc.seed * 7919 + rank)
        self.state = TrainState()
        if resume:
            self._resume()
        elif (self.run_dir / "latest").exists():
            raise FileExistsError(f"{self.run_dir} already holds a run; use --resume or another --out")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            write_json(self.run_dir / "config.json", config.to_json())
            write_json(self.run_dir / "data.json", self.data_info())

    # ------------------------------------------------------------------ state

    def _resume(self) -> None:
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

    def data_info(self) -> dict:
        """What generation needs to know about the training data: grid and intensity conventions."""
        return {"cache": str(self.cache.root.resolve()), "windows": len(self.windows),
                "cases": [m["case"] for m in self.windows.cache.cases],  # the cases trained on
                "tracect_version": __version__, "torch_version": torch.__version__,
                "prepare": self.cache.config.to_json(), "vocabulary": self.cache.vocabulary.to_json(),
                "slice_thickness_mm": sorted({round(m["spacing"][0], 3) for m in self.cache.cases}),
                "pixel_spacing_mm": [min(m["spacing"][1] for m in self.cache.cases),
                                     max(m["spacing"][1] for m in self.cache.cases)]}

    def save(self) -> Path:
        rng = {"train_generator": self.generator.get_state(), "torch_cpu": torch.get_rng_state()}
        trainer = {"consumed": self.state.consumed, "elapsed_s": self.state.elapsed_s,
                   "windows": len(self.windows), "world_size": self.world_size}
        return save_checkpoint(self.run_dir, self.state.step, self.config, self.model, self.ema,
                               self.optimizer, rng, trainer, keep=self.config.train.keep_checkpoints,
                               extra={"data.json": self.data_info()})

    # ------------------------------------------------------------------ data

    def batches(self):
        """Endless micro-batches in the resumable order (each a dict of ``(B, K, ...)`` tensors)."""
        tc = self.config.train
        sampler = WindowSampler(len(self.windows), seed=tc.seed, rank=self.rank, world_size=self.world_size,
                                start=self.state.consumed)
        loader = DataLoader(self.windows, batch_size=tc.batch_size, sampler=sampler, num_workers=tc.num_workers,
                            persistent_workers=tc.num_workers > 0, drop_last=False)
        for batch in loader:
            yield batch

    def _rand(self, *shape) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator)

    def _reveal(self, B: int, K: int) -> torch.Tensor:
        """Which frames are given clean ``(B, K)``: none, a prefix (how a volume continues) or any
        proper subset, so one model both starts and continues a volume."""
        known = torch.zeros(B, K, dtype=torch.bool)
        if K < 2 or not self.config.model.known_frames:
            return known
        u, mode, bits = self._rand(B), self._rand(B), self._rand(B, K) < 0.5
        n_prefix = (self._rand(B) * (K - 1)).long() + 1  # 1..K-1 frames
        prefix = torch.arange(K)[None] < n_prefix[:, None]
        subset = bits & ~(bits.all(1, keepdim=True) & (torch.arange(K)[None] == K - 1))
        chosen = torch.where((mode < 0.7)[:, None], prefix, subset)
        return torch.where((u < self.config.train.p_known)[:, None], chosen, known)

    # ------------------------------------------------------------------ step

    def _micro_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        tc, mc, dev = self.config.train, self.config.model, self.device
        img = batch["image"]
        B, K = img.shape[:2]
        t = self.schedule.sample_t(B, self.generator)
        eps = torch.randn(img.shape, generator=self.generator)
        drop_report = self._rand(B) < tc.p_drop_report
        drop_mask = self._rand(B) < tc.p_drop_mask
        drop_geom = self._rand(B) < tc.p_drop_geometry
        known = self._reveal(B, K)

        mask = torch.where(drop_mask[:, None, None, None], torch.full_like(batch["mask"], mc.num_classes),
                           batch["mask"])
        reports = ["" if d else r for d, r in zip(drop_report.tolist(), batch["report"])]
        tokens, pooled = self.text.encode(reports)
        spacing, position = batch["spacing"], batch["position"]
        geometry = geometry_features(spacing[:, 1], spacing[:, 0], position[:, 0], position[:, -1], ~drop_geom)

        img, eps, t, known = img.to(dev), eps.to(dev), t.to(dev), known.to(dev)
        x_t = self.schedule.add_noise(img, eps, t)
        flow = batch["flow"].to(dev)
        with self.autocast() if self.autocast else contextlib.nullcontext():
            pred = self.model(x_t, self.schedule.network_time(t), mask.to(dev), tokens.to(dev), pooled.to(dev),
                              geometry.to(dev), known, img, flow if mc.flow_input else None)
        pred = pred.float()
        l_diff = diffusion_loss(pred, self.schedule.target(img, eps, t), ~known)
        loss = l_diff
        l_flow = torch.zeros((), device=dev)
        if tc.flow_loss_weight > 0 and K > 1:
            x0_hat, _ = self.schedule.split(x_t, pred, t)
            # known frames are real: the loss then ties a generated frame to its given neighbour
            x0 = torch.where(known[:, :, None, None], img, x0_hat.clamp(-1, 1))
            l_flow = flow_loss(x0, flow, batch["body"].to(dev), (t < tc.flow_loss_max_t).float())
            loss = loss + tc.flow_loss_weight * l_flow
        stats = {"loss_diffusion": l_diff.item(), "loss_flow": l_flow.item(),
                 "drop_report": drop_report.float().mean().item(), "drop_mask": drop_mask.float().mean().item(),
                 "drop_geometry": drop_geom.float().mean().item(), "known_frac": known.float().mean().item()}
        return loss, stats

    def train_step(self, micro_batches: list[dict]) -> dict:
        """One optimizer step over ``grad_accum`` micro-batches; returns the step's metrics."""
        tc = self.config.train
        self.model.train()
        lr = lr_at(self.state.step, tc)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        total, agg = 0.0, {}
        for batch in micro_batches:
            loss, stats = self._micro_loss(batch)
            (loss / len(micro_batches)).backward()
            total += loss.item() / len(micro_batches)
            for k, v in stats.items():
                agg[k] = agg.get(k, 0.0) + v / len(micro_batches)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.optimizer.step()
        self._update_ema()
        self.state.step += 1
        self.state.consumed += sum(len(b["report"]) for b in micro_batches)
        return {"loss": total, "lr": lr, "grad_norm": float(grad_norm), **agg}

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = min(self.config.train.ema_decay, (1 + self.state.step) / (10 + self.state.step))
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p.detach(), 1 - decay)
        for e, b in zip(self.ema.buffers(), self.model.buffers()):
            e.copy_(b)

    # ------------------------------------------------------------------ loop

    def fit(self, max_steps: int | None = None) -> TrainState:
        """Train until ``max_steps`` (default: the config's) or ``max_minutes``; checkpoint on exit."""
        from tqdm import tqdm

        from tracect.train.visualize import save_validation_grid

        tc = self.config.train
        max_steps = max_steps or tc.max_steps
        data = self.batches()
        metrics_path = self.run_dir / "metrics.csv"
        _trim_metrics(metrics_path, self.state.step)
        writer = _tensorboard(self.run_dir) if self.rank == 0 else None
        bar = tqdm(total=max_steps, initial=self.state.step, desc="train", unit="step", disable=not self.progress)
        start, session_start = time.perf_counter(), self.state.elapsed_s
        last_t, last_step = start, self.state.step
        saved_at = self.state.step
        while self.state.step < max_steps:
            m = self.train_step([next(data) for _ in range(tc.grad_accum)])
            self.state.elapsed_s = session_start + time.perf_counter() - start
            step = self.state.step
            bar.update(1)
            if step % tc.log_every == 0 or step == max_steps:
                now = time.perf_counter()
                rate = (step - last_step) / max(now - last_t, 1e-9)
                last_t, last_step = now, step
                row = {"step": step, "loss": m["loss"], "loss_diffusion": m["loss_diffusion"],
                       "loss_flow": m["loss_flow"], "lr": m["lr"], "grad_norm": m["grad_norm"],
                       "steps_per_s": rate, "windows_per_s": rate * tc.batch_size * tc.grad_accum,
                       "elapsed_s": self.state.elapsed_s}
                bar.set_postfix(loss=f"{m['loss']:.4f}", flow=f"{m['loss_flow']:.4f}")
                if self.rank == 0:
                    _append_metrics(metrics_path, row)
                    if writer is not None:
                        for k, v in row.items():
                            if k != "step":
                                writer.add_scalar(k, v, step)
            out_of_time = tc.max_minutes is not None and (time.perf_counter() - start) / 60 >= tc.max_minutes
            if self.rank == 0 and (step % tc.val_every == 0 or step == max_steps or out_of_time):
                save_validation_grid(self, self.run_dir / "samples" / f"step_{step:07d}.png")
            if self.rank == 0 and (step % tc.checkpoint_every == 0 or step == max_steps or out_of_time):
                self.save()
                saved_at = step
            if out_of_time:
                break
        bar.close()
        if self.rank == 0 and saved_at != self.state.step:
            self.save()
        if writer is not None:
            writer.close()
        return self.state


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: CSV only
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _append_metrics(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRICS)
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _trim_metrics(path: Path, step: int) -> None:
    """Drop rows logged after the checkpoint a run resumes from (they will be logged again)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRICS)
        w.writeheader()
        w.writerows(rows)
