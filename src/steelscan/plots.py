"""Plots a person would rather see than read: training curves and the confusion matrix (PNG, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def to_bgr(image: np.ndarray) -> np.ndarray:
    """A grey [H, W] or RGB [H, W, 3] uint8 image as BGR for OpenCV drawing."""
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR)


# BGR; the first four are the Severstal classes' colours of earlier reports. Beyond the table: hue by golden ratio.
_COLOURS = ((60, 60, 255), (60, 200, 60), (255, 140, 40), (40, 220, 255), (200, 60, 200), (200, 200, 40),
            (40, 120, 200), (140, 40, 255), (120, 255, 160), (255, 80, 160))


def class_colour(k: int) -> tuple[int, int, int]:
    """A stable BGR colour for class index k, the same in every plot, report and overlay."""
    if k < len(_COLOURS):
        return _COLOURS[k]
    hue = int((k * 0.618033988749895 % 1.0) * 179)
    b, g, r = cv2.cvtColor(np.uint8([[[hue, 200, 230]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def plot_curves(history: list[dict], out: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    a.plot(epochs, [h["val_loss"] for h in history], "s-", label="val loss")
    a.set_xlabel("epoch"); a.set_ylabel("loss"); a.legend(); a.grid(alpha=0.3)  # noqa: E702
    b.plot(epochs, [100 * h["val_accuracy"] for h in history], "o-", label="val accuracy")
    b.plot(epochs, [100 * h["val_macro_f1"] for h in history], "s-", label="val macro-F1")
    b.set_xlabel("epoch"); b.set_ylabel("%"); b.legend(); b.grid(alpha=0.3)  # noqa: E702
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_confusion(matrix: Sequence[Sequence[int]], names: Sequence[str], out: Path, title: str = "") -> None:
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2.5, 1.0 * len(names) + 2))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted"); ax.set_ylabel("true"); ax.set_title(title)  # noqa: E702
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
