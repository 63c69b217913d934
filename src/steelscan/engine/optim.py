"""Optimisers and the learning-rate schedule, from a config."""

from __future__ import annotations

import math
from typing import Callable

import torch

from steelscan.config import RunConfig


def make_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    o = cfg.optim
    params = [p for p in params if p.requires_grad]
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=True)
    if o.name == "radam":
        return torch.optim.RAdam(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def make_scheduler(cfg: RunConfig, optimizer, steps_per_epoch: int, progress: Callable[[], float] | None = None):
    """Per optimiser step: linear warm-up, then cosine to 1% of the base rate.

    The cosine's progress is the step share of train.epochs, or `progress()` (e.g. the share of a time budget
    spent) when that is further along, so a budget-cut run still ends at a low rate.
    """
    if cfg.optim.scheduler == "none":
        return None
    total = max(1, cfg.train.epochs * steps_per_epoch)
    warm = int(cfg.optim.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        if progress is not None:
            t = max(t, progress())
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
