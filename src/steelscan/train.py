"""The training engine: `train_one_epoch` and `fit(cfg)`; single process or torchrun + DDP.
Detection and segmentation configs go on to `train_detection.fit_detection` / `train_segmentation.fit_segmentation`.

`fit` writes a run folder: config.yaml (resolved), split.json, metrics.json, curves.png, confusion.png and
model.pt (see `steelscan.runs`). Under torchrun only rank 0 logs and writes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from steelscan.config import RunConfig, dump_config
from steelscan.data.classes import NEU_CLASSES
from steelscan.data.classification import (
    balanced_sampler,
    build_datasets,
    class_weights,
)
from steelscan.core.errors import SteelscanError
from steelscan.evaluate import evaluate
from steelscan.losses import create_loss
from steelscan.models.classifier import NORMALISE
from steelscan.plots import plot_confusion, plot_curves
from steelscan.progress import Tracked
from steelscan.registry import create_model, list_models, model_entry
from steelscan.runs import CHECKPOINT, new_run_dir, save_checkpoint, write_json

log = logging.getLogger("steelscan.train")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def prepare_device(cfg: RunConfig) -> torch.device:
    """Check the device, set the thread count and seed everything: the start of every single-process run."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise SteelscanError("device: cuda was requested but no CUDA device is available (use device: cpu)")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.seed)
    return torch.device(cfg.device)


def _dist_info() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def train_one_epoch(
    model: nn.Module, loader, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, device: torch.device,
    scheduler=None, grad_accum: int = 1, scaler: torch.amp.GradScaler | None = None, max_steps: int | None = None,
) -> float:
    """One pass over `loader`; returns the mean loss. Gradients accumulate over `grad_accum` batches."""
    model.train()
    total, n = 0.0, 0
    optimizer.zero_grad(set_to_none=True)
    use_amp = scaler is not None and scaler.is_enabled()
    n_steps = len(loader) if max_steps is None else min(len(loader), max_steps)
    for step, (x, y) in enumerate(loader):
        if step >= n_steps:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, enabled=use_amp):
            loss = loss_fn(model(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower optim.lr or check the data")
        (scaler.scale(loss / grad_accum) if use_amp else loss / grad_accum).backward()
        if (step + 1) % grad_accum == 0 or step + 1 == n_steps:  # the last partial group steps too
            if use_amp:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if scheduler is not None:
                scheduler.step()
        total += loss.item() * len(y)
        n += len(y)
    return total / max(n, 1)


def _weight_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for v in model.state_dict().values():
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _gather_weight_digests(model: nn.Module, world: int) -> list[str]:
    """Every rank's weight digest, so a run proves its replicas stayed identical."""
    if world == 1:
        return [_weight_digest(model)]
    # DDP syncs gradients, and buffers only at the start of a forward; the last step's BatchNorm statistics
    # are each rank's own until rank 0's are broadcast.
    for buf in model.buffers():
        dist.broadcast(buf, src=0)
    digest = _weight_digest(model)
    out: list = [None] * world
    dist.all_gather_object(out, digest)
    return out


def make_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    o = cfg.optim
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


def make_loss(cfg: RunConfig, train_labels: list[int], n_classes: int) -> nn.Module:
    if cfg.loss.name == "weighted_ce":
        return create_loss("weighted_ce", weight=class_weights(train_labels, n_classes), label_smoothing=cfg.loss.label_smoothing)
    if cfg.loss.name == "softmax_focal":
        return create_loss("softmax_focal", gamma=cfg.loss.gamma)
    return create_loss("ce", label_smoothing=cfg.loss.label_smoothing)


def fit(cfg: RunConfig, progress: bool = True) -> Path | None:
    """Train from a config; return the run folder (None on ranks other than 0). task detection -> `fit_detection`."""
    entry = model_entry(cfg.model.name)
    if entry.task != cfg.task:
        raise SteelscanError(f"model.name {cfg.model.name!r} is a {entry.task} model but task is {cfg.task}; "
                             f"expected one of {', '.join(list_models(task=cfg.task))}")
    if cfg.task == "detection":
        from steelscan.train_detection import fit_detection

        return fit_detection(cfg, progress)
    if cfg.task == "segmentation":
        from steelscan.train_segmentation import fit_segmentation

        return fit_segmentation(cfg, progress)
    rank, world, local_rank = _dist_info()
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise SteelscanError("device: cuda was requested but no CUDA device is available (use device: cpu)")
    if world > 1:
        dist.init_process_group("nccl" if cfg.device == "cuda" else "gloo")
    device = torch.device(f"cuda:{local_rank}" if cfg.device == "cuda" else "cpu")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.seed)  # the same seed on every rank: identical initial weights
    try:
        return _fit(cfg, rank, world, device, progress and rank == 0)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _fit(cfg: RunConfig, rank: int, world: int, device: torch.device, progress: bool) -> Path | None:
    entry = model_entry(cfg.model.name)
    class_names = ["clean", "defect"] if cfg.data.binary else list(NEU_CLASSES)
    mean, std = NORMALISE.get(cfg.model.name, (0.5, 0.5))
    train_set, val_set, split = build_datasets(cfg, mean, std)
    if not train_set or not val_set:
        raise SteelscanError(f"empty split: {len(train_set)} train / {len(val_set)} val images from {cfg.data.root}")

    g = torch.Generator().manual_seed(cfg.seed)
    if world > 1:
        sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
    elif cfg.imbalance.sampler == "balanced":
        sampler = balanced_sampler(train_set.labels, cfg.seed)
    else:
        sampler = None
    train_loader = DataLoader(
        train_set, batch_size=cfg.train.batch_size, shuffle=sampler is None, sampler=sampler, generator=g,
        num_workers=cfg.train.num_workers, drop_last=len(train_set) > cfg.train.batch_size,
        persistent_workers=cfg.train.num_workers > 0,
    )
    val_loader = DataLoader(val_set, batch_size=max(64, cfg.train.batch_size), num_workers=cfg.train.num_workers)

    model_kwargs = {"num_classes": len(class_names), "in_chans": cfg.model.in_chans, "pretrained": cfg.model.pretrained,
                    "dcn": cfg.model.dcn, "drop_rate": cfg.model.drop_rate}
    model = create_model(cfg.model.name, **model_kwargs).to(device)
    net = DistributedDataParallel(model) if world > 1 else model
    loss_fn = make_loss(cfg, train_set.labels, len(class_names)).to(device)
    eval_loss = nn.CrossEntropyLoss()
    optimizer = make_optimizer(cfg, net.parameters())
    steps = min(len(train_loader), cfg.train.max_steps or len(train_loader))
    scheduler = make_scheduler(cfg, optimizer, math.ceil(steps / cfg.train.grad_accum))
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.train.amp and device.type == "cuda")

    run_dir = new_run_dir(cfg.out_dir, cfg.name) if rank == 0 else None
    if run_dir:
        (run_dir / "config.yaml").write_text(dump_config(cfg))
        write_json(run_dir / "split.json", split.record)
        log.info("run folder %s: %d train / %d val images, model %s", run_dir, len(train_set), len(val_set), entry.name)
    meta = {
        "task": "classification", "model": cfg.model.name, "model_kwargs": {**model_kwargs, "pretrained": False},
        "class_names": class_names, "image_size": cfg.data.image_size, "mean": mean, "std": std,
        "binary": cfg.data.binary, "tta": cfg.train.tta,
    }
    history, t_start = [], time.perf_counter()
    for epoch in range(1, cfg.train.epochs + 1):
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        batches = Tracked(train_loader, f"epoch {epoch}/{cfg.train.epochs}", total=steps, enabled=progress)
        train_loss = train_one_epoch(net, batches, optimizer, loss_fn, device, scheduler,
                                     cfg.train.grad_accum, scaler, cfg.train.max_steps)
        if rank != 0:
            continue
        val = evaluate(model, val_loader, device, tta=False, loss_fn=eval_loss, class_names=class_names)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val["loss"],
                        "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"],
                        "seconds": time.perf_counter() - t0})
        if progress:
            log.info("epoch %d/%d  train loss %.4f  val loss %.4f  val acc %.2f%%  (%.0f s)", epoch, cfg.train.epochs,
                     train_loss, val["loss"], 100 * val["accuracy"], history[-1]["seconds"])
        save_checkpoint(run_dir / CHECKPOINT, model, meta)
    digests = _gather_weight_digests(model, world)
    if rank != 0:
        return None
    final = evaluate(model, val_loader, device, tta=cfg.train.tta, loss_fn=eval_loss, class_names=class_names)
    final.pop("probabilities")
    metrics = {"task": "classification", **{k: final[k] for k in ("accuracy", "macro_f1", "per_class")},
               "n_images": final["n"], "tta": cfg.train.tta, "confusion_matrix": final["confusion_matrix"],
               "class_names": class_names, "train_minutes": (time.perf_counter() - t_start) / 60,
               "history": history, "world_size": world,
               "rank_weight_digests": digests}
    write_json(run_dir / "metrics.json", metrics)
    plot_curves(history, run_dir / "curves.png")
    plot_confusion(final["confusion_matrix"], class_names, run_dir / "confusion.png",
                   title=f"{cfg.name}: val accuracy {100 * final['accuracy']:.2f}%")
    return run_dir
