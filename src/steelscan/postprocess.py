"""Segmentation post-processing: gates, pixel thresholds, minimum areas, small components, TTA, ensembles.

Shapes: probabilities float [N, C, H, W] (or [C, H, W] for one image) in [0, 1]; presence probabilities
[N, C] (or [C]); masks uint8 of {0, 1} with the probabilities' shape. C = 4 Severstal classes. The order of
operations is the 1st-place one: gate -> threshold -> remove small components (never fewer than
MIN_COMPONENT_FLOOR px) -> drop a class mask whose total area is below its minimum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch

from steelscan.core.errors import SteelscanError

GATES = ("none", "hard", "soft")
# px: components below this are always removed, whatever `min_component` says: a threshold leaves specks of
# 1-4 px on clean steel (a Kaggle submission of a clean strip with over a thousand such runs), and the station
# drops pieces below the same floor, so `segment`, `evaluate` and `inspect` agree.
MIN_COMPONENT_FLOOR = 10


@dataclass(frozen=True)
class PostProcess:
    """Everything between the model's probabilities and the final masks; saved in the checkpoint's meta."""

    threshold: tuple[float, ...] = (0.5, 0.5, 0.5, 0.5)
    min_area: tuple[int, ...] = (600, 600, 900, 2000)
    min_component: int = 0
    gate: str = "none"
    gate_threshold: tuple[float, ...] = (0.5, 0.5, 0.5, 0.5)
    tta: bool = False
    tuned: dict = field(default_factory=dict)  # what `steelscan tune` measured, when it set these values

    def __post_init__(self) -> None:
        if self.gate not in GATES:
            raise SteelscanError(f"gate must be one of {', '.join(GATES)}, got {self.gate!r}")
        n = len(self.threshold)
        if len(self.min_area) != n or len(self.gate_threshold) != n:
            raise SteelscanError(f"threshold, min_area and gate_threshold need one value per class ({n}), got "
                                 f"{len(self.min_area)} and {len(self.gate_threshold)}")

    def as_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> PostProcess:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise SteelscanError(f"unknown post-processing keys {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def apply_gate(probs: np.ndarray, presence: np.ndarray, gate: str, gate_threshold: Sequence[float]) -> np.ndarray:
    """hard: zero a class map whose presence probability is below its threshold; soft: multiply by it."""
    if gate == "none":
        return probs
    p = np.asarray(presence, dtype=np.float32)[..., None, None]
    if gate == "soft":
        return probs * p
    if gate == "hard":
        keep = p >= np.asarray(gate_threshold, dtype=np.float32)[:, None, None]
        return probs * keep
    raise SteelscanError(f"gate must be one of {', '.join(GATES)}, got {gate!r}")


def remove_small_components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """Zero the 8-connected components of a binary [H, W] mask with fewer than `min_size` pixels."""
    if min_size <= 1 or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_size
    keep[0] = False  # the background
    return keep[labels].astype(np.uint8)


def binarize(probs: np.ndarray, pp: PostProcess, presence: np.ndarray | None = None) -> np.ndarray:
    """Probabilities [C, H, W] (+ presence [C]) -> final uint8 masks [C, H, W] by `pp` (TTA happens earlier)."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3 or probs.shape[0] != len(pp.threshold):
        raise SteelscanError(f"expected probabilities [{len(pp.threshold)}, H, W], got shape {probs.shape}")
    if pp.gate != "none":
        if presence is None:
            raise SteelscanError(f"gate {pp.gate!r} needs the presence probabilities")
        probs = apply_gate(probs, presence, pp.gate, pp.gate_threshold)
    out = np.zeros(probs.shape, dtype=np.uint8)
    for k in range(probs.shape[0]):
        m = remove_small_components(probs[k] > pp.threshold[k], max(pp.min_component, MIN_COMPONENT_FLOOR))
        if int(m.sum()) >= pp.min_area[k]:
            out[k] = m
    return out


@torch.no_grad()
def predict_tta(model: torch.nn.Module, x: torch.Tensor, tta: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask probabilities [N, C, H, W], presence probabilities [N, C]); with `tta` the mean over none,
    hflip and vflip, each flipped back. Means are of probabilities, not logits."""
    masks, presence = model(x)
    masks, presence = masks.sigmoid(), presence.sigmoid()
    if not tta:
        return masks, presence
    for dim in (3, 2):
        m, p = model(x.flip(dim))
        masks = masks + m.sigmoid().flip(dim)
        presence = presence + p.sigmoid()
    return masks / 3, presence / 3


def ensemble_mean(predictions: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of several models' probabilities. Mean, not RMS: RMS averaging overfit Kaggle's public
    leaderboard in 2019."""
    if not predictions:
        raise SteelscanError("ensemble_mean needs at least one prediction")
    shapes = {np.shape(p) for p in predictions}
    if len(shapes) != 1:
        raise SteelscanError(f"ensemble members disagree on shape: {sorted(shapes)}")
    return np.mean(np.stack([np.asarray(p, dtype=np.float32) for p in predictions]), axis=0)
