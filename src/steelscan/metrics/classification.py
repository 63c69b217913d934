"""Single-label classification metrics (scikit-learn underneath), as plain Python for metrics.json.

Shape convention: y_true and y_pred are 1-D [N] integer class indices in [0, K) (numpy, torch or
lists). Pass predicted labels, e.g. logits.argmax(1), not scores. K comes from `num_classes`, else
from `class_names`, else from the largest label seen + 1.

Per-class precision (recall) of a class never predicted (never present) is 0, not undefined
(scikit-learn's zero_division=0), and macro averages run over all K classes, so a class missing
from a small test set lowers macro-F1; that is deliberate: it should be visible.
The confusion matrix has truth on rows and prediction on columns: cm[i][j] = #(true i, predicted j).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support

from steelscan.core.errors import SteelscanError
from steelscan.metrics._common import to_numpy

__all__ = ["accuracy", "macro_f1", "confusion_matrix", "classification_metrics"]


def _labels(y_true: Any, y_pred: Any, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    t, p = to_numpy(y_true, "y_true"), to_numpy(y_pred, "y_pred")
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.ndim != 1:
            raise SteelscanError(f"{name} must be 1-D class indices [N] (use scores.argmax(1)), got shape {a.shape}")
        whole_floats = a.dtype.kind == "f" and bool(np.all(np.mod(a, 1) == 0))
        if a.dtype.kind not in "iu" and not whole_floats:
            raise SteelscanError(f"{name} must hold integer class indices, got dtype {a.dtype}")
    if t.shape != p.shape:
        raise SteelscanError(f"y_true and y_pred must have the same length, got {t.shape[0]} and {p.shape[0]}")
    if t.size == 0:
        raise SteelscanError("y_true and y_pred must hold at least one sample, got 0")
    t, p = t.astype(np.int64), p.astype(np.int64)
    seen_max = int(max(t.max(), p.max()))
    k = num_classes if num_classes is not None else seen_max + 1
    if k < 1:
        raise SteelscanError(f"num_classes must be >= 1, got {k}")
    lo = int(min(t.min(), p.min()))
    if lo < 0 or seen_max >= k:
        raise SteelscanError(f"class indices must be in [0, {k}), got values in [{lo}, {seen_max}]")
    return t, p, k


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of samples whose predicted label equals the true one."""
    t, p, _ = _labels(y_true, y_pred, None)
    return float(np.mean(t == p))


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """int64 [K, K], truth on rows, prediction on columns."""
    t, p, k = _labels(y_true, y_pred, num_classes)
    return _sk_confusion_matrix(t, p, labels=np.arange(k)).astype(np.int64)


def macro_f1(y_true: Any, y_pred: Any, num_classes: int | None = None) -> float:
    """Unweighted mean of the K per-class F1 scores."""
    t, p, k = _labels(y_true, y_pred, num_classes)
    _, _, f1, _ = precision_recall_fscore_support(t, p, labels=np.arange(k), zero_division=0)
    return float(np.mean(f1))


def classification_metrics(
    y_true: Any,
    y_pred: Any,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every classification metric as a plain dict of floats/ints/lists (ready for json.dump).

    Keys: n, accuracy, macro_precision, macro_recall, macro_f1, class_names, per_class
    ({name: {precision, recall, f1, support}}), confusion_matrix (nested lists, truth x prediction).
    """
    if class_names is not None:
        if num_classes is not None and num_classes != len(class_names):
            raise SteelscanError(f"class_names must have num_classes={num_classes} entries, got {len(class_names)}")
        num_classes = len(class_names)
    t, p, k = _labels(y_true, y_pred, num_classes)
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(k)]
    if len(set(names)) != len(names):
        raise SteelscanError(f"class_names must be unique, got {names}")
    prec, rec, f1, support = precision_recall_fscore_support(t, p, labels=np.arange(k), zero_division=0)
    cm = _sk_confusion_matrix(t, p, labels=np.arange(k))
    return {
        "n": int(t.size),
        "accuracy": float(np.mean(t == p)),
        "macro_precision": float(np.mean(prec)),
        "macro_recall": float(np.mean(rec)),
        "macro_f1": float(np.mean(f1)),
        "class_names": names,
        "per_class": {
            name: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(names)
        },
        "confusion_matrix": cm.astype(int).tolist(),
    }
