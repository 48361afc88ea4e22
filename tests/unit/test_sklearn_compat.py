"""The in-process estimators work with scikit-learn's own tools (``clone``, ``cross_val_score``,
``GridSearchCV``, scorers), while ``algorithm/`` never imports scikit-learn and ``import fmwals`` loads
neither numba nor the in-process estimators."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.utils import get_tags

import algorithm.fm
import algorithm.wals
from fmwals.inprocess import WALS, FactorizationMachines

ROOT = Path(__file__).resolve().parents[2]
RATES = {"bias_lr": 0.05, "linear_lr": 0.05, "factors_lr": 0.01, "epochs": 6, "mini_batch_size": 100}


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), (y == 0).astype(np.float32), y.astype(np.float32)


def _fm(predictor_type="binary_classifier", **params):
    return FactorizationMachines(feature_dim=64, num_factors=4, predictor_type=predictor_type, num_threads=1,
                                 **{**RATES, **params})


def _ratings(n_rows=90, n_cols=40, seed=0):
    rng = np.random.default_rng(seed)
    U, V = rng.normal(size=(n_rows, 3)), rng.normal(size=(n_cols, 3))
    mask = rng.random((n_rows, n_cols)) < 0.35
    return sp.csr_matrix(np.where(mask, U @ V.T + 3.0, 0.0).astype(np.float32))


def test_the_client_package_exports_them_without_loading_numba():
    assert FactorizationMachines is algorithm.fm.FactorizationMachines and WALS is algorithm.wals.WALS
    code = "import sys, fmwals; assert not {'numba', 'fmwals.inprocess', 'algorithm.fm'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_algorithm_does_not_import_sklearn():
    imported = set()
    for path in (ROOT / "algorithm").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert "sklearn" not in imported


def test_tags_and_clone():
    classifier, regressor = _fm(), _fm("regressor")
    wals = WALS(embedding_dimension=3)
    assert is_classifier(classifier) and not is_regressor(classifier) and is_regressor(regressor)
    assert not is_classifier(wals) and not is_regressor(wals)
    tags = get_tags(classifier)
    assert tags.input_tags.sparse and tags.target_tags.required and not tags.classifier_tags.multi_class
    assert get_tags(regressor).regressor_tags is not None
    assert not get_tags(wals).target_tags.required and not get_tags(wals).input_tags.two_d_array
    copy = clone(classifier.set_params(num_factors=6))
    assert type(copy) is FactorizationMachines and copy.get_params() == classifier.get_params()
    assert not hasattr(copy, "classes_")  # unfitted
    assert clone(WALS(embedding_dimension=3, row_weights=np.ones(4))).get_params()["embedding_dimension"] == 3


def test_score_is_scikit_learns_default(digits):
    x, is_zero, digit = digits
    weights = np.linspace(0.5, 2.0, 300)
    classifier = _fm().fit(x[:1200], is_zero[:1200])
    assert classifier.classes_.tolist() == [0.0, 1.0]
    predicted = classifier.predict(x[1200:1500])
    assert classifier.score(x[1200:1500], is_zero[1200:1500], weights) == pytest.approx(
        accuracy_score(is_zero[1200:1500], predicted, sample_weight=weights))
    regressor = _fm("regressor", epochs=10).fit(x[:1200], digit[:1200])
    assert regressor.score(x[1200:1500], digit[1200:1500], weights) == pytest.approx(
        r2_score(digit[1200:1500], regressor.predict(x[1200:1500]), sample_weight=weights), rel=1e-6)
    with pytest.raises(ValueError, match="y has 3 values but X has 2 rows"):
        classifier.score(x[:2], is_zero[:3])


def test_cross_val_score_and_grid_search_with_fm(digits):
    x, is_zero, digit = digits
    accuracy = cross_val_score(_fm(), x, is_zero, cv=3)  # stratified folds: a classifier
    assert accuracy.shape == (3,) and accuracy.min() > 0.95
    r2 = cross_val_score(_fm("regressor", epochs=10), sp.csr_matrix(x), digit, cv=3)
    assert r2.mean() > 0.3
    frozen = {"factors_lr": 1e-6, "linear_lr": 1e-6}  # learns (almost) nothing: the worst of the grid
    search = GridSearchCV(_fm(), {"linear_lr": [1e-6, 0.05], "factors_lr": [1e-6, 0.01]}, cv=3, scoring="roc_auc")
    search.fit(x, is_zero)
    results = search.cv_results_
    assert results["params"][int(np.argmin(results["mean_test_score"]))] == frozen
    assert search.best_params_ != frozen and search.best_score_ > 0.99
    assert search.best_estimator_.predict_proba(x[:5]).shape == (5, 2)


def test_wals_score_folds_in_half_of_each_row_and_scores_the_rest():
    R = _ratings()
    wals = WALS(embedding_dimension=3, regularization_coeff=0.1, max_sweeps=8, num_threads=1).fit(R[:60])
    held = R[60:]
    fold_in, target = held.copy().tolil(), held.copy().tolil()
    for i in range(held.shape[0]):
        cols = held[i].indices
        for position, j in enumerate(cols):
            (target if position % 2 == 0 else fold_in)[i, j] = 0
    U = wals.project_rows(sp.csr_matrix(fold_in))
    target = sp.coo_matrix(target)
    expected = -np.sqrt(np.mean((target.data - np.sum(U[target.row] * wals.col_factors_[target.col], 1)) ** 2))
    assert wals.score(held) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="at least two entries"):
        wals.score(sp.csr_matrix(np.eye(2, 40, dtype=np.float32)))


def test_cross_val_score_and_grid_search_with_wals():
    R = _ratings()
    scores = cross_val_score(WALS(embedding_dimension=3, max_sweeps=6, num_threads=1), R, cv=KFold(3))
    assert scores.shape == (3,) and np.isfinite(scores).all()
    search = GridSearchCV(WALS(embedding_dimension=3, max_sweeps=6, num_threads=1),
                          {"embedding_dimension": [1, 3], "regularization_coeff": [0.1, 1000.0]}, cv=KFold(3))
    search.fit(R)
    assert search.best_params_ == {"embedding_dimension": 3, "regularization_coeff": 0.1}  # the true rank
    counts = R.copy()
    counts.data = np.abs(counts.data)
    implicit = cross_val_score(WALS(embedding_dimension=3, alpha=5.0, max_sweeps=4, num_threads=1), counts,
                               cv=KFold(3))
    assert ((implicit >= 0) & (implicit <= 1)).all()  # NDCG@eval_k
