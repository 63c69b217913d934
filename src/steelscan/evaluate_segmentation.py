"""Segmenters on whole images: probabilities, final masks, and the Kaggle Dice beside its all-empty baseline.

Images are uint8 [H, W]; the model sees them normalised, reflect-padded to multiples of 32 and cropped back.
Probabilities come back float16 [N, 4, H, W] (half the memory of a validation set; the tuner needs them all).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from steelscan.data.classes import SEVERSTAL_CLASSES
from steelscan.metrics.segmentation import SegmentationMeter
from steelscan.postprocess import PostProcess, binarize, ensemble_mean, predict_tta


def _batch_tensor(images: list[np.ndarray], mean: float, std: float, device) -> tuple[torch.Tensor, tuple[int, int]]:
    x = torch.from_numpy(np.stack(images)).to(device).float().div_(255.0).sub_(mean).div_(std).unsqueeze(1)
    h, w = x.shape[-2:]
    ph, pw = -h % 32, -w % 32
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    return x, (h, w)


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, images: list[np.ndarray], mean: float, std: float, tta: bool = False,
                          batch_size: int = 4, device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(mask probabilities float16 [N, 4, H, W], presence probabilities float32 [N, 4]); equal-size images."""
    model.eval()
    probs, presence = [], []
    for i in range(0, len(images), batch_size):
        x, (h, w) = _batch_tensor(images[i : i + batch_size], mean, std, device)
        m, p = predict_tta(model, x, tta)
        probs.append(m[..., :h, :w].cpu().numpy().astype(np.float16))
        presence.append(p.cpu().numpy())
    return np.concatenate(probs), np.concatenate(presence)


def segment_images(model: torch.nn.Module, meta: dict, images: list[np.ndarray], batch_size: int = 4,
                   device: str | torch.device = "cpu", ensemble: Sequence[tuple[torch.nn.Module, dict]] = (),
                   ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Final uint8 masks [4, H, W] per image by the checkpoint's saved post-processing; also the presence.

    `ensemble`: more (model, meta) pairs whose probabilities are mean-averaged with the first model's (each
    with its own normalisation); the first model's post-processing then applies.
    """
    pp = PostProcess.from_dict(meta["postprocess"])
    members = [predict_probabilities(m, images, mt["mean"], mt["std"], pp.tta, batch_size, device)
               for m, mt in [(model, meta), *ensemble]]
    probs = members[0][0] if len(members) == 1 else ensemble_mean([m[0] for m in members])
    presence = members[0][1] if len(members) == 1 else ensemble_mean([m[1] for m in members])
    return [binarize(p, pp, q) for p, q in zip(probs, presence)], probs, presence


def dice_report(masks: list[np.ndarray] | np.ndarray, truths: list[np.ndarray] | np.ndarray) -> dict:
    """Kaggle Dice, per class, and the all-empty baseline (predict nothing) on the same images.

    The baseline belongs beside every Kaggle Dice: empty/empty pairs score 1, so predicting nothing scores
    the share of empty pairs.
    """
    meter, empty = SegmentationMeter(), SegmentationMeter()
    for m, t in zip(masks, truths):
        meter.update(m[None], t[None])
        empty.update(np.zeros_like(t)[None], t[None])
    r, e = meter.compute(), empty.compute()
    names = list(SEVERSTAL_CLASSES)
    return {"dice_kaggle": r["dice"], "per_class_dice": dict(zip(names, r["dice_per_class"])),
            "all_empty_dice": e["dice"], "all_empty_per_class_dice": dict(zip(names, e["dice_per_class"])),
            "iou": r["iou"], "pooled_dice_per_class": dict(zip(names, r["pooled_dice_per_class"])),
            "n_images": r["n_images"]}


def evaluate_segmentation_model(model: torch.nn.Module, meta: dict, images: list[np.ndarray],
                                truths: list[np.ndarray], sources: list[str] | None = None, batch_size: int = 4,
                                device: str | torch.device = "cpu") -> dict:
    """Everything `steelscan evaluate` reports for a segmenter: the Dice report (overall and per source,
    e.g. real vs synthetic), ms/image of the whole path (model, TTA, post-processing)."""
    t0 = time.perf_counter()
    masks, _, _ = segment_images(model, meta, images, batch_size, device)
    ms = 1000 * (time.perf_counter() - t0) / max(len(images), 1)
    out = {"task": "segmentation", **dice_report(masks, truths), "ms_per_image": ms,
           "threads": torch.get_num_threads(), "postprocess": meta["postprocess"]}
    if sources and len(set(sources)) > 1:
        out["by_source"] = {s: dice_report([m for m, q in zip(masks, sources) if q == s],
                                           [t for t, q in zip(truths, sources) if q == s]) for s in sorted(set(sources))}
    return out

