"""The segmentation engine: `fit_segmentation(cfg)` (reached through `train.fit`) on Severstal-layout folders.

The Kaggle 1st-place recipe: random crops (`segmentation.crop`, 256x512) with a share of defect crops, hflip,
vflip and RandomBrightnessContrast, RAdam, gradient accumulation (`train.grad_accum`: 3 x 8 = 24), mixed
precision on CUDA. Each epoch is scored on the whole validation images with the config's post-processing.

The run folder holds config.yaml, split.json, metrics.json (task "segmentation", dice_kaggle, per_class_dice,
all_empty_dice, n_images, ms_per_image, by_source, history), curves.png, samples.png and model.pt, whose meta
carries the normalisation, class names and post-processing (`steelscan tune` replaces the latter).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from steelscan.config import RunConfig, dump_config
from steelscan.data.classes import SEVERSTAL_CLASSES
from steelscan.data.segmentation import CropDataset, crop_transform, load_segmentation_split
from steelscan.core.errors import SteelscanError
from steelscan.evaluate_segmentation import evaluate_segmentation_model
from steelscan.losses import SegmentationLoss, create_loss
from steelscan.models.segmenter import segmenter_normalise
from steelscan.postprocess import PostProcess
from steelscan.progress import Tracked
from steelscan.registry import create_model
from steelscan.runs import CHECKPOINT, new_run_dir, save_checkpoint, write_json
from steelscan.segmentation_plots import plot_segmentation_history, save_overlay_grid

log = logging.getLogger("steelscan.train")


def make_mask_loss(cfg: RunConfig) -> nn.Module:
    """The mask loss named by loss.name; pos_weight defaults to the seed's (2, 2, 1, 1.5) where one is used."""
    lc = cfg.loss
    pos_weight = list(lc.pos_weight or (2.0, 2.0, 1.0, 1.5))
    if lc.name == "weighted_bce":
        return create_loss("weighted_bce", pos_weight=pos_weight)
    if lc.name == "bce_dice":
        return create_loss("bce_dice", bce_weight=lc.bce_weight, dice_weight=lc.dice_weight, pos_weight=pos_weight)
    if lc.name == "focal":
        return create_loss("focal", alpha=lc.alpha, gamma=lc.gamma)
    return create_loss("bce")


def postprocess_from_config(cfg: RunConfig) -> PostProcess:
    s = cfg.segmentation
    return PostProcess(threshold=s.threshold, min_area=s.min_area, min_component=s.min_component, gate=s.gate,
                       gate_threshold=s.gate_threshold, tta=s.tta)


def fit_segmentation(cfg: RunConfig, progress: bool = True) -> Path:
    from steelscan.train import make_optimizer, make_scheduler, prepare_device, train_one_epoch

    device = prepare_device(cfg)
    roots = [cfg.data.root, *([cfg.data.extra_root] if cfg.data.extra_root else [])]
    split = load_segmentation_split(roots, cfg.data.val_remainders)
    if not split.train or not split.val:
        raise SteelscanError(f"empty split: {len(split.train)} train / {len(split.val)} val images from {roots}")
    mean, std = segmenter_normalise(cfg.model.name)
    seg = cfg.segmentation
    train_set = CropDataset(split.train, seg.crop, seg.defect_share, seg.crops_per_image, mean, std,
                            crop_transform(cfg.augment, cfg.seed), cfg.seed)
    loader = DataLoader(train_set, batch_size=cfg.train.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(cfg.seed), num_workers=cfg.train.num_workers,
                        drop_last=len(train_set) > cfg.train.batch_size, persistent_workers=cfg.train.num_workers > 0)
    kwargs = {"num_classes": len(SEVERSTAL_CLASSES), "in_chans": cfg.model.in_chans, "pretrained": cfg.model.pretrained}
    model = create_model(cfg.model.name, **kwargs).to(device)
    loss_fn = SegmentationLoss(make_mask_loss(cfg), cfg.loss.presence_weight).to(device)
    optimizer = make_optimizer(cfg, model.parameters())
    steps = min(len(loader), cfg.train.max_steps or len(loader))
    scheduler = make_scheduler(cfg, optimizer, math.ceil(steps / cfg.train.grad_accum))
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.train.amp and device.type == "cuda")

    run_dir = new_run_dir(cfg.out_dir, cfg.name)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    write_json(run_dir / "split.json", split.record)
    log.info("run folder %s: %d train / %d val images, %d crops of %dx%d per epoch, model %s", run_dir,
             len(split.train), len(split.val), len(train_set), *seg.crop, cfg.model.name)
    meta = {"task": "segmentation", "model": cfg.model.name, "model_kwargs": {**kwargs, "pretrained": False},
            "class_names": list(SEVERSTAL_CLASSES), "mean": mean, "std": std, "crop": list(seg.crop),
            "postprocess": postprocess_from_config(cfg).as_dict()}
    images, truths = [s.image for s in split.val], [s.mask for s in split.val]
    sources = [s.source for s in split.val]
    history, t_start = [], time.perf_counter()
    for epoch in range(1, cfg.train.epochs + 1):
        t0 = time.perf_counter()
        train_set.set_epoch(epoch)
        batches = Tracked(loader, f"epoch {epoch}/{cfg.train.epochs}", total=steps, enabled=progress)
        train_loss = train_one_epoch(model, batches, optimizer, loss_fn, device, scheduler, cfg.train.grad_accum,
                                     scaler, cfg.train.max_steps)
        val = evaluate_segmentation_model(model, meta, images, truths, sources, device=device)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_dice_kaggle": val["dice_kaggle"],
                        "val_per_class_dice": val["per_class_dice"], "seconds": time.perf_counter() - t0})
        if progress:
            log.info("epoch %d/%d  train loss %.4f  val Kaggle Dice %.4f (all-empty %.4f)  (%.0f s)", epoch,
                     cfg.train.epochs, train_loss, val["dice_kaggle"], val["all_empty_dice"], history[-1]["seconds"])
        save_checkpoint(run_dir / CHECKPOINT, model, meta)
    write_json(run_dir / "metrics.json", {**val, "split": "val", "train_minutes": (time.perf_counter() - t_start) / 60,
                                          "history": history})
    plot_segmentation_history(history, run_dir / "curves.png")
    save_overlay_grid(model, meta, split.val, run_dir / "samples.png", device=device)
    return run_dir
