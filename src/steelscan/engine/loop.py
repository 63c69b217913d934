"""`train_one_epoch`: one pass over a loader for any task, as a plain function.

A task supplies a `step(model, batch, device) -> (loss, parts, n)`: the loss to minimise, its named parts
(for the log and the history) and the number of images in the batch. Everything else is the engine's:
mixed precision on CUDA, gradient accumulation, gradient clipping, the schedule and the time budget.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
import torch.nn as nn

from steelscan.engine.dist import any_rank

log = logging.getLogger("steelscan.train")

Step = Callable[[nn.Module, object, torch.device], tuple[torch.Tensor, dict[str, torch.Tensor], int]]


def supervised_step(loss_fn: nn.Module) -> Step:
    """The step of (x, y) batches: classification and segmentation."""

    def step(model: nn.Module, batch, device: torch.device):
        x, y = batch
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        return loss_fn(model(x), y), {}, len(x)

    return step


def train_one_epoch(
    model: nn.Module, loader, optimizer: torch.optim.Optimizer, step: Step, device: torch.device,
    scheduler=None, grad_accum: int = 1, scaler: torch.amp.GradScaler | None = None, max_steps: int | None = None,
    clip_grad_norm: float | None = None, stop: Callable[[], bool] | None = None, world: int = 1, log_every: int = 0,
    ema=None,
) -> dict[str, float]:
    """One pass over `loader`; returns the mean of the loss ("loss") and of each of its parts.

    Gradients accumulate over `grad_accum` batches (the last partial group steps too). `stop` (e.g.
    `TrainingClock.exhausted`) is asked after each optimiser step, agreed across ranks; True ends the epoch.
    `ema` (timm's ModelEmaV3 of the unwrapped model) is updated after each optimiser step.
    """
    model.train()
    use_amp = scaler is not None and scaler.is_enabled()
    params = [p for p in model.parameters() if p.requires_grad]
    n_steps = len(loader) if max_steps is None else min(len(loader), max_steps)
    sums: dict[str, float] = {}
    n = 0
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(loader):
        if i >= n_steps:
            break
        with torch.autocast(device_type=device.type, enabled=use_amp):
            loss, parts, size = step(model, batch, device)
        if not torch.isfinite(loss):
            detail = {k: round(float(v), 4) for k, v in parts.items()}
            raise FloatingPointError(f"loss is {loss.item()} at step {i} {detail or ''}; lower optim.lr or check the data")
        (scaler.scale(loss / grad_accum) if use_amp else loss / grad_accum).backward()
        stopping = False
        if (i + 1) % grad_accum == 0 or i + 1 == n_steps:
            if use_amp:
                scaler.unscale_(optimizer)
            if clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
            if use_amp:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(getattr(model, "module", model), step=ema.steps)
                ema.steps += 1
            if scheduler is not None:
                scheduler.step()
            stopping = stop is not None and any_rank(stop(), world)
        for k, v in {"loss": loss, **parts}.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) * size
        n += size
        if log_every and (i + 1) % log_every == 0:
            log.info("  step %d/%d  loss %.4f", i + 1, n_steps, sums["loss"] / n)
        if stopping:
            break
    return {k: v / max(n, 1) for k, v in sums.items()}
