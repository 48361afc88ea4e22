"""Evaluation metrics of the built-in FM, by its metric names; numbers only (no log formatting).

Every function takes labels, scores (probabilities for the classification metrics) and optional per-row
weights, and returns a float computed in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

_LOG_CLIP = 1e-15
_BLOCK = 65_536  # rows per float64 block: the metrics never hold float64 copies of whole columns


def _columns(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    y, s = np.asarray(y_true).ravel(), np.asarray(y_score).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values but y_score has {s.size}")
    w = None if sample_weight is None else np.asarray(sample_weight).ravel()
    if w is not None and w.shape != y.shape:
        raise ValueError(f"sample_weight has {w.size} values for {y.size} rows")
    return y, s, w


def _block_sums(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None,
                terms: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, ...]]) -> tuple[np.ndarray, float]:
    """Weighted sums of each array ``terms(y, s)`` returns, over float64 blocks of rows, and the weight total."""
    y, s, w = _columns(y_true, y_score, sample_weight)
    sums = np.zeros(0)
    total = 0.0
    for r0 in range(0, max(y.size, 1), _BLOCK):  # no rows: one empty block, so the sums are zeros
        yb, sb = y[r0:r0 + _BLOCK].astype(np.float64), s[r0:r0 + _BLOCK].astype(np.float64)
        values = terms(yb, sb)
        if w is None:
            block = np.array([v.sum() for v in values])
            total += yb.size
        else:
            wb = w[r0:r0 + _BLOCK].astype(np.float64)
            block = np.array([np.dot(v, wb) for v in values])
            total += wb.sum()
        sums = block if r0 == 0 else sums + block
    return sums, total


def _weighted_mean(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None,
                   term: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> float:
    sums, total = _block_sums(y_true, y_score, sample_weight, lambda y, s: (term(y, s),))
    return float(sums[0] / total) if total > 0 else float("nan")


def mse(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Mean squared error."""
    return _weighted_mean(y_true, y_score, sample_weight, lambda y, s: (s - y) ** 2)


def rmse(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Root mean squared error."""
    return float(np.sqrt(mse(y_true, y_score, sample_weight)))


def absolute_loss(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Mean absolute error."""
    return _weighted_mean(y_true, y_score, sample_weight, lambda y, s: np.abs(s - y))


def binary_classification_accuracy(y_true: ArrayLike, y_score: ArrayLike,
                                   sample_weight: ArrayLike | None = None) -> float:
    """Share of rows whose label equals (score >= 0.5)."""
    return _weighted_mean(y_true, y_score, sample_weight,
                          lambda y, s: ((s >= 0.5) == (y == 1)).astype(np.float64))


def _log_loss(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    p = np.clip(s, _LOG_CLIP, 1.0 - _LOG_CLIP)
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p))


def binary_classification_cross_entropy(y_true: ArrayLike, y_score: ArrayLike,
                                        sample_weight: ArrayLike | None = None) -> float:
    """Log loss of probabilities ``y_score`` (clipped to [1e-15, 1 - 1e-15])."""
    return _weighted_mean(y_true, y_score, sample_weight, _log_loss)


def _confusion(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
    predicted, actual = s >= 0.5, y == 1
    return ((predicted & actual).astype(np.float64), (predicted & ~actual).astype(np.float64),
            (~predicted & actual).astype(np.float64))


def binary_f_beta(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None,
                  beta: float = 1.0) -> float:
    """F-beta of the predicted labels (score >= 0.5); 0 when there are no true and no predicted positives."""
    (tp, fp, fn), _ = _block_sums(y_true, y_score, sample_weight, _confusion)
    b2 = beta * beta
    denominator = (1.0 + b2) * tp + b2 * fn + fp
    return float((1.0 + b2) * tp / denominator) if denominator > 0 else 0.0


def auc(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Area under the ROC curve; tied scores count one half. NaN when only one class is present."""
    y, s, w = _columns(y_true, y_score, sample_weight)
    order = np.argsort(-s, kind="stable")
    s, positive = s[order], y[order] == 1
    if w is None:
        tps = np.cumsum(positive, dtype=np.float64)
        fps = np.arange(1, s.size + 1, dtype=np.float64) - tps
    else:
        w = w[order].astype(np.float64)
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
