"""Detection pictures: boxes drawn on images (OpenCV), PR curves per class and training history (matplotlib, Agg).

Detections and truths are the dicts of `steelscan.tasks.detection.evaluate` (boxes [D, 4] xyxy pixels, labels as
NEU_CLASSES indices, scores [D]).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from steelscan.plots import to_bgr  # noqa: E402

# BGR, one per NEU class; truth boxes are drawn in white.
PALETTE = [(0, 0, 255), (0, 165, 255), (0, 200, 0), (255, 128, 0), (255, 0, 200), (0, 220, 220)]


def draw_detections(image: np.ndarray, det: dict, class_names: Sequence[str], score_threshold: float = 0.0,
                    truth: dict | None = None, scale: int = 2) -> np.ndarray:
    """A BGR uint8 picture of a uint8 [H, W] (grey) or [H, W, 3] (RGB) image, `scale` times larger so labels stay legible:
    truth boxes thin white, detections >= score_threshold coloured by class with 'class score'."""
    canvas = to_bgr(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST))
    if truth is not None:
        for b in np.asarray(truth["boxes"]).reshape(-1, 4):
            x1, y1, x2, y2 = (int(round(v * scale)) for v in b)
            cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), (255, 255, 255), 1)
    for b, s, lab in zip(np.asarray(det["boxes"]).reshape(-1, 4), det["scores"], det["labels"]):
        if s < score_threshold:
            continue
        colour = PALETTE[int(lab) % len(PALETTE)]
        x1, y1, x2, y2 = (int(round(v * scale)) for v in b)
        cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), colour, 2)
        text = f"{class_names[int(lab)]} {s:.2f}"
        cv2.putText(canvas, text, (x1 + 2, max(12, y1 + 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    return canvas


def save_detection_grid(images: Sequence[np.ndarray], dets: Sequence[dict], truths: Sequence[dict] | None,
                        class_names: Sequence[str], out: Path, score_threshold: float, cols: int = 4) -> None:
    """Sample detections on a grid of images, one PNG (truth white, detections coloured)."""
    tiles = [draw_detections(im, d, class_names, score_threshold, truths[i] if truths else None)
             for i, (im, d) in enumerate(zip(images, dets))]
    if not tiles:
        return
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    cols = min(cols, len(tiles))
    rows = -(-len(tiles) // cols)
    grid = np.zeros((rows * h, cols * w, 3), np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[r * h : r * h + t.shape[0], c * w : c * w + t.shape[1]] = t
    cv2.imwrite(str(out), grid)


def plot_pr_curves(pr_curves: Sequence[dict], ap50: Sequence[float], class_names: Sequence[str], out: Path,
                   title: str = "") -> None:
    """One precision-recall panel per class (VOC, IoU 0.5), its AP in the panel title."""
    n = len(class_names)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.0 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        c = pr_curves[k]
        recall, precision = np.asarray(c["recall"], float), np.asarray(c["precision"], float)
        if recall.size and np.isfinite(recall).all():
            envelope = np.maximum.accumulate(precision[::-1])[::-1]
            ax.plot(recall, precision, color="0.7", lw=1, label="raw")
            ax.plot(recall, envelope, color="C0", lw=2, label="envelope")
        ap = ap50[k]
        ax.set_title(f"{class_names[k]}: AP50 {'n/a' if ap is None or not np.isfinite(ap) else f'{ap:.3f}'}", fontsize=9)
        ax.set_xlim(0, 1); ax.set_ylim(0, 1.02); ax.grid(alpha=0.3)  # noqa: E702
        ax.set_xlabel("recall", fontsize=8); ax.set_ylabel("precision", fontsize=8)  # noqa: E702
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_detection_history(history: list[dict], out: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss (sum of 4)")
    a.set_xlabel("epoch"); a.set_ylabel("loss"); a.legend(); a.grid(alpha=0.3)  # noqa: E702
    b.plot(epochs, [h["val_map50"] for h in history], "o-", label="val mAP@0.5")
    b.set_xlabel("epoch"); b.set_ylim(0, 1); b.legend(); b.grid(alpha=0.3)  # noqa: E702
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
