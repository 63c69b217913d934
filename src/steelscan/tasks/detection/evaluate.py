"""Detection evaluation as plain functions: `detect_images` (a bare model, e.g. during training) and
`evaluate_detection_model`.

Inference is the steps of `steelscan.deploy.predictors.DetectorPredictor` (the one path of the CLI, the service
and the 2-stage pipeline). Images in: uint8 [H, W] or [H, W, C] in the model's channels, any size (the model
resizes them itself). Detections out, one dict per image of numpy arrays: boxes float32 [D, 4] xyxy in pixels
of the input image, scores float32 [D], labels int64 [D] as class indices (the model's label minus its label
offset), sorted by descending score.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from steelscan.deploy.predictors import DetectorPredictor, detector_inputs, keep_detections, run_detector
from steelscan.metrics import evaluate_detection, to_jsonable
from steelscan.models.detector import LABEL_OFFSET


def detect_images(model: nn.Module, images: Sequence[np.ndarray], batch_size: int = 8, score_threshold: float = 0.0,
                  device: str | torch.device = "cpu", label_offset: int = LABEL_OFFSET) -> list[dict[str, np.ndarray]]:
    """Run a bare detector (no meta) over images; keep detections scoring >= score_threshold."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        raw = run_detector(model, detector_inputs(images[i : i + batch_size]), device)
        out += [keep_detections(d, score_threshold, label_offset) for d in raw]
    return out


def evaluate_detection_model(
    model: nn.Module | DetectorPredictor, images: Sequence[np.ndarray], truths: Sequence[dict[str, np.ndarray]],
    class_names: Sequence[str], batch_size: int = 8, device: str | torch.device = "cpu", coco: bool = True,
) -> dict[str, Any]:
    """Detect every image (every score), then VOC mAP@0.5 and COCO mAP@[.5:.95] against `truths` (boxes,
    class indices). `model`: a bare detector or a predictor.

    Returns the `evaluate_detection` dict plus `preds` and `ms_per_image` (model time only, at `batch_size`).
    """
    t0 = time.perf_counter()
    if isinstance(model, DetectorPredictor):
        preds = model.replace(score_threshold=0.0, batch_size=batch_size).predict(images)
    else:
        preds = detect_images(model, images, batch_size, 0.0, device)
    ms = 1000.0 * (time.perf_counter() - t0) / max(len(images), 1)
    result = evaluate_detection(preds, list(truths), num_classes=len(class_names), coco=coco)
    result.update(preds=preds, ms_per_image=ms, n_images=len(images), batch_size=batch_size)
    return result


def detection_summary(result: dict[str, Any], class_names: Sequence[str]) -> dict[str, Any]:
    """The JSON record of an evaluation (metrics.json, `steelscan evaluate --json`); NaN (no truth) -> null."""
    names = list(class_names)
    out = {
        "task": "detection",
        "map50": result["map50"],
        "map50_95": result.get("map50_95"),
        "map75": result.get("map75"),
        "per_class_ap50": dict(zip(names, result["ap50_per_class"])),
        "per_class_ap50_95": dict(zip(names, result["ap50_95_per_class"])) if "ap50_95_per_class" in result else None,
        "n_truth_per_class": dict(zip(names, result["n_truth_per_class"])),
        "n_images": result["n_images"],
        "ms_per_image": result["ms_per_image"],
        "batch_size": result["batch_size"],
        "threads": torch.get_num_threads(),
        "class_names": names,
    }
    return to_jsonable(out)
