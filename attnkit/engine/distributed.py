"""Several processes under torchrun: DDP (replicated weights) or FSDP2 (`fully_shard`, sharded weights).

Every rank draws the same global batch (batch_size × world rows, one shared generator) and trains on its
own slice of it, so N processes at --batch-size B follow the loss curve of one process at N·B.
Checkpoints are always the full, unsharded weights in the usual safetensors (gathered to rank 0), so
`attnkit sample` loads them in one process and `--resume` works with or without --fsdp.
"""
from __future__ import annotations

import contextlib
import datetime
import gc
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
import torch.nn as nn

# Every collective gives up after this long, so a rank that died or hung fails the others instead of
# leaving them waiting forever (torch's default is 30 min for gloo, 10 for NCCL).
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=5)


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@contextlib.contextmanager
def process_group(device_name: str) -> Iterator[World]:
    """The World from torchrun's environment; joins (and leaves) the process group if nobody else did."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        yield World()
        return
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    owns = not dist.is_initialized()
    if owns:
        use_cuda = device_name != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
    try:
        yield world
        if owns:
            dist.barrier()  # no rank tears its connections down while a peer still has a collective in flight
    finally:
        if owns:
            # The DDP/FSDP wrappers hold the group; free them (cycles too) now, not in interpreter teardown,
            # where gloo's worker threads abort the process ("terminate called without an active exception").
            gc.collect()
            dist.destroy_process_group()


def shard_batch(batch: dict[str, torch.Tensor], world: World, per_rank: int) -> dict[str, torch.Tensor]:
    """This rank's rows of a global batch (tensors whose first dim is the global batch size)."""
    if world.size == 1:
        return batch
    lo, hi = world.rank * per_rank, (world.rank + 1) * per_rank
    return {k: v[lo:hi] if v.dim() and v.shape[0] == per_rank * world.size else v for k, v in batch.items()}


def wrap(model: nn.Module, world: World, *, fsdp: bool, compile: bool, device: torch.device) -> nn.Module:
    """The module the training step calls: compiled, then DDP or FSDP2 across processes.

    FSDP2 shards every block of each nn.ModuleList (the transformer layers), then the root (embeddings,
    head, tied weights) in place: `model` itself becomes the sharded module.
    """
    if fsdp and world.size > 1:
        from torch.distributed.fsdp import fully_shard

        for module in list(model.modules()):
            if isinstance(module, nn.ModuleList):
                for block in module:
                    fully_shard(block)
        fully_shard(model)
        return torch.compile(model) if compile else model
    train_model = torch.compile(model) if compile else model
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(train_model, device_ids=[device.index] if device.type == "cuda" else None)
    return train_model


def grad_sync(train_model: nn.Module, world: World, fsdp: bool, last_micro: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of a step."""
    if world.size == 1 or last_micro:
        if fsdp and world.size > 1:
            train_model.set_requires_gradient_sync(True)
        return contextlib.nullcontext()
    if fsdp:
        train_model.set_requires_gradient_sync(False)
        return contextlib.nullcontext()
    return train_model.no_sync()


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer, fsdp: bool) -> tuple[dict, dict]:
    """(model state dict, optimizer state dict), unsharded; a collective under FSDP (every rank calls it)."""
    if not fsdp:
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=opts), get_optimizer_state_dict(model, optimizer, options=opts)


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, fsdp: bool) -> None:
    if not fsdp:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def all_gather(obj: Any, world: World) -> list[Any]:
    if world.size == 1:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """True on every rank if it is true on one (so all ranks stop at the same step)."""
    if world.size == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)  # NCCL reduces device tensors only
    dist.all_reduce(t)
    return bool(t.item())


def mean(value: torch.Tensor, world: World) -> torch.Tensor:
    if world.size > 1:
        dist.all_reduce(value)
        value /= world.size
    return value


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()
