"""Distributed data parallel (DDP) plumbing for ``torchrun``: process group, samplers, reductions.

``torchrun --nproc_per_node N -m aubench train ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; :func:`setup` then joins the process group with ``nccl`` on CUDA and ``gloo`` on
CPU. A plain run (no such variables) is world size 1 and every helper here is a no-op.

Sampling (:class:`ShardSampler`): training shuffles with a permutation seeded by (seed, epoch),
pads it by repeating its head to a multiple of the world size (so every rank runs the same number
of steps, as ``DistributedSampler`` does), and gives rank r every world-th index from r.
Evaluation neither shuffles nor pads, so each sample is scored exactly once; per-rank sums are
added with :func:`all_reduce_sum`.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

#: How long ranks wait for each other before failing (a crashed peer must not hang the others).
TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class DistInfo:
    """This process's place: ``rank`` of ``world`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints, metrics and progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def from_environment() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment variables (defaults: 0, 1, 0)."""
    return DistInfo(
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` that exists on this machine, else ``ValueError``
    naming it and what does exist. Checked before any checkpoint is read, so a device error is
    never mistaken for a corrupt file."""
    text = str(device)
    try:
        target = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"device {text!r} is not a device: use cpu, cuda or cuda:N") from None
    if target.type == "cpu":
        if target.index not in (None, 0):
            raise ValueError(f"device {text!r}: there is one CPU device; use cpu")
        return target
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {text!r}: CUDA is not available here (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda or 'none'}); use cpu"
            )
        count = torch.cuda.device_count()
        if target.index is not None and target.index >= count:
            raise ValueError(
                f"device {text!r}: this machine has {count} CUDA device(s), cuda:0 … "
                f"cuda:{count - 1}"
            )
        return target
    raise ValueError(f"device {text!r}: aubench runs on cpu or cuda, not {target.type}")


def setup(device: str | None = None) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; pick this process's device.

    ``device`` None picks ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; any other
    value must exist here (:func:`check_device`). The backend is ``nccl`` for CUDA devices and
    ``gloo`` otherwise.
    """
    info = from_environment()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    target = check_device(device)
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", info.local_rank)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if info.distributed and not dist.is_initialized():
        backend = "nccl" if target.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT)
    return info, target


def teardown() -> None:
    """Leave the process group (idempotent)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op in a single process) and return it."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(obj: object) -> list[object]:
    """Every rank's ``obj`` in rank order (``[obj]`` in a single process)."""
    if not active():
        return [obj]
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank ``src``'s ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def sync_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward pass, so after the last training step each
    rank's statistics hold one local update; evaluation and checkpoints need rank 0's."""
    if not active():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def max_divergence(module: torch.nn.Module) -> float:
    """Largest absolute difference between this rank's parameters and buffers and rank 0's
    (0.0 when the ranks are in sync, or in a single process)."""
    if not active():
        return 0.0
    tensors = [t.detach().float().flatten() for t in module.state_dict().values()]
    flat = torch.cat(tensors) if tensors else torch.zeros(0)
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    gap = (flat - reference).abs().max() if flat.numel() else flat.new_zeros(())
    dist.all_reduce(gap, op=dist.ReduceOp.MAX)
    return float(gap)


class ShardSampler(Sampler[int]):
    """Indices of ``size`` items for rank ``rank`` of ``world`` (module doc).

    Args:
        size: number of items.
        shuffle: permute with a generator seeded by (seed, epoch) (training) or keep the order.
        pad: repeat leading indices so that every rank gets ``ceil(size / world)`` (training);
            without it ranks get ``size // world`` or one more and no index repeats (evaluation).
        seed, rank, world: as named.
        start: skip this many of this rank's indices (a resumed epoch; reset by
            :meth:`set_epoch`).
    """

    def __init__(
        self,
        size: int,
        *,
        shuffle: bool,
        pad: bool,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world size {world}")
        self.size, self.shuffle, self.pad = size, shuffle, pad
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Use epoch ``epoch``'s order from this rank's ``start``-th index on."""
        self.epoch, self.start = epoch, start

    def indices(self) -> list[int]:
        """This rank's full index list for the current epoch (``start`` not applied)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        if self.pad and self.size % self.world:
            extra = self.world - self.size % self.world
            order += (order * (extra // max(self.size, 1) + 1))[:extra]
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start :])

    def __len__(self) -> int:
        if self.pad:
            total = -(-self.size // self.world)
        else:
            total = len(range(self.rank, self.size, self.world))
        return max(total - self.start, 0)
