"""Pictures of a label map over its CT: axial slices and the mid coronal and sagittal reformats, for
a person to judge labels at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tracect.io.volume import Volume
from tracect.labels.vocabulary import Vocabulary
from tracect.utils.atomic import atomic_path

WINDOW = (-1000.0, 1000.0)  # HU shown: lung, fat, soft tissue and bone all visible


def save_overlay(ct: Volume, labels: Volume, vocabulary: Vocabulary, path: str | Path, title: str = "",
                 n_axial: int = 6, alpha: float = 0.45) -> Path:
    """Write ``path`` (PNG): ``n_axial`` axial slices, a coronal and a sagittal reformat of ``ct`` (HU)
    with ``labels`` (ids of ``vocabulary``, same grid) coloured over it and a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    can, lab = ct.canonical(), labels.canonical().array
    hu = np.clip((can.array.astype(np.float32) - WINDOW[0]) / (WINDOW[1] - WINDOW[0]), 0, 1)
    dz, dy, dx = can.spacing
    Z, Y, X = hu.shape
    ids = vocabulary.ids
    colours = plt.get_cmap("tab10")(np.arange(10))[:, :3]
    lut = np.zeros((max(ids, default=0) + 1, 3))
    for k, i in enumerate(ids):
        lut[i] = colours[k % 10]

    def blend(gray: np.ndarray, lab2d: np.ndarray) -> np.ndarray:
        rgb = np.repeat(gray[..., None], 3, axis=-1)
        on = lab2d > 0
        rgb[on] = (1 - alpha) * rgb[on] + alpha * lut[lab2d[on]]
        return rgb

    body_z = np.flatnonzero(lab.reshape(Z, -1).any(1))
    lo, hi = (body_z[0], body_z[-1]) if len(body_z) else (0, Z - 1)
    zs = np.linspace(lo, hi, min(n_axial, Z) + 2)[1:-1].round().astype(int)
    fig, axes = plt.subplots(2, len(zs) // 2 + 2 if len(zs) > 1 else 3, figsize=(3.0 * (len(zs) // 2 + 2), 6.6))
    axes = axes.ravel()
    for ax, z in zip(axes, zs):
        ax.imshow(blend(hu[z], lab[z]), aspect=dy / dx)
        ax.set_title(f"axial {z}", fontsize=8)
    # reformats through the body's centre
    cy, cx = (int(np.mean(np.nonzero(lab.any(0))[k])) if lab.any() else s // 2 for k, s in ((0, Y), (1, X)))
    rest = axes[len(zs):]
    rest[0].imshow(blend(hu[:, cy, :], lab[:, cy, :]), aspect=dz / dx)
    rest[0].set_title(f"coronal {cy}", fontsize=8)
    if len(rest) > 1:
        rest[1].imshow(blend(hu[:, :, cx], lab[:, :, cx]), aspect=dz / dy)
        rest[1].set_title(f"sagittal {cx}", fontsize=8)
    for ax in axes:
        ax.axis("off")
    present = set(np.unique(lab).tolist())
    handles = [Patch(color=lut[i], label=vocabulary.labels[i]) for i in ids if i in present]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return path
