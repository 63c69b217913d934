"""Classifiers: images resized to the meta's input size -> class probabilities, with flip TTA."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from steelscan.core.meta import ModelMeta
from steelscan.deploy.predictors.base import Predictor, normalise


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class ClassifierPredictor(Predictor):
    """Images -> class probabilities float32 [N, K] (K = len(meta.class_names), in the meta's order)."""

    task = "classification"
    default_batch_size = 64
    options = ("batch_size", "tta")

    def __init__(self, meta: ModelMeta | dict, backend: Any, tta: bool | None = None,
                 batch_size: int | None = None) -> None:
        super().__init__(meta, backend, batch_size)
        self.tta = self.meta.tta if tta is None else bool(tta)

    def pre_process(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """-> float32 [N, in_chans, H, W], resized to meta.input_size (INTER_AREA) and normalised."""
        h, w = self.meta.input_size
        batch = [im if im.shape[:2] == (h, w) else cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA)
                 for im in self.check_images(images)]
        return normalise(np.stack(batch), self.meta.mean, self.meta.std)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """-> logits [N, K]; with TTA the mean of the logits for none, hflip and vflip."""
        logits = self.backend(x)[0]
        if self.tta:
            logits = (logits + self.backend(x[..., ::-1])[0] + self.backend(x[..., ::-1, :])[0]) / 3.0
        return logits

    def post_process(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits)

    def _join(self, parts: list) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros((0, self.meta.num_classes), np.float32)
