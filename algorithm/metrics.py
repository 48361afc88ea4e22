"""Evaluation metrics of the built-in FM, by its metric names; numbers only (no log formatting).

Every function takes labels, scores (probabilities for the classification metrics) and optional per-row
weights, and returns a float computed in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

_LOG_CLIP = 1e-15


def _prepare(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values but y_score has {s.size}")
    w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).ravel()
    if w.shape != y.shape:
        raise ValueError(f"sample_weight has {w.size} values for {y.size} rows")
    return y, s, w


def _weighted_mean(values: np.ndarray, w: np.ndarray) -> float:
    total = w.sum()
    return float(np.dot(values, w) / total) if total > 0 else float("nan")


def mse(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Mean squared error."""
    y, s, w = _prepare(y_true, y_score, sample_weight)
    return _weighted_mean((s - y) ** 2, w)


def rmse(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Root mean squared error."""
    return float(np.sqrt(mse(y_true, y_score, sample_weight)))


def absolute_loss(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Mean absolute error."""
    y, s, w = _prepare(y_true, y_score, sample_weight)
    return _weighted_mean(np.abs(s - y), w)


def binary_classification_accuracy(y_true: ArrayLike, y_score: ArrayLike,
                                   sample_weight: ArrayLike | None = None) -> float:
    """Share of rows whose label equals (score >= 0.5)."""
    y, s, w = _prepare(y_true, y_score, sample_weight)
    return _weighted_mean(((s >= 0.5) == (y == 1)).astype(np.float64), w)


def binary_classification_cross_entropy(y_true: ArrayLike, y_score: ArrayLike,
                                        sample_weight: ArrayLike | None = None) -> float:
    """Log loss of probabilities ``y_score`` (clipped to [1e-15, 1 - 1e-15])."""
    y, s, w = _prepare(y_true, y_score, sample_weight)
    p = np.clip(s, _LOG_CLIP, 1.0 - _LOG_CLIP)
    return _weighted_mean(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)), w)


def binary_f_beta(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None,
                  beta: float = 1.0) -> float:
    """F-beta of the predicted labels (score >= 0.5); 0 when there are no true and no predicted positives."""
    y, s, w = _prepare(y_true, y_score, sample_weight)
    predicted = s >= 0.5
    actual = y == 1
    tp = w[predicted & actual].sum()
    fp = w[predicted & ~actual].sum()
    fn = w[~predicted & actual].sum()
    b2 = beta * beta
    denominator = (1.0 + b2) * tp + b2 * fn + fp
    return float((1.0 + b2) * tp / denominator) if denominator > 0 else 0.0


def auc(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Area under the ROC curve; tied scores count one half. NaN when only one class is present."""
    y, s, w = _prepare(y_true, y_score, sample_weight)
    order = np.argsort(-s, kind="stable")
    s, positive, w = s[order], y[order] == 1, w[order]
    tps = np.cumsum(np.where(positive, w, 0.0))
    fps = np.cumsum(np.where(positive, 0.0, w))
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), s.size - 1] if s.size else np.array([], dtype=np.int64)
    tps, fps = np.r_[0.0, tps[last_of_tie]], np.r_[0.0, fps[last_of_tie]]
    if tps[-1] <= 0 or fps[-1] <= 0:
        return float("nan")
    return float(np.trapezoid(tps, fps) / (tps[-1] * fps[-1]))


Metric = Callable[..., float]

REGRESSOR_METRICS: dict[str, Metric] = {"rmse": rmse, "mse": mse, "absolute_loss": absolute_loss}
CLASSIFIER_METRICS: dict[str, Metric] = {
    "binary_classification_accuracy": binary_classification_accuracy,
    "binary_classification_cross_entropy": binary_classification_cross_entropy,
    "binary_f_beta": binary_f_beta,
    "auc": auc,
}
# The test metric early stopping watches (lower is better for both).
STOPPING_METRIC = {"regressor": "rmse", "binary_classifier": "binary_classification_cross_entropy"}


def train_metrics(predictor_type: str, y: ArrayLike, scores: ArrayLike,
                  sample_weight: ArrayLike | None = None) -> dict[str, float]:
    """Every built-in metric of ``predictor_type`` keyed by its built-in name (scores are probabilities for
    ``binary_classifier``)."""
    if predictor_type == "regressor":
        table = REGRESSOR_METRICS
    elif predictor_type == "binary_classifier":
        table = CLASSIFIER_METRICS
    else:
        raise ValueError(f"predictor_type must be 'binary_classifier' or 'regressor', got {predictor_type!r}")
    return {name: fn(y, scores, sample_weight) for name, fn in table.items()}
