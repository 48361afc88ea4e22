"""algorithm.metrics against scikit-learn, weighted and unweighted, with ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from algorithm import metrics


def _data(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.float32)
    scores = np.round(rng.random(n), 1).astype(np.float32)  # rounding makes many ties
    return y, scores, rng.random(n)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed, n", [(0, 300), (1, 300), (2, 300), (4, 150_001)])  # 150,001: several blocks
def test_classification_metrics_match_sklearn(seed: int, n: int, weighted: bool) -> None:
    y, p, w = _data(seed, n)
    sw = w if weighted else None
    labels = (p >= 0.5).astype(np.float32)
    assert metrics.auc(y, p, sw) == pytest.approx(skm.roc_auc_score(y, p, sample_weight=sw))
    assert metrics.binary_classification_accuracy(y, p, sw) == pytest.approx(
        skm.accuracy_score(y, labels, sample_weight=sw))
    assert metrics.binary_f_beta(y, p, sw) == pytest.approx(skm.f1_score(y, labels, sample_weight=sw))
    assert metrics.binary_f_beta(y, p, sw, beta=2.0) == pytest.approx(
        skm.fbeta_score(y, labels, beta=2.0, sample_weight=sw))
    clipped = np.clip(p.astype(np.float64), 1e-15, 1 - 1e-15)
    assert metrics.binary_classification_cross_entropy(y, p, sw) == pytest.approx(
        skm.log_loss(y, clipped, sample_weight=sw))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n", [100, 150_001])  # 150,001: more than two of the metrics' 65,536-row blocks
def test_regression_metrics_match_sklearn(n: int, weighted: bool) -> None:
    rng = np.random.default_rng(3)
    y, s, w = rng.normal(size=n), rng.normal(size=n), rng.random(n)
    sw = w if weighted else None
    assert metrics.mse(y, s, sw) == pytest.approx(skm.mean_squared_error(y, s, sample_weight=sw))
    assert metrics.rmse(y, s, sw) == pytest.approx(math.sqrt(skm.mean_squared_error(y, s, sample_weight=sw)))
    assert metrics.absolute_loss(y, s, sw) == pytest.approx(skm.mean_absolute_error(y, s, sample_weight=sw))


def test_edge_cases() -> None:
    assert math.isnan(metrics.auc([1, 1], [0.2, 0.9]))
    assert metrics.auc([0, 1], [0.5, 0.5]) == 0.5
    assert metrics.binary_f_beta([0, 0], [0.1, 0.2]) == 0.0
    assert metrics.binary_classification_cross_entropy([1, 0], [1.0, 0.0]) == pytest.approx(1e-15)
    with pytest.raises(ValueError, match="y_score has 1"):
        metrics.rmse([1, 2], [1])


def test_train_metrics_names() -> None:
    regressor = metrics.train_metrics("regressor", [1.0, 2.0], [1.5, 2.5])
    assert list(regressor) == ["rmse", "mse", "absolute_loss"]
    classifier = metrics.train_metrics("binary_classifier", [0, 1, 1], [0.2, 0.7, 0.4])
    assert list(classifier) == ["binary_classification_accuracy", "binary_classification_cross_entropy",
                                "binary_f_beta", "auc"]
    assert classifier["binary_classification_accuracy"] == pytest.approx(2 / 3)
    assert all(isinstance(v, float) for v in classifier.values())
    with pytest.raises(ValueError, match="predictor_type"):
        metrics.train_metrics("ranker", [1.0], [1.0])
