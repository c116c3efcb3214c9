"""Training-time changes to what the network is shown, not to what it must predict."""

from __future__ import annotations

import torch


def jitter_known(values: torch.Tensor, mask: torch.Tensor, gens: list[torch.Generator], std: float,
                 p: float, n_labels: int) -> torch.Tensor:
    """Known-frame values ``(b, K, H, W)`` in [-1, 1] with, in a share ``p`` of the windows, each label's
    pixels (model-vocabulary ids ``mask`` ``(b, K, H, W)``, below ``n_labels``) shifted by an offset of
    its own, normal with std ``std`` (in the units of ``values``); label 0, the air outside the body, is
    left alone; clipped to [-1, 1].

    Why: at inference the known frame is the slice the chain generated last, and can be wrong where the
    mask changes (a spleen drawn dark beside the lung base). A model shown only real known frames copies
    such an error down the chain; shown known frames whose organs are off, it learns to draw each organ
    at the density its mask and report say. Each window draws from its own generator (one ``torch.rand``
    then ``n_labels`` ``torch.randn``), after its noise.
    """
    offsets = torch.zeros(len(gens), n_labels)
    for i, g in enumerate(gens):
        on = torch.rand(1, generator=g) < p
        draw = torch.randn(n_labels, generator=g) * std
        if on:
            offsets[i, 1:] = draw[1:]
    shift = torch.gather(offsets, 1, mask.reshape(len(gens), -1)).reshape(mask.shape)  # (b, K, H, W)
    return (values + shift.to(values.dtype)).clamp(-1.0, 1.0)
