"""How a volume is sampled: one settings object, validated once, passed from the command line through
batch generation to the strategies, and written whole into each volume's sidecar.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

MODES = ("sequential", "parallel")
DEFAULT_WARMUP = 16  # burn-in slices in sequential mode (a chain's memory of its start lasts ~10)


@dataclass(frozen=True)
class Sampling:
    """Sampler settings of one generation.

    - ``steps``: DDIM steps per window (``None``: the model's ``diffusion.sample_steps``);
    - ``guidance``: classifier-free guidance weight on the report (``None``: the model's; 1: off);
    - ``lesion_guidance``: the guidance weight inside the lesion map's pixels (a model with findings;
      ``None``: the model's ``diffusion.lesion_guidance``, and where that is None ``guidance``). The map
      itself draws the lesion; guidance 3 on top of it overshot the lesions' density by hundreds of HU
      (docs/benchmarks.md);
    - ``mode``: ``sequential`` (TRACE: each window continues from the last generated slices) or
      ``parallel`` (all windows denoised together, overlapping estimates fused at every step);
    - ``overlap``: frames shared by consecutive windows (1..K-1);
    - ``warmup``: sequential mode's burn-in slices, run through the mask's top slices mirrored and
      dropped (0: start from noise, as TRACE does);
    - ``chunk``: parallel mode's windows per network call (memory bound; about the same time);
    - ``window``: a 3D model's slices per window (``None``: the whole volume in one window).
    """

    steps: int | None = None
    guidance: float | None = None
    lesion_guidance: float | None = None
    mode: str = "sequential"
    overlap: int = 1
    warmup: int = DEFAULT_WARMUP
    chunk: int = 16
    window: int | None = None

    def __post_init__(self):
        def need(ok: bool, name: str, what: str):
            if not ok:
                raise ValueError(f"sampling.{name} must be {what}, got {getattr(self, name)!r}")

        need(self.mode in MODES, "mode", f"one of {MODES}")
        need(self.steps is None or (isinstance(self.steps, int) and self.steps >= 1), "steps", "an integer >= 1")
        need(self.guidance is None or self.guidance >= 0, "guidance", ">= 0")
        need(self.lesion_guidance is None or self.lesion_guidance >= 0, "lesion_guidance", ">= 0")
        need(isinstance(self.overlap, int) and self.overlap >= 1, "overlap", "an integer >= 1")
        need(isinstance(self.warmup, int) and self.warmup >= 0, "warmup", "an integer >= 0")
        need(isinstance(self.chunk, int) and self.chunk >= 1, "chunk", "an integer >= 1")
        need(self.window is None or (isinstance(self.window, int) and self.window >= 1), "window", "an integer >= 1")

    def replace(self, **changes) -> "Sampling":
        """A copy with some settings changed; a change to ``None`` keeps the current value (so callers
        can pass optional command-line values straight through)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def resolved(self, diffusion) -> "Sampling":
        """Defaults taken from the model's :class:`~tracect.config.DiffusionConfig`."""
        out = dataclasses.replace(self, steps=self.steps or diffusion.sample_steps,
                                  guidance=diffusion.guidance if self.guidance is None else self.guidance,
                                  lesion_guidance=(diffusion.lesion_guidance if self.lesion_guidance is None
                                                   else self.lesion_guidance))
        if out.steps > diffusion.train_timesteps:
            raise ValueError(f"sampling.steps {out.steps} exceeds the model's {diffusion.train_timesteps} timesteps")
        return out

    @property
    def guided(self) -> bool:
        """Whether the empty report's prediction is needed anywhere."""
        return (self.guidance is not None and self.guidance != 1.0) or \
            (self.lesion_guidance is not None and self.lesion_guidance != 1.0)

    def to_json(self) -> dict:
        return asdict(self)
