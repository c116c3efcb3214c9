"""Validation images: real windows beside windows generated from their masks and reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tracect.diffusion.sampler import ddim_sample
from tracect.model.conditioning import build_condition, make_denoise


@torch.no_grad()
def sample_windows(trainer, items: list[dict], seed: int = 0, steps: int | None = None) -> torch.Tensor:
    """Generate fresh windows (no known frame) for dataset items with the EMA model -> ``(B, K, H, W)``
    (latent windows ``(B, K, C, h, w)`` for a latent model)."""
    cfg = trainer.config
    mask = torch.stack([it["mask"] for it in items])
    shape = tuple(torch.stack([it["image"] for it in items]).shape)
    guidance = cfg.diffusion.guidance
    cond = build_condition(trainer.text, mask, [it["report"] for it in items],
                           torch.stack([it["spacing"] for it in items]),
                           torch.stack([it["position"] for it in items]), trainer.device,
                           flow=torch.stack([it["flow"] for it in items]) if cfg.model.flow_input else None,
                           null=guidance != 1.0, findings=cfg.model.findings,
                           lesion=torch.stack([it["lesion"] for it in items]) if "lesion" in items[0] else None)
    denoise = make_denoise(trainer.ema, cond, cfg.diffusion.train_timesteps, trainer.autocast, guidance)
    gens = [torch.Generator().manual_seed(seed + i) for i in range(len(items))]
    return ddim_sample(denoise, trainer.schedule, shape, gens, steps or cfg.diffusion.sample_steps,
                       device=trainer.device).cpu()


def decoded(trainer, latents: torch.Tensor) -> torch.Tensor:
    """Latent windows ``(B, K, C, h, w)`` -> slices ``(B, K, H, W)`` in the cache's [-1, 1] (through the
    autoencoder named in the cache's ``latent.json``, loaded once)."""
    from tracect.autoencoder.model import decode_all
    from tracect.autoencoder.weights import load_autoencoder
    from tracect.data.grid import hu_to_unit, unit_to_hu

    if getattr(trainer, "_autoencoder", None) is None:
        trainer._autoencoder = load_autoencoder(trainer.latent["autoencoder"], trainer.device)
    ae = trainer._autoencoder
    B, K = latents.shape[:2]
    unit = decode_all(ae.model, (latents.flatten(0, 1) / ae.latent_scale).numpy(), 8, trainer.device)
    hu = unit_to_hu(unit, ae.config.model.hu_window)
    return torch.from_numpy(hu_to_unit(hu, trainer.cache.config.hu_window)).reshape(B, K, *unit.shape[1:])


def validation_items(trainer) -> list[dict]:
    ds = trainer.val_windows
    n = min(trainer.config.train.val_windows, len(ds))
    return [ds[int(i)] for i in np.linspace(0, len(ds) - 1, n).round()]


def save_validation_grid(trainer, path: Path) -> Path:
    """A PNG grid: one row per validation window, its real frames, generated frames and masks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tracect.utils.atomic import atomic_path

    items = validation_items(trainer)
    fake = sample_windows(trainer, items)
    if trainer.latent:  # show slices, not latents: decoded, beside the real slices and the label map
        fake = decoded(trainer, fake)
        items = [{**it, "image": it["pixels"], "mask": it["mask"].argmax(1)} for it in items]
    K = fake.shape[1]
    fig, axes = plt.subplots(len(items), 3 * K, figsize=(1.6 * 3 * K, 1.7 * len(items)), squeeze=False)
    for r, (it, gen) in enumerate(zip(items, fake)):
        for k in range(K):
            for c, (img, kw) in enumerate([(it["image"][k], dict(cmap="gray", vmin=-1, vmax=0.3)),
                                           (gen[k], dict(cmap="gray", vmin=-1, vmax=0.3)),
                                           (it["mask"][k], dict(cmap="tab20", vmin=0, vmax=19,
                                                                interpolation="nearest"))]):
                ax = axes[r, c * K + k]
                ax.imshow(img.numpy(), **kw)
                ax.set_xticks([]), ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"{['real', 'generated', 'mask'][c]} {k}", fontsize=8)
        axes[r, 0].set_ylabel(f"{it['case']}:{it['start']}", fontsize=7)
    fig.suptitle(f"step {trainer.state.step}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return path
