"""Checkpoints: safetensors weights + JSON, written atomically; pickle only on explicit request.

A run folder::

    RUN/config.json                       the resolved RunConfig
    RUN/latest                            name of the newest complete checkpoint (written last)
    RUN/checkpoints/step_0000250/
        config.json  model.safetensors  ema.safetensors  optimizer.safetensors  rng.safetensors
        trainer.json                      step, windows consumed, optimizer hyper-parameters, metadata
        data.json                         prepare configuration and vocabulary of the training cache

A checkpoint folder is assembled under a temporary name and renamed into place, then ``latest`` is
replaced; a process killed at any moment leaves the previous checkpoint intact.

Loading a pickle file (``.pt``, ``.pth``, ``.ckpt``, ...) can run arbitrary code, so it is refused
unless the caller passes ``allow_pickle=True``; even then only a plain state dict is accepted
(``torch.load(weights_only=True)``), with the run's ``config.json`` beside the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tracect.config import RunConfig
from tracect.utils.atomic import write_json, write_text

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip container; a bare pickle (protocol 2+)
PICKLE_OPT_IN = "allow_pickle=True (command line: --allow-pickle)"


class CheckpointError(ValueError):
    """A checkpoint that cannot or may not be loaded (message names the file and the reason)."""


def _state_to_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into safetensors-able tensors and JSON-able rest."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"state.{idx}.{key}"] = val.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], rest: dict) -> None:
    state: dict[int, dict] = {}
    for name, val in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = val
    for name, val in rest.get("scalars", {}).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = val
    opt.load_state_dict({"state": state, "param_groups": rest["param_groups"]})


def save_checkpoint(run_dir: Path, step: int, config: RunConfig, model: torch.nn.Module,
                    ema: torch.nn.Module, optimizer: torch.optim.Optimizer, rng: dict[str, torch.Tensor],
                    trainer: dict, keep: int = 2, extra: dict[str, dict] | None = None) -> Path:
    """Write ``RUN/checkpoints/step_XXXXXXX`` atomically and point ``RUN/latest`` at it.

    ``extra`` adds JSON files (name -> content), e.g. ``data.json`` with the prepare configuration and
    vocabulary the model was trained on, so a checkpoint folder alone is enough to generate.
    """
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=ckpt_root))
    try:
        save_file(_state_to_cpu(model.state_dict()), str(tmp / "model.safetensors"))
        save_file(_state_to_cpu(ema.state_dict()), str(tmp / "ema.safetensors"))
        opt_tensors, opt_rest = optimizer_to_tensors(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        save_file({k: v.cpu().contiguous() for k, v in rng.items()}, str(tmp / "rng.safetensors"))
        write_json(tmp / "config.json", config.to_json())
        write_json(tmp / "trainer.json", {**trainer, "step": step, "optimizer": opt_rest})
        for filename, content in (extra or {}).items():
            write_json(tmp / filename, content)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        final = ckpt_root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    write_text(Path(run_dir) / "latest", name + "\n")
    done = sorted(p for p in ckpt_root.glob("step_*") if p.is_dir())
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


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
    from tracect.model.denoiser import FrameDenoiser

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
