"""Detection inference and evaluation as plain functions: `detect_images`, `evaluate_detection_model`.

Images in: grey uint8 [H, W], any size (the model resizes them itself). Detections out, one dict per image
of numpy arrays: boxes float32 [D, 4] xyxy in pixels of the input image, scores float32 [D], labels int64
[D] as NEU_CLASSES indices (the model's label minus LABEL_OFFSET), sorted by descending score.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from steelscan.metrics import evaluate_detection, to_jsonable
from steelscan.models.detector import LABEL_OFFSET


def to_inputs(images: Sequence[np.ndarray], device: str | torch.device = "cpu") -> list[torch.Tensor]:
    """uint8 [H, W] -> float32 [1, H, W] in [0, 1]; normalisation is the model's own."""
    return [torch.from_numpy(np.ascontiguousarray(im)).to(device).float().div_(255.0).unsqueeze(0) for im in images]


@torch.inference_mode()
def detect_images(model: nn.Module, images: Sequence[np.ndarray], batch_size: int = 8, score_threshold: float = 0.0,
                  device: str | torch.device = "cpu") -> list[dict[str, np.ndarray]]:
    """Run a detector over images; keep detections scoring >= score_threshold."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        for d in model(to_inputs(images[i : i + batch_size], device)):
            keep = d["scores"] >= score_threshold
            out.append({"boxes": d["boxes"][keep].float().cpu().numpy(), "scores": d["scores"][keep].float().cpu().numpy(),
                        "labels": (d["labels"][keep] - LABEL_OFFSET).cpu().numpy().astype(np.int64)})
    return out


def evaluate_detection_model(
    model: nn.Module, images: Sequence[np.ndarray], truths: Sequence[dict[str, np.ndarray]], class_names: Sequence[str],
    batch_size: int = 8, device: str | torch.device = "cpu", coco: bool = True,
) -> dict[str, Any]:
    """Detect every image, then VOC mAP@0.5 and COCO mAP@[.5:.95] against `truths` (boxes, NEU labels).

    Returns the `evaluate_detection` dict plus `preds` and `ms_per_image` (model time only, at `batch_size`).
    """
    t0 = time.perf_counter()
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
