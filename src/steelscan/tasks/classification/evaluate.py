"""Evaluation: `predict` (with optional flip TTA) and `evaluate` as plain functions.

Classifier inputs are [N, 1, S, S]; `predict` returns probabilities [N, K].
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from steelscan.metrics import classification_metrics


VIEWS = ("original", "hflip", "vflip", "tta")  # Table 5 of Wang 2021: each flip alone, then their mean


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, tta: bool = False, view: str = "original") -> torch.Tensor:
    """Logits; with TTA (or view "tta") the mean of the logits for none, hflip and vflip; view "hflip" /
    "vflip": of the flipped image alone."""
    if tta or view == "tta":
        return (model(x) + model(x.flip(-1)) + model(x.flip(-2))) / 3.0
    if view == "hflip":
        return model(x.flip(-1))
    if view == "vflip":
        return model(x.flip(-2))
    return model(x)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), dim=1)


@torch.inference_mode()
def evaluate(
    model: nn.Module, loader: DataLoader, device: str | torch.device = "cpu", tta: bool = False,
    loss_fn: nn.Module | None = None, class_names: Sequence[str] | None = None, view: str = "original",
) -> dict[str, Any]:
    """Run `model` over `loader` of (x, y); return classification metrics, mean loss and timing. `view`: see
    `predict_logits`."""
    model.eval()
    ys, preds, probs, total, n = [], [], [], 0.0, 0
    t0 = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = predict_logits(model, x, tta, view)
        if loss_fn is not None:
            total += float(loss_fn(logits.float(), y)) * len(y)
        p = probabilities(logits)
        probs.append(p.cpu()); preds.append(p.argmax(1).cpu()); ys.append(y.cpu())  # noqa: E702
        n += len(y)
    seconds = time.perf_counter() - t0
    y_true, y_pred = torch.cat(ys), torch.cat(preds)
    k = len(class_names) if class_names is not None else int(torch.cat(probs).shape[1])
    out = classification_metrics(y_true.numpy(), y_pred.numpy(), num_classes=k, class_names=class_names)
    out["loss"] = total / max(n, 1) if loss_fn is not None else None
    out["ms_per_image"] = 1000.0 * seconds / max(n, 1)
    out["probabilities"] = torch.cat(probs)
    return out
