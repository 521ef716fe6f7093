"""torchrun support: process-group set-up from the environment, and who may write."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistributedContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistributedContext:
    """Join the process group torchrun describes (gloo on CPU, nccl on GPUs); a no-op for one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    context = DistributedContext(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world_size)
    backend = "nccl" if device != "cpu" and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(context.local_rank)
    dist.init_process_group(backend=backend)
    return context


def resolve_device(device: str, context: DistributedContext) -> torch.device:
    from mri.cli import torch_device

    if context.enabled and torch_device(device).type == "cuda":
        return torch.device("cuda", context.local_rank)
    return torch_device(device)


def broadcast_object(value, context: DistributedContext):
    """Rank 0's ``value`` on every rank (e.g. the run folder rank 0 created)."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def cleanup(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
