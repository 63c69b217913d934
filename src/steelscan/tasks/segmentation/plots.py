"""Pictures of a segmenter: training curves, and masks drawn over strips (PNG).

Overlays: each class has one colour; predicted masks are filled half-transparent, true masks (when given)
are outlined in the same colour, so misses show as outlines with no fill.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from steelscan.plots import class_colour, to_bgr  # noqa: E402

def overlay(image: np.ndarray, pred: np.ndarray | None = None, truth: np.ndarray | None = None) -> np.ndarray:
    """uint8 [H, W] grey (or [H, W, 3] RGB) + masks [K, H, W] -> uint8 [H, W, 3] BGR."""
    out = to_bgr(image)
    if pred is not None:
        fill = out.copy()
        for k in range(pred.shape[0]):
            fill[pred[k] > 0] = class_colour(k)
        out = cv2.addWeighted(out, 0.55, fill, 0.45, 0)
    if truth is not None:
        for k in range(truth.shape[0]):
            colour = class_colour(k)
            contours, _ = cv2.findContours((truth[k] > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, colour, 2)
    return out


def legend_bar(width: int, class_names: list[str]) -> np.ndarray:
    bar = np.full((22, width, 3), 255, np.uint8)
    x = 6
    for k, name in enumerate(class_names):
        cv2.rectangle(bar, (x, 5), (x + 12, 17), class_colour(k), -1)
        label = f"class {name}" if name.isdigit() else name
        cv2.putText(bar, label, (x + 16, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x += 30 + 9 * len(label)
    cv2.putText(bar, "fill: predicted, outline: truth", (x + 10, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    return bar


def save_overlay_grid(model, meta: dict, samples: list, out: Path, n: int = 6, device="cpu") -> None:
    """Up to `n` validation strips (defective ones first) with predicted fills and true outlines."""
    from steelscan.deploy.predictors import SegmenterPredictor
    from steelscan.tasks.segmentation.evaluate import segment_masks

    chosen = sorted(samples, key=lambda s: (not s.mask.any(), s.image_id))[:n]
    if not chosen:
        return
    predictor = SegmenterPredictor.from_module(model, meta, device)
    masks = segment_masks(predictor, [s.image for s in chosen])
    rows = [overlay(s.image, m, s.mask) for s, m in zip(chosen, masks)]
    names = list(predictor.class_names)
    cv2.imwrite(str(out), np.concatenate([legend_bar(rows[0].shape[1], names), *rows]))


def plot_segmentation_history(history: list[dict], out: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    a.set_xlabel("epoch"); a.set_ylabel("loss"); a.legend(); a.grid(alpha=0.3)  # noqa: E702
    b.plot(epochs, [h["val_dice_kaggle"] for h in history], "o-", label="val Kaggle Dice")
    for name in history[-1]["val_per_class_dice"] if history else ():
        b.plot(epochs, [h["val_per_class_dice"][name] for h in history], ".--", label=name, alpha=0.7)
    b.set_xlabel("epoch"); b.set_ylabel("Dice"); b.legend(fontsize=8); b.grid(alpha=0.3)  # noqa: E702
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
