"""Loading a trained denoiser: checkpoint folders of safetensors + JSON, the pickle guard, weight hashes.

Generation needs only this module (and the model), never the trainer. A checkpoint is a folder
(``RUN/checkpoints/step_XXXXXXX``, or a run folder whose ``latest`` names one) holding ``config.json``,
``model.safetensors`` and ``ema.safetensors`` (see :mod:`tracect.train.checkpoint`, which writes them).
An exported model (:func:`export_weights`: what a run is to generation alone) is a folder of
``config.json``, ``data.json`` and ``ema.safetensors``, the EMA weights in float16 by default.

Loading a pickle file (``.pt``, ``.pth``, ``.ckpt``, ...) can run arbitrary code, so it is refused
unless the caller passes ``allow_pickle=True``; even then only a plain state dict is accepted
(``torch.load(weights_only=True)``), with the run's ``config.json`` beside the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from tracect.config import RunConfig
from tracect.model.denoiser import FrameDenoiser

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip container; a bare pickle (protocol 2+)
PICKLE_OPT_IN = "allow_pickle=True (command line: --allow-pickle)"


class CheckpointError(ValueError):
    """A checkpoint that cannot or may not be loaded (message names the file and the reason)."""


def _is_pickle(path: Path) -> bool:
    if path.name.lower().endswith(PICKLE_SUFFIXES):
        return True
    with open(path, "rb") as f:
        return f.read(4).startswith(PICKLE_MAGIC)


def resolve_checkpoint(path: str | Path, allow_pickle: bool = False) -> Path:
    """A run folder (its ``latest``) or a checkpoint folder -> the checkpoint folder.

    A pickle file is refused with :class:`CheckpointError` unless ``allow_pickle``; then the file
    itself is returned (its folder must hold the run's ``config.json``).
    """
    path = Path(path)
    if path.is_file():
        if not _is_pickle(path):
            raise CheckpointError(f"{path.name}: not a checkpoint; tracect checkpoints are folders of "
                                  "safetensors + JSON (a run folder or RUN/checkpoints/step_*)")
        if not allow_pickle:
            raise CheckpointError(f"{path.name}: pickle checkpoints are refused because loading one can run "
                                  "code; tracect checkpoints are safetensors + JSON folders. For a state dict "
                                  f"saved with torch.save by a source you trust, opt in with {PICKLE_OPT_IN}")
        if not (path.parent / "config.json").is_file():
            raise CheckpointError(f"{path.name}: a pickle state dict needs the run's config.json in {path.parent}")
        return path
    if (path / "model.safetensors").is_file():
        return path
    if (path / "ema.safetensors").is_file() and (path / "config.json").is_file():
        return path  # an exported model: EMA weights only
    latest = path / "latest"
    if latest.is_file():
        name = latest.read_text(errors="replace").strip()
        if name != Path(name).name or name in ("", ".", ".."):  # written by save_checkpoint: a folder name
            raise CheckpointError(f"{latest}: '{name[:80]}' is not the name of a folder in {path / 'checkpoints'}")
        ckpt = path / "checkpoints" / name
        if (ckpt / "model.safetensors").is_file():
            return ckpt
    raise CheckpointError(f"{path}: no checkpoint (expected a run folder with 'latest' or a checkpoint folder)")


def checkpoint_hash(ckpt: Path) -> str:
    """sha256 of the EMA weights file (or of a pickle checkpoint file): identifies the weights a
    volume was generated with."""
    ckpt = Path(ckpt)
    h = hashlib.sha256()
    with open(ckpt if ckpt.is_file() else ckpt / "ema.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_weights(path: str | Path, out: str | Path, dtype: torch.dtype = torch.float16, **record) -> Path:
    """The EMA weights of a run or checkpoint, with its ``config.json`` and ``data.json``, as a folder
    that generation loads like a checkpoint (``out``; float16 halves the size at a rounding of about
    1e-3 relative to each weight). ``record`` is added to ``data.json`` under ``"export"`` (how the run
    was made); the training cache's path, which means nothing elsewhere, is left out. -> ``out``."""
    from safetensors.torch import save_file

    from tracect.utils.atomic import atomic_path, write_json

    ckpt = resolve_checkpoint(path)
    if ckpt.is_file():
        raise CheckpointError(f"{ckpt}: export takes a safetensors checkpoint folder")
    weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_file(str(ckpt / "ema.safetensors")).items()}
    step = json.loads((ckpt / "trainer.json").read_text()).get("step") if (ckpt / "trainer.json").is_file() else None
    data = {k: v for k, v in json.loads((ckpt / "data.json").read_text()).items() if k != "cache"}
    data["export"] = {"step": step, "dtype": str(dtype).removeprefix("torch."), **record}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "ema.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp))
    write_json(out / "config.json", json.loads((ckpt / "config.json").read_text()))
    write_json(out / "data.json", data)
    return out


def _why(e: Exception) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def _pickled_state(path: Path, ema: bool) -> dict[str, torch.Tensor]:
    """A state dict from a ``torch.save`` file, read without running code from it."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for anything but tensors and plain containers
        raise CheckpointError(f"{path.name}: not a plain state dict ({_why(e)})") from None
    if isinstance(obj, dict) and not all(torch.is_tensor(v) for v in obj.values()):
        # trainers often save {"model": ..., "ema": ..., "optimizer": ...}
        for key in ("ema", "model", "state_dict") if ema else ("model", "state_dict", "ema"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not (isinstance(obj, dict) and obj and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())):
        raise CheckpointError(f"{path.name}: expected a state dict (parameter name -> tensor), or one under "
                              "'ema', 'model' or 'state_dict'")
    return obj


def load_model(path: str | Path, device: str | torch.device = "cpu", ema: bool = True, allow_pickle: bool = False):
    """Build the denoiser of a checkpoint and load its (EMA) weights -> ``(model, RunConfig, ckpt)``.

    ``ckpt`` is the checkpoint folder, or with ``allow_pickle`` the pickle file that was loaded.
    Every failure is a :class:`CheckpointError` naming the file.
    """
    ckpt = resolve_checkpoint(path, allow_pickle)
    folder = ckpt.parent if ckpt.is_file() else ckpt
    try:
        config = RunConfig.from_json(json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise CheckpointError(f"{folder / 'config.json'}: unusable ({_why(e)})") from None
    if ckpt.is_file():
        weights = _pickled_state(ckpt, ema)
    else:
        file = ckpt / ("ema.safetensors" if ema else "model.safetensors")
        try:
            weights = load_file(str(file))
        except Exception as e:  # safetensors raises its own error type for a corrupt file
            raise CheckpointError(f"{file}: unreadable weights ({_why(e)})") from None
    model = FrameDenoiser(config.model)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:  # missing, unexpected or mis-shaped tensors
        raise CheckpointError(f"{ckpt}: weights do not fit the model of config.json ({_why(e)})") from None
    return model.to(device).eval(), config, ckpt
