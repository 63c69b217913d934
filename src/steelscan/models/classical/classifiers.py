"""SVM and MLP baselines (scikit-learn, standardised features) and the factory of all four classical methods.

- ``svm``: ``StandardScaler -> SVC(rbf)``; C and gamma by a grid search with stratified k-fold CV on the
  training data only, then a refit on all of it, with Platt (sigmoid) probabilities from out-of-fold scores.
- ``mlp``: ``StandardScaler -> MLPClassifier`` (one hidden layer, adam, L2 ``alpha``), fixed settings.
- ``rule_table``: :class:`~steelscan.models.classical.rule_table.RuleTableClassifier`.
- ``pnn``: :class:`~steelscan.models.classical.pnn.PNNClassifier`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from steelscan.core.errors import SteelscanError
from steelscan.models.classical._checks import check_fitted, check_X, check_Xy
from steelscan.models.classical.pnn import PNNClassifier
from steelscan.models.classical.rule_table import RuleTableClassifier


class _PipelineClassifier(ClassifierMixin, BaseEstimator):
    """Shared predict/predict_proba over a fitted ``pipeline_``, with steelscan's input checks."""

    pipeline_: Pipeline

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_fitted(self)
        return self.pipeline_.predict(check_X(X, self.n_features_in_))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, columns in ``classes_`` order."""
        check_fitted(self)
        return self.pipeline_.predict_proba(check_X(X, self.n_features_in_))


class SVMClassifier(_PipelineClassifier):
    """RBF SVM. ``gamma_grid`` holds multiples of 1/n_features (sklearn's 'scale' on standardised data).

    After fit: ``best_params_`` ({'C', 'gamma'}), ``cv_accuracy_`` (mean CV accuracy of the chosen pair, or
    None when a class has fewer than 2 samples and the search is skipped for C=10, gamma=1/n_features).
    """

    def __init__(
        self,
        C_grid: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0),
        gamma_grid: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0),
        cv: int = 5,
        probability: bool = True,
        n_jobs: int = 1,
        random_state: int = 0,
    ) -> None:
        self.C_grid = C_grid
        self.gamma_grid = gamma_grid
        self.cv = cv
        self.probability = probability
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> "SVMClassifier":
        X, y = check_Xy(X, y)
        if not self.C_grid or not self.gamma_grid or min(self.C_grid) <= 0 or min(self.gamma_grid) <= 0:
            raise SteelscanError(
                f"expected non-empty, positive C_grid and gamma_grid, got {self.C_grid} and {self.gamma_grid}"
            )
        d = X.shape[1]
        n_splits = min(int(self.cv), int(np.unique(y, return_counts=True)[1].min()))
        if n_splits >= 2:
            grid = {"svc__C": list(self.C_grid), "svc__gamma": [g / d for g in self.gamma_grid]}
            search = GridSearchCV(
                make_pipeline(StandardScaler(), SVC(kernel="rbf")),
                grid,
                cv=StratifiedKFold(n_splits, shuffle=True, random_state=self.random_state),
                n_jobs=self.n_jobs,
                refit=False,
            )
            search.fit(X, y)
            C, gamma = search.best_params_["svc__C"], search.best_params_["svc__gamma"]
            self.cv_accuracy_: float | None = float(search.best_score_)
        else:  # too few samples per class to cross-validate
            C, gamma, self.cv_accuracy_ = 10.0, 1.0 / d, None
        self.best_params_ = {"C": float(C), "gamma": float(gamma)}
        final = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=C, gamma=gamma))
        self.calibrated_: CalibratedClassifierCV | None = None
        if self.probability and n_splits >= 2:
            # Platt scaling on out-of-fold decision values (what SVC(probability=True) did before sklearn 1.9
            # deprecated it); with ensemble=False the calibrator also holds the SVM fitted on all of X.
            cv = StratifiedKFold(n_splits, shuffle=True, random_state=self.random_state)
            self.calibrated_ = CalibratedClassifierCV(final, method="sigmoid", cv=cv, ensemble=False).fit(X, y)
            self.pipeline_ = self.calibrated_.calibrated_classifiers_[0].estimator
        else:
            self.pipeline_ = final.fit(X, y)
        self.classes_ = self.pipeline_.classes_
        self.n_features_in_ = d
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Platt-calibrated probabilities (columns in ``classes_`` order); ``predict`` is the SVM's own vote."""
        check_fitted(self)
        if self.calibrated_ is None:
            raise SteelscanError(
                "SVMClassifier has no probabilities: built with probability=False or a class had < 2 samples"
            )
        return self.calibrated_.predict_proba(check_X(X, self.n_features_in_))


class MLPBaseline(_PipelineClassifier):
    """One-hidden-layer perceptron on standardised features (adam, L2 ``alpha``, at most ``max_iter`` epochs)."""

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (128,),
        alpha: float = 1e-2,
        max_iter: int = 400,
        random_state: int = 0,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> "MLPBaseline":
        X, y = check_Xy(X, y)
        mlp = MLPClassifier(
            hidden_layer_sizes=self.hidden_layer_sizes,
            alpha=self.alpha,
            max_iter=self.max_iter,
            random_state=self.random_state,
        )
        # One BLAS thread: the mini-batch products are tiny, and threaded BLAS on them ran 5-30x slower on
        # 2 busy cores (spinning threads); the limit is lifted again on exit.
        with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
            # Stopping at max_iter is the chosen budget here, not a failure worth a warning per fit.
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.pipeline_ = make_pipeline(StandardScaler(), mlp).fit(X, y)
        self.classes_ = self.pipeline_.classes_
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        with threadpool_limits(1, user_api="blas"):
            return super().predict(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (softmax output), columns in ``classes_`` order."""
        with threadpool_limits(1, user_api="blas"):
            return super().predict_proba(X)


CLASSICAL_MODELS: dict[str, type] = {
    "rule_table": RuleTableClassifier,
    "pnn": PNNClassifier,
    "svm": SVMClassifier,
    "mlp": MLPBaseline,
}


def create_classical(name: str, **kwargs: Any) -> BaseEstimator:
    """A new, unfitted classical classifier: 'rule_table', 'pnn', 'svm' or 'mlp' (kwargs go to its class)."""
    if name not in CLASSICAL_MODELS:
        raise SteelscanError(f"unknown classical model {name!r}; valid names: {', '.join(CLASSICAL_MODELS)}")
    try:
        return CLASSICAL_MODELS[name](**kwargs)
    except TypeError as exc:
        raise SteelscanError(f"bad arguments for classical model {name!r}: {exc}") from None
