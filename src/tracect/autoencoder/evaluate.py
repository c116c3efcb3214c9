"""Judging the autoencoder on a case it never saw: reconstruction figures at one or more slice sizes,
pictures, and the radially averaged power spectra of real and reconstructed slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _volumes(data: str | Path, case: str | None) -> list[tuple[str, Path]]:
    from tracect.data.layout import load_dataset

    data = Path(data)
    if data.is_dir() and (data / "images").is_dir():
        cases = [(c.case_id, c.image) for c in load_dataset(data).cases if c.image is not None]
        cases = [c for c in cases if case is None or c[0] == case]
        if not cases:
            raise ValueError(f"{data}: no case {case!r}")
        return cases
    return [(data.name.split(".")[0], data)]


def evaluate_autoencoder(ae, data, case: str | None, sizes, out: Path) -> dict:
    """Figures of :func:`tracect.autoencoder.train.reconstruction_figures` over every slice with body, per
    case and size (default: the autoencoder's own), written to ``out/autoencoder_eval.json`` with a
    picture and a spectrum plot per case and size."""
    from tracect.autoencoder.data import volume_on_grid
    from tracect.autoencoder.model import decode_all, encode_all
    from tracect.autoencoder.train import figures_of, save_pictures
    from tracect.evaluate.metrics import radial_power_spectrum
    from tracect.utils.atomic import write_json

    cfg = ae.config.model
    device = next(ae.model.parameters()).device
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"autoencoder": str(ae.checkpoint), "autoencoder_sha256": ae.sha256, "hu_window": list(cfg.hu_window),
              "held_out_in_training": ae.info.get("data", {}).get("held_out"), "cases": {}}
    for case_id, path in _volumes(data, case):
        for size in sizes or [cfg.image_size]:
            if size % cfg.factor:
                raise ValueError(f"size {size} is not a multiple of the autoencoder's factor {cfg.factor}")
            unit, body = volume_on_grid(path, size, cfg.hu_window)
            keep = body.reshape(len(body), -1).mean(1) >= 0.05  # slices that show the body
            unit, body = unit[keep].astype(np.float32), body[keep]
            rec = decode_all(ae.model, encode_all(ae.model, unit, 8, device), 8, device)  # once: figures, spectra
            figs = figures_of(unit, rec, body, cfg.hu_window)
            # the yardstick: no learning, the same number of values as the latent (the slice resized to
            # it and back), scored by the same figures
            keep_px = int(round(size * (cfg.latent_channels / cfg.factor ** 2) ** 0.5))
            figs["yardstick_resized"] = {"size": keep_px, **resize_figures(unit, body, keep_px, cfg.hu_window)}
            result["cases"].setdefault(case_id, {})[str(size)] = figs
            save_pictures(ae.model, unit[np.linspace(0, len(unit) - 1, 3).round().astype(int)], cfg.hu_window,
                          out / f"{case_id}_{size}.png", device=device)
            _spectra_plot(radial_power_spectrum(unit), radial_power_spectrum(rec),
                          out / f"{case_id}_{size}_spectrum.png", f"{case_id}, {size}x{size}")
    write_json(out / "autoencoder_eval.json", result)
    return result


def resize_figures(unit: np.ndarray, body: np.ndarray, size: int, window) -> dict:
    """The figures of :func:`tracect.autoencoder.train.reconstruction_figures` for slices ``(N, S, S)``
    resized to ``size``² (antialiased bilinear) and back (bicubic): what keeping that many values per
    slice gives without any learning."""
    import torch
    import torch.nn.functional as F

    from tracect.autoencoder.train import figures_of

    x = torch.from_numpy(np.asarray(unit, np.float32))[:, None]
    small = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    back = F.interpolate(small, size=x.shape[-2:], mode="bicubic", align_corners=False).clamp(-1, 1)
    return figures_of(unit, back[:, 0].numpy(), body, window)


def _spectra_plot(real, rec, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogy(real[0], real[1], label="real")
    ax.semilogy(rec[0], rec[1], label="reconstruction")
    ax.axvspan(0.5 * 2 / 3, 0.5, color="0.9", label="top third of frequencies")
    ax.set_xlabel("spatial frequency (cycles / pixel)")
    ax.set_ylabel("power")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
