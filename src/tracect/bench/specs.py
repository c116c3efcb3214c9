"""The models the benchmarks compare, and the ways each is sampled: one table for ``bench efficiency``
(time and memory) and ``bench quality`` (what the volumes are worth), so both speak of the same things.

All four are built from presets with the same blocks, widths, conditioning, schedule and sampler:

- ``frame-pair`` (``cpu``): TRACE's frame pair, K = 2;
- ``frame-4`` (``cpu-k4``): windows of four frames (three new slices per network call);
- ``slice`` (``cpu-slice``): one slice at a time, no neighbour (what 2D generators do);
- ``3d`` (``cpu-3d``): the same network with ``spatial_dims=3``, trained on blocks of 32 slices;
- ``frame-pair-latent`` (``cpu-latent``): the frame pair in the latent space of a slice autoencoder
  (256² slices as 8 x 64² latents), judged by ``bench quality --models frame-pair frame-pair-latent``.

Each model lists how it is sampled in each mode, and the modes ``bench quality`` judges it in (TRACE's
sequential chain for the frame models; the 3D model in windows of its training block, the context it
learned). ``bench efficiency`` measures the samplings for time and memory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from tracect.generate.sampling import Sampling


@dataclass(frozen=True)
class ModelSpec:
    """A benchmarked model: its ``preset``, its samplings by mode (at most one per mode), and the modes
    ``bench quality`` judges it in (the first is its default)."""

    preset: str
    samplings: dict[str, Sampling] = field(default_factory=lambda: {"sequential": Sampling()})
    judged: tuple[str, ...] = ("sequential",)

    def sampling(self, mode: str, model_config) -> Sampling:
        """The sampling in ``mode`` for a model of ``model_config``: a 3D model in parallel mode works in
        windows of the block length it was trained on, overlapping by a quarter of it (the context it
        learned; the whole volume at once is its ``sequential`` sampling)."""
        s = self.samplings[mode]
        if model_config.kind == "3d" and s.mode == "parallel" and s.window is None:
            s = dataclasses.replace(s, window=model_config.frames, overlap=max(1, model_config.frames // 4))
        return s


MODELS: dict[str, ModelSpec] = {
    "frame-pair": ModelSpec("cpu", {"sequential": Sampling(), "parallel": Sampling(mode="parallel", chunk=16)}),
    "frame-4": ModelSpec("cpu-k4", {"sequential": Sampling(), "parallel": Sampling(mode="parallel", chunk=8)},
                         judged=("sequential", "parallel")),
    "slice": ModelSpec("cpu-slice"),
    "3d": ModelSpec("cpu-3d", {"sequential": Sampling(), "parallel": Sampling(mode="parallel", chunk=1)},
                    judged=("parallel",)),
    "frame-pair-latent": ModelSpec("cpu-latent"),
}
FRAME_MODELS = ("frame-pair", "frame-4")
LATENT_MODELS = ("frame-pair-latent",)  # frame models on a slice autoencoder's latents
PIXEL_MODELS = ("frame-pair", "frame-4", "slice", "3d")  # same network at 64² pixels: bench quality's default


def compact(sampling: Sampling) -> dict:
    """A sampling as its mode and the settings that differ from the defaults (for tables and records)."""
    default = Sampling().to_json()
    return {"mode": sampling.mode, **{k: v for k, v in sampling.to_json().items() if k != "mode" and v != default[k]}}
