"""nn_gpu.MLPGridSearchCV: scikit-learn's GridSearchCV over nn_gpu.MLPClassifier, with the settings of
each fold trained together (nn_gpu.many) instead of one after another.

    search = MLPGridSearchCV(MLPClassifier(hidden_layer_sizes=(128,), max_iter=20, random_state=0),
                             {"learning_rate_init": [1e-3, 3e-3], "alpha": [1e-4, 1e-2]}, cv=3)
    search.fit(X, y); search.best_params_; search.cv_results_; search.predict(X_test)

Its interface is GridSearchCV's (param_grid, scoring, cv, refit, error_score; cv_results_, best_params_,
best_score_, best_index_, best_estimator_, refit_time_, n_splits_, and predict, predict_proba, score
through the best estimator), and every candidate is the very network MLPClassifier.fit trains on the
fold, so its scores are GridSearchCV's. Candidates that differ only in learning_rate_init, alpha, tol
and n_iter_no_change share one shuffle and one architecture, and are trained at once: each stops by
its own rule. Every other parameter (hidden_layer_sizes, solver, batch_size, random_state, ...) forms
groups of its own, and a candidate with early_stopping, or Adam's betas or epsilon changed, is trained
alone (MLPClassifier.fit). Folds come from scikit-learn's check_cv (StratifiedKFold for an int), so
scikit-learn is needed here; on a cluster, joblib's Dask or Ray backends spread searches as they do
GridSearchCV's.
"""

from __future__ import annotations

import time

import numpy as np

from nn_gpu.device import resolve_device
from nn_gpu.estimator import MLPClassifier
from nn_gpu.estimator_checks import X_on_device, check_X_y
from nn_gpu.many import train_groups
from nn_gpu.optim import BETAS, EPS
from nn_gpu.stacked import Setting
from nn_gpu.training import TrainingPlan

TOGETHER = ("learning_rate_init", "alpha", "tol", "n_iter_no_change", "verbose")  # may differ within a group


class MLPGridSearchCV:
    """GridSearchCV for nn_gpu.MLPClassifier, training each fold's compatible candidates at once (module docstring)."""

    def __init__(self, estimator, param_grid, *, scoring=None, cv=None, refit=True, error_score=np.nan):
        self.estimator = estimator
        self.param_grid = param_grid
        self.scoring = scoring
        self.cv = cv
        self.refit = refit
        self.error_score = error_score

    def get_params(self, deep: bool = True) -> dict:
        return {
            name: getattr(self, name) for name in ("estimator", "param_grid", "scoring", "cv", "refit", "error_score")
        }

    def set_params(self, **params) -> MLPGridSearchCV:
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def fit(self, X, y) -> MLPGridSearchCV:
        """Score every candidate of param_grid on every fold of cv, then refit the best on all of X and y."""
        from sklearn.base import clone
        from sklearn.metrics import check_scoring
        from sklearn.model_selection import ParameterGrid, check_cv

        if not isinstance(self.estimator, MLPClassifier):
            raise TypeError(f"estimator must be an nn_gpu.MLPClassifier, got {type(self.estimator).__name__}")
        X, y = check_X_y(X, y, finite=False)
        candidates = list(ParameterGrid(self.param_grid))
        splits = list(check_cv(self.cv, y, classifier=True).split(X, y))
        scorer = check_scoring(self.estimator, self.scoring)
        scores = np.full((len(candidates), len(splits)), np.nan)
        fit_seconds = np.zeros_like(scores)
        for s, (train, test) in enumerate(splits):
            for group in _groups(self.estimator, candidates):
                estimators = [clone(self.estimator).set_params(**candidates[i]) for i in group]
                started = time.perf_counter()
                fitted = fit_together(estimators, X[train], y[train], self.error_score)
                seconds = (time.perf_counter() - started) / len(group)
                for i, estimator in zip(group, fitted):
                    fit_seconds[i, s] = seconds
                    scores[i, s] = self.error_score if estimator is None else scorer(estimator, X[test], y[test])
        self.cv_results_ = _cv_results(candidates, scores, fit_seconds)
        self.n_splits_ = len(splits)
        self.best_index_ = int(np.argmin(self.cv_results_["rank_test_score"]))
        self.best_params_ = candidates[self.best_index_]
        self.best_score_ = float(self.cv_results_["mean_test_score"][self.best_index_])
        if self.refit:
            started = time.perf_counter()
            self.best_estimator_ = clone(self.estimator).set_params(**self.best_params_).fit(X, y)
            self.refit_time_ = time.perf_counter() - started
            self.classes_ = self.best_estimator_.classes_
        return self

    def predict(self, X):
        return self._best().predict(X)

    def predict_proba(self, X):
        return self._best().predict_proba(X)

    def score(self, X, y) -> float:
        from sklearn.metrics import check_scoring

        return check_scoring(self._best(), self.scoring)(self._best(), X, y)

    def _best(self) -> MLPClassifier:
        if not hasattr(self, "best_estimator_"):
            raise AttributeError("predict, predict_proba and score need a search fitted with refit=True")
        return self.best_estimator_


def _groups(base: MLPClassifier, candidates: list[dict]) -> list[list[int]]:
    """Indices of the candidates trained together: the same parameters apart from TOGETHER's; a candidate
    with early_stopping (its validation rows are drawn from its own seed), or Adam's betas or eps changed,
    alone."""
    groups: dict = {}
    for i, params in enumerate(candidates):
        full = {**base.get_params(), **params}
        alone = full["early_stopping"] or (full["beta_1"], full["beta_2"]) != BETAS or full["epsilon"] != EPS
        key = ("alone", i) if alone else repr(sorted((k, repr(v)) for k, v in full.items() if k not in TOGETHER))
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def fit_together(estimators: list[MLPClassifier], X: np.ndarray, y: np.ndarray, error_score) -> list:
    """Fit the estimators (alike but for TOGETHER's parameters) on X and y as MLPClassifier.fit would fit
    each, at once; a candidate that cannot be fitted (it diverged) is None, or raises with error_score="raise"."""
    if len(estimators) == 1:
        try:
            return [estimators[0].fit(X, y)]
        except ValueError:
            if error_score == "raise":
                raise
            return [None]
    first = estimators[0]
    for estimator in estimators:
        estimator._validate_parameters()
    device = resolve_device(first.device)
    X_device = X_on_device(X, device, first.dtype)
    classes, labels = np.unique(y, return_inverse=True)
    for estimator in estimators:
        estimator._start(X.shape[1], classes, device)
    m = len(labels)
    batch = min(200, m) if first.batch_size == "auto" else max(1, min(int(first.batch_size), m))
    settings = [Setting(e._seed, e.learning_rate_init, e.alpha / batch) for e in estimators]
    plan = TrainingPlan(epochs=first.max_iter, batch_size=batch)
    results = train_groups(
        [e._network for e in estimators], settings, X_device, device.to_device(labels.astype(np.int32)), None,
        plan, first.solver, first.momentum if first.solver == "sgd" else 0.0, first._seed, log=None,
        stop=lambda k, entry: estimators[k]._after_epoch(entry, m), exploding_loss=np.inf,
    )  # fmt: skip
    fitted = []
    for estimator, result in zip(estimators, results):
        if result.diverged:
            if error_score == "raise":
                raise ValueError(f"training diverged with {estimator!r}: lower learning_rate_init, or scale X")
            fitted.append(None)
            continue
        estimator._network.state[...] = result.network.state
        estimator._steps = result.history[-1]["iteration"]
        fitted.append(estimator)
    return fitted


def _cv_results(candidates: list[dict], scores: np.ndarray, fit_seconds: np.ndarray) -> dict:
    """GridSearchCV's cv_results_: params, a masked param_<name> per parameter, split<k>_test_score,
    mean_test_score, std_test_score, rank_test_score (ties share the lowest rank; nan last), mean_fit_time."""
    results: dict = {"params": candidates}
    for name in sorted({name for params in candidates for name in params}):
        column = np.ma.masked_all(len(candidates), dtype=object)
        for i, params in enumerate(candidates):
            if name in params:
                column[i] = params[name]
        results[f"param_{name}"] = column
    for s in range(scores.shape[1]):
        results[f"split{s}_test_score"] = scores[:, s]
    mean, std = scores.mean(axis=1), scores.std(axis=1)
    results.update(mean_test_score=mean, std_test_score=std)
    order = np.where(np.isnan(mean), -np.inf, mean)
    results["rank_test_score"] = np.array([1 + int((order > value).sum()) for value in order], dtype=np.int32)
    results["mean_fit_time"], results["std_fit_time"] = fit_seconds.mean(axis=1), fit_seconds.std(axis=1)
    return results
