"""nn_gpu.MLPGridSearchCV against scikit-learn's GridSearchCV over the same nn_gpu.MLPClassifier: the
same candidates, folds, scores, ranks and best estimator, with each fold's candidates trained at once."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nn_gpu import MLPClassifier
from nn_gpu.search import MLPGridSearchCV, _groups

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:900] / 16, y[:900]


BASE = dict(max_iter=12, random_state=0, device="cpu", dtype="float64", n_iter_no_change=3, tol=1e-3)
GRID = [
    {"learning_rate_init": [1e-3, 1e-2], "alpha": [1e-4, 1.0], "hidden_layer_sizes": [(16,), (32,)]},
    {"solver": ["sgd"], "learning_rate_init": [0.05, 0.2], "momentum": [0.9]},
    {"early_stopping": [True], "learning_rate_init": [1e-2]},
]


def test_the_search_is_scikit_learns_grid_search_over_the_same_estimator(digits):
    X, y = digits
    ours = MLPGridSearchCV(MLPClassifier(**BASE), GRID, cv=3).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's ConvergenceWarning-like messages are not ours to test
        theirs = GridSearchCV(MLPClassifier(**BASE), GRID, cv=3).fit(X, y)
    assert ours.cv_results_["params"] == theirs.cv_results_["params"]
    for name in ("split0_test_score", "split1_test_score", "split2_test_score", "mean_test_score", "rank_test_score"):
        np.testing.assert_array_equal(ours.cv_results_[name], theirs.cv_results_[name], err_msg=name)
    for name in ("param_alpha", "param_solver"):
        mine, sklearns = ours.cv_results_[name], theirs.cv_results_[name]
        assert list(np.ma.getmaskarray(mine)) == list(np.ma.getmaskarray(sklearns))
        assert list(mine.compressed()) == list(sklearns.compressed())
    assert ours.best_params_ == theirs.best_params_ and ours.best_index_ == theirs.best_index_
    assert ours.best_score_ == theirs.best_score_ and ours.n_splits_ == 3
    np.testing.assert_array_equal(ours.predict_proba(X), theirs.predict_proba(X))
    assert ours.score(X, y) == theirs.score(X, y)
    assert len(set(ours.cv_results_["mean_test_score"])) > 4  # the candidates differ


def test_candidates_are_grouped_by_what_they_may_share():
    base = MLPClassifier(**BASE)
    candidates = [
        {"learning_rate_init": 1e-3}, {"learning_rate_init": 1e-2, "alpha": 0.1}, {"hidden_layer_sizes": (8,)},
        {"random_state": 1}, {"early_stopping": True}, {"early_stopping": True}, {"beta_1": 0.8},
    ]  # fmt: skip
    assert _groups(base, candidates) == [[0, 1], [2], [3], [4], [5], [6]]


def test_a_diverging_candidate_scores_error_score(digits):
    X, y = digits
    base = MLPClassifier(
        **{**BASE, "solver": "sgd", "momentum": 0.9, "n_iter_no_change": 50}
    )  # no stop before it diverges
    search = MLPGridSearchCV(base, {"learning_rate_init": [0.05, 1e9]}, cv=2).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert scores[0] > 0.8 and np.isnan(scores[1])
    assert list(search.cv_results_["rank_test_score"]) == [1, 2]
    with pytest.raises(ValueError, match="diverged"):
        MLPGridSearchCV(base, {"learning_rate_init": [0.05, 1e9]}, cv=2, error_score="raise").fit(X, y)


def test_only_an_mlp_classifier_is_searched_and_predict_needs_refit(digits):
    X, y = digits
    with pytest.raises(TypeError, match="nn_gpu.MLPClassifier"):
        MLPGridSearchCV(sklearn.linear_model.LogisticRegression(), {"C": [1.0]}).fit(X, y)
    search = MLPGridSearchCV(MLPClassifier(**BASE), {"alpha": [1e-4]}, cv=2, refit=False).fit(X, y)
    with pytest.raises(AttributeError, match="refit=True"):
        search.predict(X)
