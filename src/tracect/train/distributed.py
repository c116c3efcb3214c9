"""Data-parallel training that does not depend on the number of processes.

A run on ``G`` processes (``torchrun``) takes the same optimizer steps as a run on one: every step
consumes the same ``batch_size * grad_accum`` windows of one global window stream, each window gets the
same random choices, and the loss is normalised over the same groups of windows. Three pieces make
that so:

- :func:`init_from_env` reads the ``torchrun`` environment and joins the process group (NCCL on CUDA,
  Gloo on the CPU); a plain ``python`` or ``tracect`` run stays a single process with no group.
- :class:`StepLayout` spreads one step's global batch over the ranks, and :class:`ShardSampler`
  gives each rank its share of the global window stream.
- :func:`sample_generators` makes one ``torch.Generator`` per window of a step, keyed by the step and
  the window's place in the global batch, so a window's diffusion time, noise and condition dropout do
  not depend on which rank draws them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from itertools import islice
from typing import Iterable, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from tracect.runtime import resolve_device

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_from_env(device: str = "auto") -> DistContext:
    """Join the process group ``torchrun`` describes in the environment, or stay single.

    ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` come from ``torchrun``; ``LOCAL_RANK`` selects the CUDA
    device, so ``device`` may only name the kind (``auto``, ``cuda``, ``cpu``) when there are several
    processes. The backend follows the device: NCCL for CUDA, Gloo for the CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(device=resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if dev.index is not None:
            raise ValueError(f"--device {device}: with torchrun each process takes the GPU of its LOCAL_RANK; "
                             "pass --device cuda or auto (restrict GPUs with CUDA_VISIBLE_DEVICES)")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) "
                             "are visible; start at most that many processes per node")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    elif dev.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(f"distributed training runs on CUDA (NCCL) or the CPU (Gloo), not on {dev.type}")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank, world_size, local_rank, dev)


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class StepLayout:
    """How one optimizer step's global batch of ``batch_size * grad_accum`` windows is spread over ranks.

    In one process a step is ``grad_accum`` micro-batches of ``batch_size`` windows; micro-batch ``j``
    holds the step's windows ``j * batch_size ..``. With ``G`` processes the ``grad_accum`` micro-batches
    are first dealt out whole (``gcd(grad_accum, G)`` groups of ranks, each taking ``grad_accum / gcd``
    consecutive micro-batches), and each micro-batch is then cut into equal parts for the
    ``G / gcd`` ranks of its group. So ``grad_accum = 8`` on 4 GPUs gives each GPU 2 whole micro-batches,
    and ``batch_size = 16, grad_accum = 1`` on 4 GPUs gives each GPU a quarter (4 windows) of the one
    micro-batch. Each rank always does ``batch_size * grad_accum / G`` windows per step.
    """

    batch_size: int
    grad_accum: int
    world_size: int = 1
    rank: int = 0

    def __post_init__(self):
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside a world of {self.world_size}")
        total = self.batch_size * self.grad_accum
        if total % self.world_size:
            raise ValueError(
                f"the global batch train.batch_size x train.grad_accum = {self.batch_size} x {self.grad_accum} "
                f"= {total} windows cannot be split evenly over {self.world_size} processes; choose a global "
                f"batch that is a multiple of {self.world_size} (for example grad_accum a multiple of it)")

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.grad_accum

    @property
    def ranks_per_micro_batch(self) -> int:
        return self.world_size // math.gcd(self.grad_accum, self.world_size)

    @property
    def micro_batches(self) -> int:
        """Micro-batches this rank runs per step."""
        return self.grad_accum // math.gcd(self.grad_accum, self.world_size)

    @property
    def local_batch(self) -> int:
        """Windows in each of this rank's micro-batches."""
        # divides exactly: world / gcd(accum, world) is coprime with accum / gcd, and divides accum * batch
        return self.batch_size // self.ranks_per_micro_batch

    def placement(self, i: int) -> tuple[range, slice]:
        """This rank's micro-batch ``i`` -> (step positions of the whole micro-batch it is part of,
        its own part as a slice of those positions)."""
        c = self.ranks_per_micro_batch
        j = (self.rank // c) * self.micro_batches + i  # global micro-batch
        start = (self.rank % c) * self.local_batch
        return range(j * self.batch_size, (j + 1) * self.batch_size), slice(start, start + self.local_batch)

    def positions(self) -> list[int]:
        """This rank's places in the step's global batch, in the order it runs them."""
        out = []
        for i in range(self.micro_batches):
            whole, part = self.placement(i)
            out += list(whole[part])
        return out


class ShardSampler(Sampler[int]):
    """This rank's share of a global index stream: of each step's ``global_batch`` consecutive indices,
    the ones at :meth:`StepLayout.positions`. The union over ranks of one step is exactly the step of a
    single process reading the same stream."""

    def __init__(self, stream: Iterable[int], layout: StepLayout):
        self.stream, self.layout = stream, layout

    def __iter__(self) -> Iterator[int]:
        it, positions, n = iter(self.stream), self.layout.positions(), self.layout.global_batch
        while True:
            step = list(islice(it, n))
            if len(step) < n:
                return
            for p in positions:
                yield step[p]


def sample_seed(key: int, position: int) -> int:
    """A 64-bit seed for the window at ``position`` of a step whose random key is ``key`` (splitmix64
    of both, so neighbouring positions and keys give unrelated streams)."""
    z = (key + (position + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def sample_generators(key: int, positions: Iterable[int]) -> list[torch.Generator]:
    """One CPU generator per window of a step, seeded from the step's key and the window's position."""
    return [torch.Generator().manual_seed(sample_seed(key, p)) for p in positions]


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over all ranks (a no-op in a single process); the tensor lives on the
    collective's device (CUDA for NCCL)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank, so a decision taken on one clock is the same everywhere."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int32, device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def barrier(device: torch.device) -> None:
    """Wait for every rank (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if device.type == "cuda":
            dist.barrier(device_ids=[device.index])
        else:
            dist.barrier()
