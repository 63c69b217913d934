"""Segmentation metrics: the Kaggle Severstal Dice, per-class Dice and IoU, and a batch accumulator.

Shape convention: predicted and true masks are [N, K, H, W] (N images, K classes), numpy arrays or
torch tensors (any device). A pixel is positive where the mask is > 0.5 (bool masks are used as they
are), so {0, 1} and {0, 255} masks both work; threshold probabilities yourself before calling.

The Kaggle rule: the score is the mean Dice over every (image, class) pair, where a pair whose truth
and prediction are both empty scores 1, and an empty vs non-empty pair scores 0. Most pairs in
Severstal are empty/empty, so this rule dominates the score. torchmetrics' Dice drops (or zeroes)
empty pairs instead of scoring them 1, so it gets this metric wrong; we do not use it here.

Everything reduces masks to three integer counts per pair (intersection, |pred|, |truth|), so the
accumulator keeps O(N * K) numbers, never the masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from steelscan.core.errors import SteelscanError
from steelscan.metrics._common import to_numpy

__all__ = [
    "pair_counts",
    "dice_per_pair",
    "iou_per_pair",
    "severstal_dice",
    "dice_per_class",
    "iou_per_class",
    "SegmentationMeter",
]

Mask = np.ndarray | torch.Tensor


def _check(pred: Any, truth: Any) -> None:
    for name, m in (("pred", pred), ("truth", truth)):
        if not isinstance(m, (np.ndarray, torch.Tensor)):
            raise SteelscanError(f"{name} must be a numpy array or torch tensor [N, K, H, W], got {type(m).__name__}")
        if m.ndim != 4:
            raise SteelscanError(f"{name} must be [N, K, H, W] (4 dims), got shape {tuple(m.shape)}")
    if tuple(pred.shape) != tuple(truth.shape):
        shapes = f"{tuple(pred.shape)} and {tuple(truth.shape)}"
        raise SteelscanError(f"pred and truth must have the same shape [N, K, H, W], got {shapes}")


def _binary_torch(m: torch.Tensor) -> torch.Tensor:
    return m if m.dtype == torch.bool else m > 0.5


def _binary_numpy(m: np.ndarray) -> np.ndarray:
    return m if m.dtype == np.bool_ else m > 0.5


def _torch_counts(pred: torch.Tensor, truth: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count on the masks' own device (GPU): only [N, K] numbers cross to the host."""
    p, t = _binary_torch(pred), _binary_torch(truth.to(pred.device))
    counts = torch.stack([(p & t).sum(dim=(2, 3)), p.sum(dim=(2, 3)), t.sum(dim=(2, 3))])
    inter, psum, tsum = counts.cpu().numpy().astype(np.int64)
    return inter, psum, tsum


def pair_counts(pred: Mask, truth: Mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-(image, class) counts: intersection, predicted pixels, true pixels; each int64 [N, K]."""
    _check(pred, truth)
    if isinstance(pred, torch.Tensor) and isinstance(truth, torch.Tensor) and pred.device.type != "cpu":
        return _torch_counts(pred, truth)
    p, t = _binary_numpy(to_numpy(pred, "pred")), _binary_numpy(to_numpy(truth, "truth"))
    n, k = p.shape[:2]
    counts = np.empty((3, n * k), dtype=np.int64)
    # One row per (image, class) pair: whole-array count_nonzero is ~5x faster than count_nonzero(axis=-1)
    # (and ~100x faster than torch's bool sum on CPU) on 256x1600 masks; the loop is over pairs, not pixels.
    for j, (pr, tr) in enumerate(zip(p.reshape(n * k, -1), t.reshape(n * k, -1))):
        counts[:, j] = np.count_nonzero(pr & tr), np.count_nonzero(pr), np.count_nonzero(tr)
    inter, psum, tsum = counts.reshape(3, n, k)
    return inter, psum, tsum


def _dice_from_counts(inter: np.ndarray, psum: np.ndarray, tsum: np.ndarray) -> np.ndarray:
    denom = psum + tsum
    # empty/empty (denom 0) scores 1; the divide is guarded so no warning is raised.
    return np.where(denom == 0, 1.0, 2.0 * inter / np.maximum(denom, 1))


def _iou_from_counts(inter: np.ndarray, psum: np.ndarray, tsum: np.ndarray) -> np.ndarray:
    union = psum + tsum - inter
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def dice_per_pair(pred: Mask, truth: Mask) -> np.ndarray:
    """Dice of every (image, class) pair, float64 [N, K]; empty/empty = 1."""
    return _dice_from_counts(*pair_counts(pred, truth))


def iou_per_pair(pred: Mask, truth: Mask) -> np.ndarray:
    """IoU (Jaccard) of every (image, class) pair, float64 [N, K]; empty/empty = 1."""
    return _iou_from_counts(*pair_counts(pred, truth))


def severstal_dice(pred: Mask, truth: Mask) -> float:
    """The Kaggle Severstal score: mean Dice over all N * K pairs, empty/empty = 1."""
    return float(dice_per_pair(pred, truth).mean())


def dice_per_class(pred: Mask, truth: Mask) -> np.ndarray:
    """Per class, the mean over images of the pair Dice (Kaggle rule), float64 [K]."""
    return dice_per_pair(pred, truth).mean(axis=0)


def iou_per_class(pred: Mask, truth: Mask) -> np.ndarray:
    """Per class, the mean over images of the pair IoU (empty/empty = 1), float64 [K]."""
    return iou_per_pair(pred, truth).mean(axis=0)


class SegmentationMeter:
    """Accumulate per-pair counts batch by batch; `compute()` gives every segmentation metric at once.

    >>> meter = SegmentationMeter()
    >>> for pred, truth in batches: meter.update(pred, truth)   # [B, K, H, W] each
    >>> meter.compute()["dice"]                                  # Kaggle Severstal Dice
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._counts: list[np.ndarray] = []  # each [3, B, K]
        self._num_classes: int | None = None

    @property
    def n_images(self) -> int:
        return sum(c.shape[1] for c in self._counts)

    def update(self, pred: Mask, truth: Mask) -> None:
        counts = np.stack(pair_counts(pred, truth))
        k = counts.shape[2]
        if self._num_classes is None:
            self._num_classes = k
        elif k != self._num_classes:
            raise SteelscanError(f"every batch must have {self._num_classes} classes (dim 1), got {k}")
        self._counts.append(counts)

    def pair_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """(dice, iou) of every pair seen so far, each float64 [N, K] in update order."""
        inter, psum, tsum = self._all_counts()
        return _dice_from_counts(inter, psum, tsum), _iou_from_counts(inter, psum, tsum)

    def _all_counts(self) -> np.ndarray:
        if not self._counts:
            raise SteelscanError("SegmentationMeter has no data: call update(pred, truth) before compute()")
        return np.concatenate(self._counts, axis=1)

    def compute(self) -> dict[str, Any]:
        """Plain-Python results.

        dice / dice_per_class and iou / iou_per_class: means of pair scores (Kaggle rule).
        pooled_dice_per_class / pooled_iou_per_class: one ratio per class from counts summed over all
        images (the usual dataset-level mIoU); NaN for a class absent from both truth and prediction.
        """
        inter, psum, tsum = self._all_counts()
        dice, iou = _dice_from_counts(inter, psum, tsum), _iou_from_counts(inter, psum, tsum)
        i, p, t = inter.sum(0), psum.sum(0), tsum.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            pooled_dice = np.where(p + t > 0, 2.0 * i / (p + t), np.nan)
            pooled_iou = np.where(p + t - i > 0, i / (p + t - i), np.nan)
        return {
            "dice": float(dice.mean()),
            "dice_per_class": dice.mean(0).tolist(),
            "iou": float(iou.mean()),
            "iou_per_class": iou.mean(0).tolist(),
            "pooled_dice_per_class": pooled_dice.tolist(),
            "pooled_iou_per_class": pooled_iou.tolist(),
            "n_images": int(inter.shape[0]),
        }
