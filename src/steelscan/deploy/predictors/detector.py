"""Detectors: images of any size -> kept detections. The steps are public for detection evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from steelscan.core.meta import ModelMeta
from steelscan.deploy.predictors.base import Predictor, group_by_shape

DEFAULT_SCORE_THRESHOLD = 0.3  # detections shown when the meta names no threshold


def detector_inputs(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """uint8 [H, W] / [H, W, C] -> float32 [C, H, W] in [0, 1]; detectors normalise and resize themselves."""
    out = []
    for im in images:
        x = im.astype(np.float32) / np.float32(255.0)
        out.append(x[None] if x.ndim == 2 else np.ascontiguousarray(x.transpose(2, 0, 1)))
    return out


@torch.inference_mode()
def run_detector(model: nn.Module, inputs: Sequence[np.ndarray], device: str | torch.device = "cpu",
                 ) -> list[dict[str, np.ndarray]]:
    """A torchvision-style detector on float32 [C, H, W] inputs -> its raw detections (model labels) as numpy.

    Images of one size share a model call; sizes never mix in one: torchvision zero-pads a batch to its largest
    image, which would make an image's detections depend on the others in its batch."""
    out: list = [None] * len(inputs)
    for idx in group_by_shape([x.transpose(1, 2, 0) for x in inputs]).values():
        found = model([torch.from_numpy(inputs[i]).to(device) for i in idx])
        for i, d in zip(idx, found):
            out[i] = {"boxes": d["boxes"].float().cpu().numpy().reshape(-1, 4), "scores": d["scores"].float().cpu().numpy(),
                      "labels": d["labels"].cpu().numpy().astype(np.int64)}
    return out


def keep_detections(d: dict[str, np.ndarray], score_threshold: float, label_offset: int,
                    num_classes: int | None = None) -> dict[str, np.ndarray]:
    """Detections scoring >= score_threshold, labels shifted to class indices 0..K-1 (others dropped)."""
    labels = np.asarray(d["labels"], np.int64) - label_offset
    scores = np.asarray(d["scores"], np.float32)
    keep = scores >= score_threshold
    if num_classes is not None:
        keep &= (labels >= 0) & (labels < num_classes)
    return {"boxes": np.asarray(d["boxes"], np.float32).reshape(-1, 4)[keep], "scores": scores[keep],
            "labels": labels[keep]}


class DetectorPredictor(Predictor):
    """Images of any size -> per image {"boxes", "scores", "labels"} (class indices 0..K-1), scores >= the
    threshold (default meta.score_threshold, else 0.3). The ONNX graph takes one image per call."""

    task = "detection"
    default_batch_size = 8
    options = ("batch_size", "score_threshold")

    def __init__(self, meta: ModelMeta | dict, backend: Any, score_threshold: float | None = None,
                 batch_size: int | None = None) -> None:
        super().__init__(meta, backend, batch_size)
        if score_threshold is None:
            score_threshold = self.meta.score_threshold
        self.score_threshold = float(DEFAULT_SCORE_THRESHOLD if score_threshold is None else score_threshold)

    def pre_process(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """-> float32 [in_chans, H, W] in [0, 1] per image (the model normalises and resizes itself)."""
        return detector_inputs(self.check_images(images))

    def forward(self, x: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """-> per image the model's detections (model labels, every score it keeps)."""
        if self.backend.kind == "torch":
            return run_detector(self.backend.model, x, self.backend.device)
        out = []
        for image in x:  # the graph takes one image [C, H, W] of any size
            boxes, labels, scores = self.backend(image)
            out.append({"boxes": boxes.reshape(-1, 4), "scores": scores, "labels": labels.astype(np.int64)})
        return out

    def post_process(self, out: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return [keep_detections(d, self.score_threshold, self.meta.label_offset, self.meta.num_classes) for d in out]
