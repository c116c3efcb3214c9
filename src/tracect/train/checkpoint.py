"""Writing checkpoints: safetensors weights + JSON, written atomically (loading is
:mod:`tracect.model.weights`, so that generation does not depend on training).

A run folder::

    RUN/config.json                       the resolved RunConfig
    RUN/latest                            name of the newest complete checkpoint (written last)
    RUN/checkpoints/step_0000250/
        config.json  model.safetensors  ema.safetensors  optimizer.safetensors  rng.safetensors
        trainer.json                      step, windows consumed, optimizer hyper-parameters, metadata
        data.json                         prepare configuration and vocabulary of the training cache

A checkpoint folder is assembled under a temporary name and renamed into place, then ``latest`` is
replaced; a process killed at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from tracect.config import RunConfig
from tracect.utils.atomic import write_json, write_text


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


