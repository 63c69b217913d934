"""The rule-based If-Then table of the seed's SDD history, implemented literally.

Training learns, for every class c and feature i, a range [alpha_ci, beta_ci] of the training values of
feature i in class c. A sample gets one vote for class c per feature inside that class's range
(``alpha_ci <= x_i <= beta_ci``, bounds included); the class with the most votes wins.

Range choice: ``percentiles=(0, 100)`` (default) is the literal algorithm, min/max of the training values.
``percentiles=(5, 95)`` is a robust variant: one outlier no longer widens a range to cover other classes.

Ties (several classes with the same, highest vote count) are resolved deterministically:
- ``tie_break="first"`` (default): the tied class that comes first in ``classes_`` (sorted labels).
- ``tie_break="distance"``: the tied class whose ranges the sample misses by least, the distance of each
  outside feature to its range summed in units of the range's width; still-equal classes go by "first".
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from steelscan.core.errors import SteelscanError
from steelscan.models.classical._checks import check_fitted, check_X, check_Xy

TIE_BREAKS = ("first", "distance")


class RuleTableClassifier(ClassifierMixin, BaseEstimator):
    """If-Then range table: ``alpha_``/``beta_`` are ``(n_classes, n_features)`` range bounds after fit."""

    def __init__(self, percentiles: tuple[float, float] = (0.0, 100.0), tie_break: str = "first") -> None:
        self.percentiles = percentiles
        self.tie_break = tie_break

    def _check_params(self) -> tuple[float, float]:
        try:
            lo, hi = (float(v) for v in self.percentiles)
        except (TypeError, ValueError):
            raise SteelscanError(f"expected percentiles as (low, high), got {self.percentiles!r}") from None
        if not 0.0 <= lo <= hi <= 100.0:
            raise SteelscanError(f"expected percentiles 0 <= low <= high <= 100, got {self.percentiles!r}")
        if self.tie_break not in TIE_BREAKS:
            raise SteelscanError(f"expected tie_break in {TIE_BREAKS}, got {self.tie_break!r}")
        return lo, hi

    def fit(self, X: np.ndarray, y: np.ndarray) -> "RuleTableClassifier":
        """Learn one range per (class, feature) from the training values."""
        lo, hi = self._check_params()
        X, y = check_Xy(X, y)
        self.classes_ = np.unique(y)
        rows = [X[y == c] for c in self.classes_]
        # method="linear": percentile 0/100 are exactly the min/max, so the default is the literal algorithm.
        self.alpha_ = np.stack([np.percentile(r, lo, axis=0) for r in rows])
        self.beta_ = np.stack([np.percentile(r, hi, axis=0) for r in rows])
        self.n_features_in_ = X.shape[1]
        return self

    def votes(self, X: np.ndarray) -> np.ndarray:
        """``(n_samples, n_classes)`` int: for each class, how many features fall inside its range."""
        check_fitted(self)
        X = check_X(X, self.n_features_in_)
        inside = (X[:, None, :] >= self.alpha_[None]) & (X[:, None, :] <= self.beta_[None])
        return inside.sum(axis=2)

    def _miss_distance(self, X: np.ndarray) -> np.ndarray:
        # How far each sample lies outside each class's ranges, in units of the range width (0 when inside).
        width = self.beta_ - self.alpha_
        width = np.where(width > 0, width, 1.0)[None]
        below = np.maximum(self.alpha_[None] - X[:, None, :], 0.0)
        above = np.maximum(X[:, None, :] - self.beta_[None], 0.0)
        return ((below + above) / width).sum(axis=2)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The class with the most votes; ties by ``tie_break`` (see the module docstring)."""
        self._check_params()
        votes = self.votes(X)
        best = votes == votes.max(axis=1, keepdims=True)
        if self.tie_break == "distance":
            dist = np.where(best, self._miss_distance(check_X(X)), np.inf)
            best = dist == dist.min(axis=1, keepdims=True)
        return self.classes_[np.argmax(best, axis=1)]  # argmax of a boolean row: the first tied class

    def tie_rate(self, X: np.ndarray) -> float:
        """Share of samples whose highest vote count is shared by two or more classes."""
        votes = self.votes(X)
        return float(((votes == votes.max(axis=1, keepdims=True)).sum(axis=1) > 1).mean())
