"""Chaining windows into volumes of any length (TRACE's overlapping-frame strategy, and a parallel mode).

Notation: a chain has ``Z`` slices; a window has ``K`` frames; consecutive windows overlap by ``o``
frames (``1 <= o < K``), so each window after the first adds ``K - o`` new slices.

- :func:`sequential` (TRACE): a chain's first window is generated fresh; each next window takes the
  ``o`` already generated frames as known frames and generates the rest. Only one window per volume is
  in flight, so memory is constant in ``Z`` (apart from the output) and time grows linearly. Several
  volumes advance **in lockstep**: their current windows form one batch, so one network call moves
  all of them; a volume that finishes leaves, the next one takes its place. Each window draws its
  noise from its own volume's generator, exactly as it would alone.
- :func:`parallel` (beyond the paper): all windows of one volume are denoised together, step by step;
  at every step the clean-slice estimates of frames that several windows share are averaged, and one
  DDIM step (:meth:`Schedule.ddim_step`) is taken on the whole volume.

Both ask ``denoiser_for(chains, starts, known, known_values)`` for the guided ``denoise(x_t, t)`` of a
batch of windows: window ``i`` starts at slice ``starts[i]`` of ``chains[i]``; ``known`` ``(B, K)`` and
``known_values`` ``(B, K, H, W)`` (or None).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch

from tracect.diffusion.sampler import Denoise, cpu_randn, ddim_sample
from tracect.diffusion.schedule import Schedule


def window_starts(Z: int, K: int, overlap: int) -> list[int]:
    """First slice of each window covering ``Z`` slices (the last window is pulled back to end at Z).
    One window covers a volume no longer than it, whatever the overlap."""
    if Z <= K:
        return [0]
    if not 1 <= overlap < K and K > 1:
        raise ValueError(f"overlap must be in 1..K-1 (K={K}), got {overlap}")
    step = K - overlap if K > 1 else 1
    starts = list(range(0, Z - K + 1, step))
    if starts[-1] + K < Z:
        starts.append(Z - K)
    return starts


@dataclass(eq=False)
class Chain:
    """One volume as a chain of windows, and its sampling state.

    labels ``(Z, H, W)`` uint8 model ids and positions ``(Z,)`` (relative slice positions in [0, 1])
    in chain order; spacing ``(3,)`` mm (z, y, x); ``K`` frames per window overlapping by ``overlap``;
    one ``generator`` for every random draw of this volume. ``out`` ``(Z, *frame)`` collects the
    generated frames: ``frame`` is ``(H, W)`` for slices in [-1, 1] (the default, the labels' in-plane
    shape) or ``(C, h, w)`` for latent frames; ``key`` identifies the volume to whoever made the chain;
    ``lesion`` ``(Z, H, W)`` uint8 lesion kind codes in chain order (a model with findings) or None.
    """

    labels: torch.Tensor
    positions: torch.Tensor
    spacing: torch.Tensor
    report: str
    K: int
    overlap: int
    generator: torch.Generator
    key: object = None
    frame: tuple[int, ...] | None = None
    lesion: torch.Tensor | None = None
    out: torch.Tensor = field(init=False, repr=False)
    done: torch.Tensor = field(init=False, repr=False)
    starts: list[int] = field(init=False)
    next_window: int = field(init=False, default=0)

    def __post_init__(self):
        Z = self.labels.shape[0]
        self.frame = tuple(self.frame or self.labels.shape[1:])
        self.out = torch.zeros(Z, *self.frame)
        self.done = torch.zeros(Z, dtype=torch.bool)
        self.starts = window_starts(Z, self.K, self.overlap if self.K > 1 else 0)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(Z, *frame)``: the generated chain's shape."""
        return (self.labels.shape[0], *self.frame)

    @property
    def finished(self) -> bool:
        return self.next_window >= len(self.starts)


DenoiserFor = Callable[[list[Chain], list[int], "torch.Tensor | None", "torch.Tensor | None"], Denoise]


def sequential(chains: Iterable[Chain], denoiser_for: DenoiserFor, schedule: Schedule, steps: int, device,
               batch: int = 1, on_window=None) -> Iterator[Chain]:
    """Generate every chain window by window, ``batch`` chains in lockstep; yields each chain as it
    finishes (its ``out`` complete). ``chains`` is consumed lazily, one as a place frees up, so a long
    cohort never holds more than ``batch`` volumes. All chains need the same ``K``, ``H`` and ``W``.
    ``on_window(chain)`` after each window."""
    pending, active = iter(chains), []
    while True:
        while len(active) < batch and (chain := next(pending, None)) is not None:
            active.append(chain)
        if not active:
            return
        K, frame = active[0].K, active[0].frame
        if any(c.K != K or c.frame != frame for c in active):
            raise ValueError("chains in lockstep need one window shape")
        starts = [c.starts[c.next_window] for c in active]
        known = torch.stack([c.done[s:s + K] for c, s in zip(active, starts)])  # (B, K)
        values = torch.stack([c.out[s:s + K] for c, s in zip(active, starts)]).to(device)  # (B, K, *frame)
        denoise = denoiser_for(active, starts, known.to(device), values)
        x = ddim_sample(denoise, schedule, (len(active), K, *frame), [c.generator for c in active], steps,
                        known=known, known_values=values, device=device).float().cpu()
        for c, s, xc in zip(active, starts, x):
            c.out[s:s + K] = xc
            c.done[s:s + K] = True
            c.next_window += 1
            if on_window is not None:
                on_window(c)
        yield from (c for c in active if c.finished)
        active = [c for c in active if not c.finished]


@torch.no_grad()
def parallel(chain: Chain, denoiser_for: DenoiserFor, schedule: Schedule, steps: int, device, chunk: int = 64,
             on_step=None) -> Chain:
    """Generate ``chain`` with all its windows denoised jointly (estimates fused per step), ``chunk``
    windows per network call; fills and returns ``chain``."""
    Z, frame = chain.shape[0], chain.frame
    K, starts = chain.K, chain.starts
    idx = torch.tensor(starts)[:, None] + torch.arange(K)[None]  # (nW, K) slice of each frame
    count = torch.bincount(idx.flatten(), minlength=Z).float().to(device)  # windows per slice
    count = count.reshape(Z, *([1] * len(frame)))
    grid = schedule.sample_grid(steps)
    x = cpu_randn((1, Z, *frame), [chain.generator], device)[0]  # (Z, *frame)
    for i in range(steps):
        t, s = grid[i].to(device), grid[i + 1].to(device)
        x0_sum = torch.zeros(Z, *frame, device=device)
        for c in range(0, len(starts), chunk):
            sl = slice(c, c + chunk)
            xw = x[idx[sl]]  # (w, K, *frame)
            denoise = denoiser_for([chain] * len(xw), starts[sl], None, None)
            tt = t.expand(len(xw))
            x0w, _ = schedule.split(xw, denoise(xw, tt), tt)
            x0_sum.index_add_(0, idx[sl].flatten().to(device), schedule.clip(x0w).flatten(0, 1))
        x = schedule.ddim_step(x, x0_sum / count, t, s)
        if on_step is not None:
            on_step(i)
    chain.out = schedule.clip(x).cpu()
    chain.done[:] = True
    chain.next_window = len(starts)
    return chain
