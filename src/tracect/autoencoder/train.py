"""Training the slice autoencoder, with the habits of ``tracect train``: AdamW with warm-up and cosine
decay, gradient clipping, EMA weights, a progress bar (steps or the time budget), ``metrics.csv``,
validation pictures (real | reconstruction | difference) and figures on held-out slices, atomic
safetensors + JSON checkpoints, and an exact ``--resume`` (crop draws and latent noise come from one
CPU generator whose state is checkpointed).

The run folder is laid out like a denoiser's (``RUN/latest``, ``RUN/checkpoints/step_*``); its
``data.json`` holds the latent scale (1 / the standard deviation of the EMA model's latents on a fixed
sample of training slices), which makes the latents unit-variance for diffusion, and what it learned
from.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from tracect import __version__
from tracect.autoencoder.config import AERunConfig
from tracect.autoencoder.data import SliceBank
from tracect.autoencoder.losses import autoencoder_loss
from tracect.autoencoder.model import SliceAutoencoder, count_parameters, decode_all, encode_all
from tracect.runtime import resolve_device
from tracect.train.checkpoint import optimizer_from_tensors, save_checkpoint
from tracect.train.run_files import ProgressBar, append_metrics
from tracect.train.trainer import TrainState, lr_at
from tracect.utils.atomic import atomic_path, write_json

METRICS = ("step", "loss", "l1", "gradient", "spectrum", "kl", "lr", "grad_norm", "val_mae_hu", "val_psnr_db",
           "val_hf_ratio", "elapsed_s")


def reconstruction_figures(ae: SliceAutoencoder, unit: np.ndarray, body: np.ndarray, window, batch: int = 8,
                           device="cpu") -> dict:
    """How well ``ae`` reconstructs whole slices ``(N, S, S)`` in [-1, 1]: MAE inside the body (HU), PSNR
    over the window's range (dB), SSIM inside the body, and the high-frequency power ratio (top third of
    the spatial frequencies, reconstruction over real, on the body's bounding box)."""
    rec = decode_all(ae, encode_all(ae, unit, batch, device), batch, device)
    return figures_of(unit, rec, body, window)


def figures_of(unit: np.ndarray, rec: np.ndarray, body: np.ndarray, window) -> dict:
    """The figures of :func:`reconstruction_figures` for given real and reconstructed slices ``(N, S, S)``
    in [-1, 1]."""
    from tracect.data.grid import unit_to_hu
    from tracect.evaluate import metrics as M

    unit = np.asarray(unit, np.float32)
    span = window[1] - window[0]
    hu_real, hu_rec = unit_to_hu(unit, window), unit_to_hu(rec, window)
    ys, xs = np.where(body.any(0))
    box = (slice(None), slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)) if len(ys) else (slice(None),) * 3
    ssim = [M.ssim2d(a, b, 2.0, m) for a, b, m in zip(unit, rec, body) if m.sum() >= 20]
    return {"slices": int(len(unit)), "mae_hu_body": float(np.abs(hu_rec - hu_real)[body].mean()),
            "psnr_db": M.psnr(hu_rec, hu_real, span), "ssim_body": float(np.mean(ssim)) if ssim else float("nan"),
            "hf_ratio": M.high_frequency_ratio(hu_rec[box], hu_real[box])}


def phase_at(step: int, config: AERunConfig) -> tuple[int, int, float]:
    """``(crop, batch, lr)`` of training step ``step``. Crops first, with warm-up and cosine decay to
    ``lr / 10`` at the end of that phase; then ``full_slice_steps`` on whole slices, as many pixels per
    step (batch ``batch_size * crop² / image_size²``), the rate decayed on from ``lr / 10`` to ``lr / 100``.
    The first phase's schedule ends where it ends, whatever follows: a run extended by a whole-slice
    phase (``--resume`` with a larger ``max_steps``) is the run that recipe makes from scratch."""
    tc, size = config.train, config.model.image_size
    crop_end = tc.max_steps - tc.full_slice_steps
    if step < crop_end:
        return tc.crop, tc.batch_size, lr_at(step, dataclasses.replace(tc, max_steps=crop_end))
    progress = (step - crop_end) / tc.full_slice_steps
    lr = tc.lr * (0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * progress)))
    return size, max(1, round(tc.batch_size * tc.crop ** 2 / size ** 2)), lr


class AutoencoderTrainer:
    """Trains a :class:`SliceAutoencoder` on a :class:`SliceBank`, writing a run folder."""

    def __init__(self, config: AERunConfig, bank: SliceBank, run_dir: str | Path, *, device: str = "auto",
                 resume: bool = False, progress: bool = True, log=print):
        self.config, self.bank, self.run_dir = config, bank, Path(run_dir)
        self.device, self.progress, self.log = resolve_device(device), progress, log or (lambda *a: None)
        tc = config.train
        torch.manual_seed(tc.seed)
        self.model = SliceAutoencoder(config.model).to(self.device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.generator = torch.Generator().manual_seed(tc.seed * 7919 + 1)
        self.state = TrainState()
        if resume and (self.run_dir / "latest").exists():
            self._resume()
        elif (self.run_dir / "latest").exists():
            raise FileExistsError(f"{self.run_dir} already holds a run; use --resume or another --out")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.run_dir / "config.json", config.to_json())
        # a fixed sample of training slices: the latent scale and the validation pictures' fallback
        rng = np.random.default_rng(tc.seed)
        cases = [c for cs in bank.sources.values() for c in cs]
        picks = [(c, int(z)) for c in cases for z in rng.choice(len(c.unit), min(4, len(c.unit)), replace=False)]
        self.scale_slices = np.stack([c.unit[z] for c, z in picks[:64]])
        judge = bank.held_out or cases[:1]
        self.val_unit = np.concatenate([c.unit[np.linspace(0, len(c.unit) - 1, 6).round().astype(int)] for c in judge])
        self.val_body = np.concatenate([c.body[np.linspace(0, len(c.body) - 1, 6).round().astype(int)] for c in judge])

    def _resume(self) -> None:
        from safetensors.torch import load_file

        from tracect.model.weights import resolve_checkpoint

        ckpt = resolve_checkpoint(self.run_dir)
        saved = AERunConfig.from_json(json.loads((ckpt / "config.json").read_text()))
        if saved.model != self.config.model:
            raise ValueError(f"{self.run_dir}: the checkpoint's autoencoder differs from --config")
        self.model.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=str(self.device)))
        self.ema.load_state_dict(load_file(str(ckpt / "ema.safetensors"), device=str(self.device)))
        trainer = json.loads((ckpt / "trainer.json").read_text())
        optimizer_from_tensors(self.optimizer, load_file(str(ckpt / "optimizer.safetensors"), device=str(self.device)),
                               trainer["optimizer"])
        rng = load_file(str(ckpt / "rng.safetensors"))
        self.generator.set_state(rng["train_generator"])
        self.state = TrainState(step=trainer["step"], elapsed_s=trainer.get("elapsed_s", 0.0))

    def latent_scale(self) -> float:
        z = encode_all(self.ema, self.scale_slices, 8, self.device)
        return float(1.0 / max(z.std(), 1e-6))

    def data_info(self) -> dict:
        return {"kind": "autoencoder", "tracect_version": __version__, "torch_version": torch.__version__,
                "latent_scale": self.latent_scale(), "hu_window": list(self.config.model.hu_window),
                "image_size": self.config.model.image_size, "factor": self.config.model.factor,
                "latent_channels": self.config.model.latent_channels, "data": self.bank.describe(),
                "parameters": count_parameters(self.model)}

    def save(self) -> Path:
        rng = {"train_generator": self.generator.get_state()}
        trainer = {"elapsed_s": self.state.elapsed_s}
        return save_checkpoint(self.run_dir, self.state.step, self.config, self.model, self.ema, self.optimizer,
                               rng, trainer, keep=self.config.train.keep_checkpoints,
                               extra={"data.json": self.data_info()})

    def train_step(self) -> dict:
        tc = self.config.train
        self.model.train()
        crop, batch, lr = phase_at(self.state.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x = self.bank.sample(batch, crop, self.generator, tc.body_fraction).to(self.device)
        x_hat, mu, sigma = self.model(x, self.generator)
        loss, terms = autoencoder_loss(x_hat, x, mu, sigma, tc)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.optimizer.step()
        decay = min(tc.ema_decay, (1 + self.state.step) / (10 + self.state.step))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.model.parameters()):
                e.lerp_(p.detach(), 1 - decay)
        self.state.step += 1
        return {"loss": float(loss.detach()), **terms, "lr": lr, "grad_norm": float(grad_norm)}

    def validate(self) -> dict:
        figs = reconstruction_figures(self.ema, self.val_unit, self.val_body, self.config.model.hu_window,
                                      device=self.device)
        save_pictures(self.ema, self.val_unit[::max(1, len(self.val_unit) // 3)][:3], self.config.model.hu_window,
                      self.run_dir / "samples" / f"step_{self.state.step:07d}.png", device=self.device)
        return figs

    def fit(self, max_steps: int | None = None):
        tc = self.config.train
        max_steps = max_steps or tc.max_steps
        bar = ProgressBar(self.state, max_steps, tc.max_minutes, disable=not self.progress)
        start, session = time.perf_counter(), self.state.elapsed_s
        out_of_time = lambda: tc.max_minutes is not None and self.state.elapsed_s / 60 >= tc.max_minutes  # noqa: E731
        saved = self.state.step
        while self.state.step < max_steps and not out_of_time():
            m = self.train_step()
            self.state.elapsed_s = session + time.perf_counter() - start
            step = self.state.step
            bar.advance(self.state)
            last = step == max_steps or out_of_time()
            val = self.validate() if step % tc.val_every == 0 or last else None
            if step % tc.log_every == 0 or val is not None:
                row = {"step": step, **{k: m[k] for k in ("loss", "l1", "gradient", "spectrum", "kl", "lr", "grad_norm")},
                       "elapsed_s": self.state.elapsed_s}
                if val is not None:
                    row.update(val_mae_hu=val["mae_hu_body"], val_psnr_db=val["psnr_db"], val_hf_ratio=val["hf_ratio"])
                    self.log(f"step {step}: held-out MAE {val['mae_hu_body']:.1f} HU, PSNR {val['psnr_db']:.2f} dB, "
                             f"HF ratio {val['hf_ratio']:.2f}")
                bar.set_postfix(step=f"{step}/{max_steps}", l1_hu=f"{m['l1'] * (self.config.model.hu_window[1] - self.config.model.hu_window[0]) / 2:.1f}")
                append_metrics(self.run_dir / "metrics.csv", row, METRICS)
            if step % tc.checkpoint_every == 0 or last:
                self.save()
                saved = step
        bar.close()
        if saved != self.state.step:
            self.save()
        return self.state


def save_pictures(ae: SliceAutoencoder, unit: np.ndarray, window, path: Path, device="cpu") -> Path:
    """A PNG: per slice, the real slice | its reconstruction | the difference (±200 HU), soft-tissue
    window, and a 4x zoom of the centre of the first two."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = decode_all(ae, encode_all(ae, unit, 8, device), 8, device)
    span = window[1] - window[0]
    to_hu = lambda u: (np.asarray(u, np.float32) + 1) / 2 * span + window[0]  # noqa: E731
    n = len(unit)
    fig, axes = plt.subplots(n, 4, figsize=(13, 3.2 * n), squeeze=False)
    for r in range(n):
        real, got = to_hu(unit[r]), to_hu(rec[r])
        S = real.shape[0]
        c = slice(S // 2 - S // 8, S // 2 + S // 8)
        for ax, img, kw, title in ((axes[r, 0], real, dict(vmin=-160, vmax=240), "real"),
                                   (axes[r, 1], got, dict(vmin=-160, vmax=240), "reconstruction"),
                                   (axes[r, 2], got - real, dict(vmin=-200, vmax=200, cmap="RdBu_r"), "difference (HU)"),
                                   (axes[r, 3], np.concatenate([real[c, c], got[c, c]], 1), dict(vmin=-160, vmax=240),
                                    "centre: real | reconstruction")):
            ax.imshow(img, cmap=kw.pop("cmap", "gray"), **kw)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return path
