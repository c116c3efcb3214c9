"""Outputs a person can look at: NIfTI, a DICOM series, a montage with reformats, a fly-through GIF,
and a JSON sidecar that records everything needed to reproduce the volume.

For ``OUT.nii.gz`` the siblings are ``OUT.json`` (sidecar), ``OUT.png`` (montage), ``OUT.gif``
(fly-through) and ``OUT_dicom/`` (with ``--format dicom``). Every file is written atomically and nothing
existing is replaced unless ``overwrite``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tracect.io.dicom import write_dicom_series
from tracect.io.readers import write_volume
from tracect.io.volume import Volume
from tracect.utils.atomic import atomic_path, write_json

DISPLAY_WINDOW = (-160.0, 240.0)  # HU: a soft-tissue window (level 40, width 400)


def stem_of(path: Path) -> Path:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path.with_name(path.stem)


def output_paths(out: Path, formats: tuple[str, ...] = ("nifti",), pictures: bool = True) -> dict[str, Path]:
    stem = stem_of(Path(out))
    paths = {"nifti": Path(out), "sidecar": stem.with_name(stem.name + ".json")}
    if pictures:
        paths["montage"] = stem.with_name(stem.name + ".png")
        paths["flythrough"] = stem.with_name(stem.name + ".gif")
    if "dicom" in formats:
        paths["dicom"] = stem.with_name(stem.name + "_dicom")
    if "grid" in formats:  # the volume as generated, before it is resampled onto the mask's grid
        paths["grid"] = stem.with_name(stem.name + ".grid.nii.gz")
    return paths


def check_writable(paths: dict[str, Path], overwrite: bool) -> None:
    """Fail before any work if a target exists (without ``overwrite``) or the folder is not writable."""
    for p in paths.values():
        if p.exists() and not overwrite:
            raise FileExistsError(f"{p} exists (use --overwrite to replace it)")
        parent = p.parent
        parent.mkdir(parents=True, exist_ok=True)
        if not os.access(parent, os.W_OK):
            raise PermissionError(f"cannot write to {parent}")


def _window(hu: np.ndarray, window=DISPLAY_WINDOW) -> np.ndarray:
    lo, hi = window
    return np.clip((hu.astype(np.float32) - lo) / (hi - lo), 0, 1)


def save_montage(ct: Volume, path: Path, title: str = "", n_axial: int = 12) -> Path:
    """Axial slices, a coronal and a sagittal reformat (aspect from spacing) of a HU volume."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    can = ct.canonical()
    vol = _window(can.array)  # (Z, Y, X)
    dz, dy, dx = can.spacing
    Z, Y, X = vol.shape
    zs = np.linspace(0, Z - 1, min(n_axial, Z)).round().astype(int)
    cols = 6
    rows = -(-len(zs) // cols)
    fig = plt.figure(figsize=(2.0 * cols + 6, 2.1 * max(rows, 3)))
    gs = fig.add_gridspec(max(rows, 3), cols + 3)
    for i, z in enumerate(zs):
        ax = fig.add_subplot(gs[i // cols, i % cols])
        ax.imshow(vol[z], cmap="gray", vmin=0, vmax=1, aspect=dy / dx)
        ax.set_title(f"axial {z}", fontsize=7)
        ax.axis("off")
    cor = fig.add_subplot(gs[:, cols:cols + 2 if X >= Y else cols + 1])
    cor.imshow(vol[:, Y // 2, :], cmap="gray", vmin=0, vmax=1, aspect=dz / dx)
    cor.set_title("coronal (mid)", fontsize=8)
    cor.axis("off")
    sag = fig.add_subplot(gs[:, cols + 2:] if X >= Y else gs[:, cols + 1:])
    sag.imshow(vol[:, :, X // 2], cmap="gray", vmin=0, vmax=1, aspect=dz / dy)
    sag.set_title("sagittal (mid)", fontsize=8)
    sag.axis("off")
    if title:
        fig.suptitle(title, fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return path


def save_flythrough(ct: Volume, path: Path, fps: int = 12) -> Path:
    """Animated GIF of the axial slices, head to feet, soft-tissue window."""
    import imageio.v2 as imageio

    frames = (_window(ct.canonical().array) * 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        imageio.mimsave(tmp, list(frames), format="GIF", duration=1.0 / fps, loop=0)
    return path


def save_dicom(ct: Volume, folder: Path, overwrite: bool, description: str = "tracect") -> Path:
    """A DICOM CT series marked as synthetic, written into a temporary folder then renamed."""
    folder = Path(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        write_dicom_series(ct, tmp, series_description=description, synthetic=True)
        if folder.exists():
            if not overwrite:
                raise FileExistsError(f"{folder} exists (use --overwrite to replace it)")
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def write_outputs(result, out: str | Path, formats: tuple[str, ...] = ("nifti",), pictures: bool = True,
                  overwrite: bool = False) -> dict[str, Path]:
    """Write a :class:`~tracect.generate.pipeline.GeneratedVolume` and its companions; ``formats``:
    ``nifti`` always, ``dicom`` a synthetic DICOM series too, ``grid`` the volume on its generation grid
    as well (int16 HU, canonical layout: what the model made, which ``tracect evaluate`` scores without
    resampling it twice)."""
    paths = output_paths(Path(out), formats, pictures)
    check_writable(paths, overwrite)
    write_volume(result.ct, paths["nifti"], overwrite=overwrite)
    if "grid" in paths:
        hu = np.clip(np.rint(result.canonical.array), -1024, 3071).astype(np.int16)
        write_volume(result.canonical.with_array(hu), paths["grid"], overwrite=overwrite)
    if "dicom" in paths:
        save_dicom(result.ct, paths["dicom"], overwrite)
    if pictures:
        title = f"tracect (synthetic) seed {result.info['seed']}: {result.info['report'][:100]}"
        save_montage(result.ct, paths["montage"], title)
        save_flythrough(result.ct, paths["flythrough"])
    write_json(paths["sidecar"], {**result.info, "files": {k: str(v) for k, v in paths.items()}},
               overwrite=overwrite)
    return paths
