"""Probabilistic neural network (Specht 1990): a Parzen-window classifier, written out in numpy.

On standardised features, every training sample j of class c is a Gaussian kernel
``k_j(x) = exp(-||x - x_j||^2 / (2 sigma^2))``; the class score is the mean kernel over the class's samples,
``f_c(x) = mean_j k_j(x)`` (equal class priors), and ``predict_proba`` is ``f_c / sum_c f_c``. Scores are
kept as logarithms (log-sum-exp), so a tiny sigma still gives the nearest-neighbour answer instead of 0/0.

``sigma=None`` chooses sigma on the training data by leave-one-out: a grid of multiples of the median
nearest-neighbour distance, each scored by LOO accuracy (ties: lower LOO log-loss, then the larger sigma).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from steelscan.core.errors import SteelscanError
from steelscan.models.classical._checks import check_fitted, check_X, check_Xy

DEFAULT_SIGMA_GRID: tuple[float, ...] = tuple(np.geomspace(0.1, 10.0, 21).round(4))
_CHUNK = 2048  # rows of queries per distance block: bounds memory at _CHUNK x n_train floats


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d2, 0.0)


def _log_mean_exp(logk: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row-wise log of the mean of exp(logk) over the columns in `mask`; -inf entries count as excluded."""
    sub = logk[:, mask]
    counts = np.isfinite(sub).sum(axis=1)
    top = sub.max(axis=1, initial=-np.inf)
    safe_top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        s = np.log(np.exp(sub - safe_top[:, None]).sum(axis=1)) + safe_top - np.log(np.maximum(counts, 1))
    return np.where(counts > 0, s, -np.inf)


def _softmax(log_scores: np.ndarray) -> np.ndarray:
    z = log_scores - log_scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class PNNClassifier(ClassifierMixin, BaseEstimator):
    """Parzen-window PNN. After fit: ``sigma_`` (chosen or given), ``loo_scores_`` (sigma -> LOO accuracy)."""

    def __init__(
        self,
        sigma: float | None = None,
        sigma_grid: tuple[float, ...] = DEFAULT_SIGMA_GRID,
        max_loo: int = 3000,
        random_state: int = 0,
    ) -> None:
        self.sigma = sigma
        self.sigma_grid = sigma_grid
        self.max_loo = max_loo
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> "PNNClassifier":
        """Standardise, store the training samples and choose sigma (unless given)."""
        if self.sigma is not None and not (np.isfinite(self.sigma) and self.sigma > 0):
            raise SteelscanError(f"expected sigma > 0 or None (choose by leave-one-out), got {self.sigma!r}")
        X, y = check_Xy(X, y)
        self.classes_, self.y_index_ = np.unique(y, return_inverse=True)
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)  # a constant feature carries no distance
        self.train_ = (X - self.mean_) / self.scale_
        self.n_features_in_ = X.shape[1]
        self.loo_scores_: dict[float, float] = {}
        self.sigma_ = float(self.sigma) if self.sigma is not None else self._choose_sigma()
        return self

    def _choose_sigma(self) -> float:
        grid = np.asarray(self.sigma_grid, dtype=np.float64)
        if grid.ndim != 1 or len(grid) == 0 or not (grid > 0).all():
            raise SteelscanError(f"expected sigma_grid as positive multiples, got {self.sigma_grid!r}")
        n = len(self.train_)
        rng = np.random.default_rng(self.random_state)
        # LOO on at most max_loo query samples keeps the n x n distance block bounded for large sets.
        queries = np.sort(rng.choice(n, self.max_loo, replace=False)) if n > self.max_loo else np.arange(n)
        d2 = _sq_dist(self.train_[queries], self.train_)
        d2[np.arange(len(queries)), queries] = np.inf  # leave the query itself out
        nn = np.sqrt(d2.min(axis=1))
        scale = float(np.median(nn[np.isfinite(nn)])) if np.isfinite(nn).any() else 1.0
        scale = scale if scale > 0 else 1.0
        truth = self.y_index_[queries]
        keys: list[tuple[float, float, float]] = []  # (accuracy, -log_loss, sigma): max() picks the best
        for mult in grid:
            sigma = scale * float(mult)
            log_scores = self._class_log_scores_from_d2(d2, sigma)
            pred = np.argmax(log_scores, axis=1)
            acc = float((pred == truth).mean())
            proba = _softmax(np.where(np.isfinite(log_scores), log_scores, -1e300))
            nll = float(-np.log(np.clip(proba[np.arange(len(truth)), truth], 1e-12, 1.0)).mean())
            self.loo_scores_[sigma] = acc
            keys.append((acc, -nll, sigma))
        return max(keys)[2]

    def _class_log_scores_from_d2(self, d2: np.ndarray, sigma: float) -> np.ndarray:
        logk = -d2 / (2.0 * sigma * sigma)
        return np.stack([_log_mean_exp(logk, self.y_index_ == c) for c in range(len(self.classes_))], axis=1)

    def log_scores(self, X: np.ndarray) -> np.ndarray:
        """``(n_samples, n_classes)``: log of the mean kernel per class (up to a constant shared by all)."""
        check_fitted(self)
        X = (check_X(X, self.n_features_in_) - self.mean_) / self.scale_
        out = [
            self._class_log_scores_from_d2(_sq_dist(X[i : i + _CHUNK], self.train_), self.sigma_)
            for i in range(0, len(X), _CHUNK)
        ]
        return np.concatenate(out)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Posterior per class under equal priors: ``f_c / sum_c f_c``."""
        return _softmax(self.log_scores(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The class with the highest mean kernel (ties: first in ``classes_``)."""
        return self.classes_[np.argmax(self.log_scores(X), axis=1)]
