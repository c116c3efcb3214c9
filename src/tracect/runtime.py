"""Where and in what precision the networks run: resolved once, used by training and generation alike.

- :func:`resolve_device`: ``"auto"`` -> CUDA if present, else Apple's MPS, else the CPU;
- :func:`autocast_factory`: a context-manager factory for bf16 autocast where asked and supported
  (``"auto"``: on CUDA GPUs with bf16), or ``None`` for float32 (the CPU's default).
"""

from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def autocast_factory(device: torch.device, precision: str):
    """A context-manager factory: bf16 autocast where asked and supported, else ``None`` (float32)."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda"
                                       and torch.cuda.is_bf16_supported())
    if not use_bf16:
        return None
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def autocast_context(autocast) -> contextlib.AbstractContextManager:
    """The context of an :func:`autocast_factory` result (``None``: a no-op)."""
    return autocast() if autocast is not None else contextlib.nullcontext()
