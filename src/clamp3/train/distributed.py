"""Process-group setup from torchrun's environment and the collectives the losses need.

Launch with ``torchrun --nproc_per_node=N [--nnodes ... --rdzv_endpoint ...] -m clamp3.cli.main
train CONFIG.json``. torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; without them the run is a single process and every collective here is a no-op.
Backend: ``nccl`` on GPUs, ``gloo`` on CPUs.

Sharding: every rank computes the same global batch order (a seeded permutation) and takes
its own contiguous slice of each global batch, so the global batch, not the per-rank one,
is what the configuration fixes, and the result does not depend on the number of processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the run: ``rank`` of ``world_size``, ``device`` it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` = this process's GPU when CUDA is available, else the CPU
    (:func:`clamp3.utils.device.resolve_device`, the rule of every command)."""
    from clamp3.utils.device import resolve_device

    return torch.device(resolve_device(preference, local_rank))


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the process group described by torchrun's environment (if any)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum over ranks of a tensor without gradient (a copy; the input is left alone)."""
    value = value.detach().clone()
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def all_gather_objects(value: object) -> list[object]:
    """Every rank's ``value`` (picklable), in rank order; ``[value]`` when not distributed."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [value]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast_object(value: object) -> object:
    """Rank 0's ``value`` on every rank (the others pass anything, e.g. None)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(global_indices: list[T], rank: int, world_size: int) -> list[T]:
    """This rank's contiguous slice of a global batch or any list (sizes differ by at most one)."""
    n = len(global_indices)
    start = rank * n // world_size
    stop = (rank + 1) * n // world_size
    return global_indices[start:stop]


def _gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """All ranks' (n_r, ...) tensors concatenated in rank order, and the list of n_r."""
    world = dist.get_world_size()
    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    longest = max(sizes)
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    pieces = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(pieces, padded.contiguous())
    return torch.cat([p[:n] for p, n in zip(pieces, sizes)]), sizes


class _GatherWithGrad(torch.autograd.Function):
    """Concatenate every rank's rows; the backward hands each rank the gradient of its rows,
    summed over ranks (each rank's loss depends on every rank's rows)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        gathered, sizes = _gather_rows(x)
        rank = dist.get_rank()
        ctx.span = (sum(sizes[:rank]), sum(sizes[: rank + 1]))
        return gathered

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start, stop = ctx.span
        return grad[start:stop]


def gather_features(x: torch.Tensor) -> torch.Tensor:
    """(n_local, D) -> (n_global, D) in rank order, differentiable (open_clip's
    ``gather_with_grad=True``, as the official loss).

    Why the gradients come out right: every rank computes the same global loss L. The backward
    gives rank r the rank-summed gradient of its rows, W * dL/dx_r; DDP then averages parameter
    gradients over the W ranks, which leaves exactly dL/dtheta of one process over the global
    batch. Identity when not distributed.
    """
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return x
    if not x.requires_grad:
        return _gather_rows(x)[0]
    return _GatherWithGrad.apply(x)
