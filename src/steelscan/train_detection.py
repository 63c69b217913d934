"""The detection engine: `train_one_epoch_detection` and `fit_detection(cfg)` (reached through `train.fit`).

`fit_detection` writes a run folder: config.yaml (resolved), split.json, metrics.json (task "detection",
map50, map50_95, per_class_ap50, n_images, ms_per_image, history), pr_curves.png (one panel per class),
samples.png (validation images with truth and detections), curves.png and model.pt whose meta holds all
inference needs (see `steelscan.runs`). Shapes and labels: see `steelscan.models.detector`.
Single process: torchrun/DDP is the classification engine's; detection refuses WORLD_SIZE > 1.
`train.time_budget_minutes` stops training once that much training time is spent (`TrainingClock`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from steelscan.config import RunConfig, dump_config
from steelscan.data.classes import NEU_CLASSES
from steelscan.data.detection import (
    DetectionSet,
    DetectionSplit,
    collate_detection,
    load_detection_split,
)
from steelscan.detection_plots import (
    plot_detection_history,
    plot_pr_curves,
    save_detection_grid,
)
from steelscan.core.errors import SteelscanError
from steelscan.evaluate_detection import detection_summary, evaluate_detection_model
from steelscan.metrics import to_jsonable
from steelscan.models.detector import LABEL_OFFSET, detector_normalise
from steelscan.progress import Tracked
from steelscan.registry import create_model, list_models, model_entry
from steelscan.runs import CHECKPOINT, new_run_dir, save_checkpoint, write_json

log = logging.getLogger("steelscan.train")


def detection_model_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """Builder kwargs from a config: model.{in_chans, pretrained, dcn} + the detector section."""
    d = cfg.detector
    return {
        "num_classes": len(NEU_CLASSES) + LABEL_OFFSET, "in_chans": cfg.model.in_chans,
        "pretrained": cfg.model.pretrained, "dcn": cfg.model.dcn, "spp": d.spp, "coordconv": d.coordconv,
        "min_size": d.min_size if isinstance(d.min_size, int) else list(d.min_size), "max_size": d.max_size,
        "fpn_channels": d.fpn_channels, "representation_size": d.representation_size,
        "anchor_sizes": list(d.anchor_sizes), "aspect_ratios": list(d.aspect_ratios),
        "rpn_pre_nms_top_n_train": d.rpn_pre_nms_top_n_train, "rpn_post_nms_top_n_train": d.rpn_post_nms_top_n_train,
        "rpn_pre_nms_top_n_test": d.rpn_pre_nms_top_n_test, "rpn_post_nms_top_n_test": d.rpn_post_nms_top_n_test,
        "rpn_batch_size_per_image": d.rpn_batch_size_per_image, "box_batch_size_per_image": d.box_batch_size_per_image,
        "box_detections_per_img": d.box_detections_per_img, "box_score_thresh": d.box_score_thresh,
        "frozen_stages": d.frozen_stages, "freeze_bn": d.freeze_bn,
    }


def build_detection_datasets(cfg: RunConfig) -> tuple[DetectionSet, DetectionSet, DetectionSplit]:
    split = load_detection_split(cfg.data.root, cfg.data.val_remainders, cfg.data.clean_root,
                                 cfg.data.empty_annotations)
    a = cfg.augment
    train = DetectionSet(split.train, train=True, hflip=a.hflip, vflip=a.vflip,
                         brightness_contrast=a.brightness_contrast, blackout_p=a.defect_blackout)
    return train, DetectionSet(split.val), split


class TrainingClock:
    """Training time spent against an optional budget; `pause` while evaluating so that it does not count.

    `clock` is the time source (seconds), replaceable in tests.
    """

    def __init__(self, budget_minutes: float | None = None, clock: Callable[[], float] = time.perf_counter):
        self.budget_s = None if budget_minutes is None else 60.0 * budget_minutes
        self._clock, self._spent, self._since = clock, 0.0, None

    def start(self) -> None:
        if self._since is None:
            self._since = self._clock()

    def pause(self) -> None:
        if self._since is not None:
            self._spent += self._clock() - self._since
            self._since = None

    @property
    def seconds(self) -> float:
        return self._spent + (self._clock() - self._since if self._since is not None else 0.0)

    def fraction(self) -> float:
        """Share of the budget spent (0 without a budget)."""
        return 0.0 if self.budget_s is None else self.seconds / self.budget_s

    def exhausted(self) -> bool:
        return self.budget_s is not None and self.seconds >= self.budget_s


def train_one_epoch_detection(
    model: nn.Module, loader, optimizer: torch.optim.Optimizer, device: torch.device, scheduler=None,
    grad_accum: int = 1, max_steps: int | None = None, clip_grad_norm: float | None = None, log_every: int = 0,
    stop: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """One pass over `loader` of (images, targets); returns the mean of each loss and of their sum ("loss").

    An epoch on 2 CPU cores takes minutes: `log_every` > 0 logs the running loss every that many steps.
    `stop` (e.g. `TrainingClock.exhausted`) is asked after each optimiser step; True ends the epoch there.
    """
    model.train()
    sums: dict[str, float] = {}
    n = 0
    optimizer.zero_grad(set_to_none=True)
    params = [p for p in model.parameters() if p.requires_grad]
    steps = len(loader) if max_steps is None else min(len(loader), max_steps)
    for step, (images, targets) in enumerate(loader):
        if step >= steps:
            break
        images = [im.to(device) for im in images]
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step} ({ {k: v.item() for k, v in losses.items()} }); "
                                     "lower optim.lr or check the data")
        (loss / grad_accum).backward()
        stopping = False
        if (step + 1) % grad_accum == 0 or step + 1 == steps:
            if clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if scheduler is not None:
                scheduler.step()
            stopping = stop is not None and stop()
        for k, v in {"loss": loss, **losses}.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(images)
        n += len(images)
        if log_every and (step + 1) % log_every == 0:
            log.info("  step %d/%d  loss %.4f", step + 1, steps, sums["loss"] / n)
        if stopping:
            break
    return {k: v / max(n, 1) for k, v in sums.items()}


def _check(cfg: RunConfig) -> None:
    if cfg.data.format != "neu-det":
        raise SteelscanError(f"task detection reads NEU-DET: expected data.format neu-det, got {cfg.data.format}")
    if model_entry(cfg.model.name).task != "detection":
        raise SteelscanError(f"model.name {cfg.model.name!r} is not a detector; task detection expects one of "
                             f"{', '.join(list_models(task='detection'))}")
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise SteelscanError("detection trains in a single process; run it without torchrun")


def fit_detection(cfg: RunConfig, progress: bool = True) -> Path:
    """Train a detector from a config and return the run folder (called by `steelscan.train.fit`)."""
    from steelscan.train import make_optimizer, make_scheduler, prepare_device

    _check(cfg)
    device = prepare_device(cfg)
    train_set, val_set, split = build_detection_datasets(cfg)
    if not train_set or not val_set:
        raise SteelscanError(f"empty split: {len(train_set)} train / {len(val_set)} val images from {cfg.data.root}")
    g = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(train_set, batch_size=cfg.train.batch_size, shuffle=True, generator=g,
                        num_workers=cfg.train.num_workers, collate_fn=collate_detection,
                        drop_last=len(train_set) > cfg.train.batch_size, persistent_workers=cfg.train.num_workers > 0)
    kwargs = detection_model_kwargs(cfg)
    model = create_model(cfg.model.name, **kwargs).to(device)
    optimizer = make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    steps = min(len(loader), cfg.train.max_steps or len(loader))
    clock = TrainingClock(cfg.train.time_budget_minutes)
    scheduler = make_scheduler(cfg, optimizer, math.ceil(steps / cfg.train.grad_accum),
                               progress=clock.fraction if clock.budget_s is not None else None)

    class_names = list(NEU_CLASSES)
    mean, std = detector_normalise(cfg.model.name)
    run_dir = new_run_dir(cfg.out_dir, cfg.name)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    write_json(run_dir / "split.json", split.record)
    log.info("run folder %s: %d train / %d val images, model %s", run_dir, len(train_set), len(val_set), cfg.model.name)
    # image_size: the native size trained on (the model resizes by min_size/max_size itself).
    meta = {"task": "detection", "model": cfg.model.name, "model_kwargs": {**kwargs, "pretrained": False},
            "class_names": class_names, "label_offset": LABEL_OFFSET, "mean": mean, "std": std,
            "image_size": int(max(train_set.samples[0].image.shape)), "score_threshold": cfg.detector.score_threshold,
            "two_stage": cfg.two_stage.model_dump()}  # the default gate of `detect` / `benchmark two-stage`
    val_images = [s.image for s in val_set.samples]
    val_truths = [s.truth for s in val_set.samples]
    batch = cfg.train.batch_size
    history, t_start = [], time.perf_counter()
    for epoch in range(1, cfg.train.epochs + 1):
        t0 = time.perf_counter()
        batches = Tracked(loader, f"epoch {epoch}/{cfg.train.epochs}", enabled=progress)
        clock.start()
        losses = train_one_epoch_detection(model, batches, optimizer, device, scheduler, cfg.train.grad_accum,
                                           cfg.train.max_steps, cfg.detector.clip_grad_norm, 50 if progress else 0,
                                           stop=clock.exhausted)
        clock.pause()
        out_of_time = clock.exhausted()
        last = epoch == cfg.train.epochs or out_of_time  # the final evaluation, with COCO mAP too
        val = evaluate_detection_model(model, val_images, val_truths, class_names, batch, device, coco=last)
        history.append({"epoch": epoch, "train_loss": losses.get("loss", float("nan")),
                        "train_losses": {k: v for k, v in losses.items() if k != "loss"},
                        "val_map50": val["map50"], "seconds": time.perf_counter() - t0})
        if progress:
            log.info("epoch %d/%d  train loss %.4f  val mAP@0.5 %.4f  (%.0f s)", epoch, cfg.train.epochs,
                     history[-1]["train_loss"], val["map50"], history[-1]["seconds"])
        save_checkpoint(run_dir / CHECKPOINT, model, meta)
        if out_of_time:
            log.info("time budget of %g min spent in epoch %d: training stops", cfg.train.time_budget_minutes, epoch)
            break
    final = val
    summary = detection_summary(final, class_names)
    write_json(run_dir / "metrics.json", {**summary, "split": "val", "score_threshold": cfg.detector.score_threshold,
                                          "train_minutes": (time.perf_counter() - t_start) / 60,
                                          "training_minutes_excluding_eval": clock.seconds / 60,
                                          "time_budget_minutes": cfg.train.time_budget_minutes,
                                          "history": to_jsonable(history)})
    plot_pr_curves(final["pr_curves"], final["ap50_per_class"], class_names, run_dir / "pr_curves.png",
                   title=f"{cfg.name}: val mAP@0.5 {summary['map50'] or 0:.3f}")
    if cfg.detector.n_samples:  # spread over the validation list, which is sorted by class
        pick = sorted({round(i) for i in np.linspace(0, len(val_images) - 1, cfg.detector.n_samples)})
        save_detection_grid([val_images[i] for i in pick], [final["preds"][i] for i in pick],
                            [val_truths[i] for i in pick], class_names, run_dir / "samples.png",
                            cfg.detector.score_threshold)
    plot_detection_history(history, run_dir / "curves.png")
    return run_dir
