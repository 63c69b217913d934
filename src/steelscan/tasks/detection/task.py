"""The detection task: boxes of defect classes (NEU-DET, a plant's YOLO / COCO / VOC sets).

Faster R-CNN + FPN (`steelscan.models.detector`) or FCOS (`steelscan.models.fcos`); model label = class index + LABEL_OFFSET (torchvision
reserves 0 for the background). The detector resizes inside the model: `detector.min_size` / `max_size`
null keep the data's own scale (the median short side, the largest long side). Images with no box are
defect-free training images. The checkpoint is chosen by validation mAP@0.5.
"""

from __future__ import annotations

import logging
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from steelscan.config import RunConfig
from steelscan.core.errors import ConfigError, DataError
from steelscan.core.images import image_size, read_image
from steelscan.core.meta import ModelMeta
from steelscan.data.formats.base import Item, LabelledData
from steelscan.data.splits import SplitResult
from steelscan.deploy.predictors import DetectorPredictor
from steelscan.tasks.detection.plots import plot_detection_history, plot_pr_curves, save_detection_grid
from steelscan.tasks.detection.evaluate import detection_summary, evaluate_detection_model
from steelscan.models import model_defaults
from steelscan.models.detector import LABEL_OFFSET
from steelscan.models.fcos import PREFIX as FCOS_PREFIX
from steelscan.tasks.base import Job, class_index, register_task, require_images
from steelscan.data.splits import checksum_side
from steelscan.tasks.classification.task import RECIPES, data_channels
from steelscan.tasks.detection.data import DetectionSet, collate_detection, load_clean_images, load_samples

log = logging.getLogger("steelscan.train")


def detection_model_kwargs(cfg: RunConfig, n_classes: int, in_chans: int, sizes: tuple[int, int]) -> dict[str, Any]:
    """Builder kwargs: model.{pretrained, dcn} + the detector section; `sizes` = the data's (short, long) side."""
    d = cfg.detector
    min_size = d.min_size if d.min_size is not None else max(32, sizes[0])
    min_size = min_size if isinstance(min_size, int) else list(min_size)
    max_size = d.max_size if d.max_size is not None else max(sizes[1], *np.atleast_1d(min_size))
    common = {
        "num_classes": n_classes + LABEL_OFFSET, "in_chans": in_chans,
        "pretrained": cfg.model.pretrained, "dcn": cfg.model.dcn, "spp": d.spp,
        "min_size": min_size, "max_size": int(max_size), "fpn_channels": d.fpn_channels,
        "box_detections_per_img": d.box_detections_per_img, "box_score_thresh": d.box_score_thresh,
        "frozen_stages": d.frozen_stages, "freeze_bn": d.freeze_bn,
    }
    if cfg.model.name.startswith(FCOS_PREFIX):
        if d.coordconv:
            raise ConfigError(f"detector.coordconv applies to Faster R-CNN heads (frcnn_*), not to {cfg.model.name}")
        return {**common, "head_convs": d.head_convs, "center_sampling_radius": d.center_sampling_radius,
                "topk_candidates": d.topk_candidates}
    return {
        **common, "coordconv": d.coordconv, "representation_size": d.representation_size,
        "anchor_sizes": list(d.anchor_sizes), "aspect_ratios": list(d.aspect_ratios),
        "rpn_pre_nms_top_n_train": d.rpn_pre_nms_top_n_train, "rpn_post_nms_top_n_train": d.rpn_post_nms_top_n_train,
        "rpn_pre_nms_top_n_test": d.rpn_pre_nms_top_n_test, "rpn_post_nms_top_n_test": d.rpn_post_nms_top_n_test,
        "rpn_batch_size_per_image": d.rpn_batch_size_per_image, "box_batch_size_per_image": d.box_batch_size_per_image,
    }


def detection_step(model: nn.Module, batch, device: torch.device):
    images, targets = batch
    images = [im.to(device) for im in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    losses = model(images, targets)
    return sum(losses.values()), losses, len(images)


def data_sides(items: list[Item]) -> tuple[int, int]:
    """(median short side, largest long side) of the images, from their headers."""
    sizes = [it.size or image_size(it.path) for it in items]
    return int(median(min(s) for s in sizes)), int(max(max(s) for s in sizes))


class DetectionTask:
    name = "detection"
    default_recipe = RECIPES / "detection.yaml"

    def prepare(self, cfg: RunConfig, data: LabelledData, split: SplitResult, device: torch.device) -> Job:
        names = list(data.class_names)
        in_chans = cfg.model.in_chans or data_channels(split.train)
        train_items, val_items = _apply_empty_policy(cfg, split.train), _apply_empty_policy(cfg, split.val)
        train_samples = load_samples(train_items, in_chans, data.problems)
        val_samples = load_samples(val_items, in_chans, data.problems)
        require_images(len(train_samples), len(val_samples), data)
        if cfg.data.clean_root is not None:
            sides: dict[str, list[str]] = {"train": [], "val": []}
            for s in load_clean_images(cfg.data.clean_root, in_chans):
                side = checksum_side(s.name, cfg.data.val_remainders)
                (val_samples if side == "val" else train_samples).append(s)
                sides[side].append(s.name.removeprefix("clean/"))
            split.record["clean_images"] = sides  # split.json lists them, as the binary gate's does
        a = cfg.augment
        train = DetectionSet(train_samples, train=True, hflip=a.hflip, vflip=a.vflip,
                             brightness_contrast=a.brightness_contrast, blackout_p=a.defect_blackout,
                             mosaic=a.mosaic)
        sides = data_sides(train_items or split.train)  # data.empty_annotations: skip may leave only clean images
        kwargs = detection_model_kwargs(cfg, len(names), in_chans, sides)
        defaults = model_defaults(cfg.model.name)
        # input_size: the native size trained on (the model resizes by min_size/max_size itself).
        meta = ModelMeta(task="detection", model=cfg.model.name, model_kwargs={**kwargs, "pretrained": False},
                         class_names=tuple(names), in_chans=in_chans, input_size=(sides[0], sides[1]),
                         mean=defaults.mean, std=defaults.std, label_offset=LABEL_OFFSET,
                         score_threshold=cfg.detector.score_threshold, two_stage=cfg.two_stage.model_dump())
        val_images = [s.image for s in val_samples]
        val_truths = [s.truth for s in val_samples]
        batch = cfg.train.batch_size

        def run_eval(model: nn.Module, dev: torch.device, final: bool) -> dict[str, Any]:
            out = evaluate_detection_model(model, val_images, val_truths, names, batch, dev, coco=final)
            out["score"] = out["map50"]
            out["summary"] = f"mAP@0.5 {out['map50']:.4f}"
            out["headline"] = {"map50": out["map50"]}
            return out

        def finish(model: nn.Module, final: dict, run_dir: Path, history: list[dict]) -> dict[str, Any]:
            summary = detection_summary(final, names)
            plot_pr_curves(final["pr_curves"], final["ap50_per_class"], names, run_dir / "pr_curves.png",
                           title=f"{cfg.name}: val mAP@0.5 {summary['map50'] or 0:.3f}")
            if cfg.detector.n_samples and val_images:  # spread over the validation list, which is sorted by class
                pick = sorted({round(i) for i in np.linspace(0, len(val_images) - 1, cfg.detector.n_samples)})
                save_detection_grid([val_images[i] for i in pick], [final["preds"][i] for i in pick],
                                    [val_truths[i] for i in pick], names, run_dir / "samples.png",
                                    cfg.detector.score_threshold)
            plot_detection_history(history, run_dir / "curves.png")
            return {**summary, "score_threshold": cfg.detector.score_threshold}

        n_boxes = sum(len(s.boxes) for s in train_samples)
        n_clean = sum(len(s.boxes) == 0 for s in train_samples)
        return Job(train_set=train, model_kwargs=kwargs, meta=meta, step=detection_step, evaluate=run_eval,
                   finish=finish, collate_fn=collate_detection, clip_grad_norm=cfg.detector.clip_grad_norm,
                   describe=f"{len(train_samples)} train ({n_boxes} boxes, {n_clean} defect-free) / "
                            f"{len(val_samples)} val images, {len(names)} classes, {in_chans} channel(s), "
                            f"min_size {kwargs['min_size']} max_size {kwargs['max_size']}",
                   history_keys=("map50",))

    def evaluate_items(self, model: nn.Module, meta: ModelMeta, data: LabelledData, items: list[Item],
                       batch_size: int | None, tta: bool | None) -> dict[str, Any]:
        batch_size = batch_size or 8
        index = class_index(meta, data)
        images, truths = [], []
        for it in items:
            images.append(read_image(it.path, channels=meta.in_chans, min_side=meta.min_input_size))
            truths.append({"boxes": it.boxes, "labels": np.asarray([index[k] for k in it.labels], np.int64)})
        if not images:
            raise DataError(f"no images in {data.root} for this split")
        predictor = DetectorPredictor.from_module(model, meta)  # labels by meta.label_offset
        result = evaluate_detection_model(predictor, images, truths, list(meta.class_names), batch_size)
        return detection_summary(result, list(meta.class_names))

    def report(self, r: dict[str, Any]) -> tuple[list[str], list[list[str]], str]:
        def fmt(v: float | None) -> str:  # None: no truth of that class
            return "n/a" if v is None else f"{v:.4f}"

        rows = [[n, fmt(r["per_class_ap50"][n]), fmt((r["per_class_ap50_95"] or {}).get(n)),
                 str(r["n_truth_per_class"][n])] for n in r["class_names"]]
        line = (f"mAP@0.5 {fmt(r['map50'])}  mAP@[.5:.95] {fmt(r['map50_95'])}  n={r['n_images']}  "
                f"{r['ms_per_image']:.1f} ms/image (batch {r['batch_size']}, {r['threads']} threads)")
        return ["class", "AP50", "AP50:95", "boxes"], rows, line


def _apply_empty_policy(cfg: RunConfig, items: list[Item]) -> list[Item]:
    """data.empty_annotations: images with no box are defect-free images (clean), skipped, or an error."""
    policy = cfg.data.empty_annotations
    empty = [it for it in items if len(it.boxes) == 0]
    if empty and policy == "error":
        raise DataError(f"{empty[0].path}: no box in its label; expected at least one (or set "
                        "data.empty_annotations to clean or skip)")
    if empty and policy == "skip":
        log.warning("skipped %d image(s) with no box, e.g. %s (data.empty_annotations: skip)", len(empty), empty[0].name)
        return [it for it in items if len(it.boxes)]
    return items


register_task(DetectionTask())
