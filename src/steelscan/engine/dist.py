"""torchrun / DistributedDataParallel helpers: rank, start and stop, agreeing across ranks, weight digests."""

from __future__ import annotations

import hashlib
import os

import torch
import torch.distributed as dist
import torch.nn as nn


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) in a plain process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def any_rank(flag: bool, world: int) -> bool:
    """True when `flag` is true on any rank: every rank must stop at the same step or DDP deadlocks."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def weight_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for v in model.state_dict().values():
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def gather_weight_digests(model: nn.Module, world: int) -> list[str]:
    """Every rank's weight digest, so a run proves its replicas stayed identical."""
    if world == 1:
        return [weight_digest(model)]
    # DDP syncs gradients, and buffers only at the start of a forward; the last step's BatchNorm statistics
    # are each rank's own until rank 0's are broadcast.
    for buf in model.buffers():
        dist.broadcast(buf, src=0)
    out: list = [None] * world
    dist.all_gather_object(out, weight_digest(model))
    return out
