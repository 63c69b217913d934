"""The segmentation task: per-pixel defect masks of K classes (Severstal-style RLE, mask PNG folders).

The Kaggle 1st-place recipe: random crops (`segmentation.crop`, 256x512 cut to the smallest image) with a
share of defect crops, hflip, vflip and RandomBrightnessContrast, a per-class presence head as the gate.
Each epoch is scored on the whole validation images with the config's post-processing, Kaggle Dice beside
the all-empty baseline; the checkpoint is chosen by validation Kaggle Dice.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from steelscan.config import RunConfig, per_class
from steelscan.core.errors import DataError
from steelscan.core.images import image_size
from steelscan.core.meta import ModelMeta
from steelscan.data.formats.base import Item, LabelledData
from steelscan.data.splits import SplitResult
from steelscan.engine.loop import supervised_step
from steelscan.tasks.segmentation.evaluate import evaluate_segmentation_model
from steelscan.losses import SegmentationLoss, create_loss
from steelscan.models import model_defaults
from steelscan.postprocess import PostProcess
from steelscan.tasks.segmentation.plots import plot_segmentation_history, save_overlay_grid
from steelscan.tasks.augment import crop_transform
from steelscan.tasks.base import Job, class_index, register_task, require_images
from steelscan.tasks.classification.task import RECIPES, data_channels
from steelscan.tasks.segmentation.data import CropDataset, load_samples

log = logging.getLogger("steelscan.train")


def make_mask_loss(cfg: RunConfig, n_classes: int) -> nn.Module:
    """The mask loss named by loss.name; pos_weight (one per class or one for all) defaults to 1."""
    lc = cfg.loss
    name = lc.name or "bce_dice"
    pos_weight = list(per_class(lc.pos_weight or (1.0,), n_classes, "loss.pos_weight"))
    if name == "weighted_bce":
        return create_loss("weighted_bce", pos_weight=pos_weight)
    if name == "bce_dice":
        return create_loss("bce_dice", bce_weight=lc.bce_weight, dice_weight=lc.dice_weight, pos_weight=pos_weight)
    if name == "focal":
        return create_loss("focal", alpha=lc.alpha, gamma=lc.gamma)
    return create_loss("bce")


def postprocess_from_config(cfg: RunConfig, n_classes: int) -> PostProcess:
    s = cfg.segmentation
    return PostProcess(threshold=per_class(s.threshold, n_classes, "segmentation.threshold"),
                       min_area=per_class(s.min_area, n_classes, "segmentation.min_area"),
                       min_component=s.min_component, gate=s.gate,
                       gate_threshold=per_class(s.gate_threshold, n_classes, "segmentation.gate_threshold"), tta=s.tta)


def default_crop(items: list[Item], want: tuple[int, int] = (256, 512)) -> tuple[int, int]:
    """256x512 (the 1st place's crop), cut to the smallest image and rounded down to multiples of 32."""
    sizes = [it.size or image_size(it.path) for it in items]
    h, w = min(s[0] for s in sizes), min(s[1] for s in sizes)
    crop = (min(want[0], h // 32 * 32), min(want[1], w // 32 * 32))
    if min(crop) < 32:
        raise DataError(f"images of {h}x{w} are too small to segment: expected at least 32x32 pixels")
    return crop


def _source(item: Item, cfg: RunConfig) -> str:
    """The folder an item came from (data.root or data.extra_root): metrics are also reported per folder."""
    if cfg.data.extra_root and item.path.resolve().is_relative_to(Path(cfg.data.extra_root).resolve()):
        return Path(cfg.data.extra_root).resolve().name
    return Path(cfg.data.root).resolve().name


class SegmentationTask:
    name = "segmentation"
    default_recipe = RECIPES / "segmentation.yaml"

    def prepare(self, cfg: RunConfig, data: LabelledData, split: SplitResult, device: torch.device) -> Job:
        names, k = list(data.class_names), len(data.class_names)
        in_chans = cfg.model.in_chans or data_channels(split.train)
        crop = tuple(cfg.segmentation.crop) if cfg.segmentation.crop else default_crop(split.train)
        train_samples = [s for it in split.train
                         for s in load_samples([it], k, in_chans, _source(it, cfg), data.problems)]
        val_samples = [s for it in split.val for s in load_samples([it], k, in_chans, _source(it, cfg), data.problems)]
        require_images(len(train_samples), len(val_samples), data)
        defaults = model_defaults(cfg.model.name)
        seg = cfg.segmentation
        train = CropDataset(train_samples, crop, seg.defect_share, seg.crops_per_image, defaults.mean, defaults.std,
                            crop_transform(cfg.augment, cfg.seed), cfg.seed)
        kwargs = {"num_classes": k, "in_chans": in_chans, "pretrained": cfg.model.pretrained}
        meta = ModelMeta(task="segmentation", model=cfg.model.name, model_kwargs={**kwargs, "pretrained": False},
                         class_names=tuple(names), in_chans=in_chans, input_size=crop, min_input_size=32,
                         mean=defaults.mean, std=defaults.std, postprocess=postprocess_from_config(cfg, k).as_dict())
        images, truths = [s.image for s in val_samples], [s.mask for s in val_samples]
        sources = [s.source for s in val_samples]

        def run_eval(model: nn.Module, dev: torch.device, final: bool) -> dict[str, Any]:
            out = evaluate_segmentation_model(model, meta, images, truths, sources, device=dev)
            out["score"] = out["dice_kaggle"]
            out["summary"] = f"Kaggle Dice {out['dice_kaggle']:.4f} (all-empty {out['all_empty_dice']:.4f})"
            out["headline"] = {"dice_kaggle": out["dice_kaggle"], "all_empty_dice": out["all_empty_dice"]}
            return out

        def finish(model: nn.Module, final: dict, run_dir: Path, history: list[dict]) -> dict[str, Any]:
            plot_segmentation_history(history, run_dir / "curves.png")
            save_overlay_grid(model, meta, val_samples, run_dir / "samples.png", device=device)
            return {**{k2: v for k2, v in final.items() if k2 not in ("score", "summary", "headline")},
                    "class_names": names}

        n_defective = sum(bool(s.mask.any()) for s in train_samples)
        return Job(train_set=train, model_kwargs=kwargs, meta=meta,
                   step=supervised_step(SegmentationLoss(make_mask_loss(cfg, k), cfg.loss.presence_weight).to(device)),
                   evaluate=run_eval, finish=finish, set_epoch=train.set_epoch,
                   describe=f"{len(train_samples)} train ({n_defective} with defects) / {len(val_samples)} val images, "
                            f"{len(train)} crops of {crop[0]}x{crop[1]} per epoch, {k} classes, {in_chans} channel(s)",
                   history_keys=("dice_kaggle", "per_class_dice"))

    def evaluate_items(self, model: nn.Module, meta: ModelMeta, data: LabelledData, items: list[Item],
                       batch_size: int | None, tta: bool | None) -> dict[str, Any]:
        index = class_index(meta, data)
        samples = load_samples(items, len(data.class_names), meta.in_chans)
        truths = []
        for s in samples:  # the data's channels in the model's class order
            t = np.zeros((meta.num_classes, *s.mask.shape[1:]), np.uint8)
            t[index] = s.mask
            truths.append(t)
        if not samples:
            raise DataError(f"no images in {data.root} for this split")
        out = evaluate_segmentation_model(model, meta, [s.image for s in samples], truths, batch_size=batch_size or 4)
        return {**out, "class_names": list(meta.class_names)}

    def report(self, r: dict[str, Any]) -> tuple[list[str], list[list[str]], str]:
        rows = []
        for name, dice in r["per_class_dice"].items():
            pooled = r["pooled_dice_per_class"][name]
            rows.append([name, f"{dice:.4f}", f"{r['all_empty_per_class_dice'][name]:.4f}",
                         "n/a" if pooled != pooled else f"{pooled:.4f}"])
        line = (f"Kaggle Dice {r['dice_kaggle']:.4f} (all-empty baseline {r['all_empty_dice']:.4f})  n={r['n_images']}"
                f"  {r['ms_per_image']:.1f} ms/image ({r['threads']} threads)")
        return ["class", "Dice (Kaggle)", "all-empty Dice", "pooled Dice"], rows, line


register_task(SegmentationTask())
