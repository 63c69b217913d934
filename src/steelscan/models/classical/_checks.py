"""Input checks shared by the classical classifiers: bad input raises SteelscanError."""

from __future__ import annotations

import numpy as np

from steelscan.core.errors import SteelscanError


def check_X(X: object, n_features: int | None = None) -> np.ndarray:
    """``X`` as a finite float64 ``(n_samples, n_features)`` array, or a SteelscanError saying what is wrong."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SteelscanError(f"expected X as a numeric (n_samples, n_features) array: {exc}") from None
    if arr.ndim != 2:
        raise SteelscanError(f"expected X as a 2-D (n_samples, n_features) array, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise SteelscanError("expected at least one sample in X, got 0 rows")
    if n_features is not None and arr.shape[1] != n_features:
        raise SteelscanError(f"expected X with {n_features} features (as in fit), got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        raise SteelscanError(f"expected finite X, got {int((~np.isfinite(arr)).sum())} NaN/inf entries")
    return arr


def check_Xy(X: object, y: object) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``X`` and ``y`` (1-D, same length, at least two classes)."""
    arr = check_X(X)
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise SteelscanError(f"expected y as a 1-D array of labels, got shape {labels.shape}")
    if len(labels) != len(arr):
        raise SteelscanError(f"expected as many labels as samples: X has {len(arr)} rows, y has {len(labels)}")
    if len(np.unique(labels)) < 2:
        raise SteelscanError(f"expected at least 2 classes in y, got {np.unique(labels).tolist()}")
    return arr, labels


def check_fitted(model: object, attribute: str = "classes_") -> None:
    if not hasattr(model, attribute):
        raise SteelscanError(f"{type(model).__name__} is not fitted: call fit(X, y) before predicting")
