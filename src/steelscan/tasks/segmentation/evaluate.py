"""Segmenters on whole images: final masks by the model's post-processing, and the Kaggle Dice beside its
all-empty baseline.

Inference is `steelscan.deploy.predictors.SegmenterPredictor` (the one path of the CLI, the service and the
station): images are uint8 [H, W] (or RGB [H, W, 3]) normalised, reflect-padded to multiples of 32 and
cropped back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from steelscan.core.meta import ModelMeta
from steelscan.deploy.predictors import SegmenterPredictor, group_by_shape
from steelscan.metrics.segmentation import SegmentationMeter


def segment_masks(predictor: SegmenterPredictor, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Final uint8 masks [K, H, W] per image, images of any sizes (one predictor call per size)."""
    masks: list = [None] * len(images)
    for idx in group_by_shape(images).values():
        for i, m in zip(idx, predictor.predict([images[i] for i in idx]).masks):
            masks[i] = m
    return masks


def dice_report(masks: list[np.ndarray] | np.ndarray, truths: list[np.ndarray] | np.ndarray,
                class_names: Sequence[str] | None = None) -> dict:
    """Kaggle Dice, per class, and the all-empty baseline (predict nothing) on the same images.

    The baseline belongs beside every Kaggle Dice: empty/empty pairs score 1, so predicting nothing scores
    the share of empty pairs.
    """
    meter, empty = SegmentationMeter(), SegmentationMeter()
    for m, t in zip(masks, truths):
        meter.update(m[None], t[None])
        empty.update(np.zeros_like(t)[None], t[None])
    r, e = meter.compute(), empty.compute()
    names = list(class_names) if class_names is not None else [str(k + 1) for k in range(len(r["dice_per_class"]))]
    return {"dice_kaggle": r["dice"], "per_class_dice": dict(zip(names, r["dice_per_class"])),
            "all_empty_dice": e["dice"], "all_empty_per_class_dice": dict(zip(names, e["dice_per_class"])),
            "iou": r["iou"], "pooled_dice_per_class": dict(zip(names, r["pooled_dice_per_class"])),
            "n_images": r["n_images"]}


def evaluate_segmentation_model(model: torch.nn.Module | SegmenterPredictor, meta: ModelMeta | dict | None,
                                images: list[np.ndarray], truths: list[np.ndarray], sources: list[str] | None = None,
                                batch_size: int = 4, device: str | torch.device = "cpu") -> dict:
    """Everything `steelscan evaluate` reports for a segmenter: the Dice report (overall and per source,
    e.g. real vs synthetic), ms/image of the whole path (model, TTA, post-processing). `model`: an nn.Module
    with its `meta`, or a predictor (any back end; `meta` is then its own)."""
    if isinstance(model, SegmenterPredictor):
        predictor = model
    else:
        predictor = SegmenterPredictor.from_module(model, meta, device, batch_size=batch_size)
    names = list(predictor.class_names)
    t0 = time.perf_counter()
    masks = segment_masks(predictor, images)
    ms = 1000 * (time.perf_counter() - t0) / max(len(images), 1)
    out = {"task": "segmentation", **dice_report(masks, truths, names), "ms_per_image": ms,
           "threads": torch.get_num_threads(), "postprocess": predictor.postprocess.as_dict()}
    if sources and len(set(sources)) > 1:
        out["by_source"] = {s: dice_report([m for m, q in zip(masks, sources) if q == s],
                                           [t for t, q in zip(truths, sources) if q == s], names)
                            for s in sorted(set(sources))}
    return out
