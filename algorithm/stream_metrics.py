"""The built-in FM's metrics accumulated block by block (``algorithm.metrics`` needs every score at once).

The means (rmse, mse, absolute_loss, accuracy, cross-entropy) and the F1 counts are running weighted sums,
exact up to float64 rounding. AUC comes from a histogram of the scores in ``AUC_BINS`` equal bins over [0, 1]
per class: pairs whose scores share a bin count one half, as ties do, so it differs from the exact AUC by at
most the share of positive-negative pairs closer than 1 / ``AUC_BINS`` (16 MB whatever the row count).
"""

from __future__ import annotations

import numpy as np

from algorithm.metrics import STOPPING_METRIC

AUC_BINS = 1 << 20
_LOG_CLIP = 1e-15


class StreamingMetrics:
    """``update`` with each block's labels, scores (probabilities for the classifier) and optional weights;
    ``result()`` gives ``algorithm.metrics.train_metrics``'s names and values over every row seen."""

    def __init__(self, predictor_type: str) -> None:
        if predictor_type not in STOPPING_METRIC:
            raise ValueError(f"predictor_type must be one of {sorted(STOPPING_METRIC)}, got {predictor_type!r}")
        self.classifier = predictor_type == "binary_classifier"
        self.total = 0.0
        self.sums = np.zeros(6)  # regressor: se, ae; classifier: correct, log loss, tp, fp, fn (by position)
        self.histograms = np.zeros((2, AUC_BINS)) if self.classifier else None

    def update(self, y: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> None:
        y64, s64 = y.astype(np.float64), scores.astype(np.float64)
        w = np.ones_like(y64) if weights is None or weights.size == 0 else weights.astype(np.float64)
        self.total += float(w.sum())
        if not self.classifier:
            error = s64 - y64
            self.sums[:2] += (np.dot(error * error, w), np.dot(np.abs(error), w))
            return
        predicted, actual = s64 >= 0.5, y64 == 1
        p = np.clip(s64, _LOG_CLIP, 1.0 - _LOG_CLIP)
        log_loss = -(y64 * np.log(p) + (1.0 - y64) * np.log1p(-p))
        self.sums[:5] += (np.dot(predicted == actual, w), np.dot(log_loss, w), np.dot(predicted & actual, w),
                          np.dot(predicted & ~actual, w), np.dot(~predicted & actual, w))
        assert self.histograms is not None
        bins = np.minimum((np.clip(s64, 0.0, 1.0) * AUC_BINS).astype(np.int64), AUC_BINS - 1)
        for label, histogram in enumerate(self.histograms):
            mask = actual if label else ~actual
            histogram += np.bincount(bins[mask], weights=w[mask], minlength=AUC_BINS)

    def state(self) -> tuple[float, dict[str, np.ndarray]]:
        """The sums so far: the total weight and the arrays (``sums``, ``histograms``), for ``restore``."""
        arrays = {"sums": self.sums} if self.histograms is None else {"sums": self.sums, "histograms": self.histograms}
        return self.total, arrays

    def restore(self, total: float, arrays: dict[str, np.ndarray]) -> None:
        """Continue from ``state()`` (of the same predictor_type); ValueError when the arrays do not fit."""
        expected: dict[str, tuple[int, ...]] = {"sums": self.sums.shape}
        if self.histograms is not None:
            expected["histograms"] = self.histograms.shape
        if {name: np.shape(array) for name, array in arrays.items()} != expected:
            raise ValueError(f"metric sums shaped {({n: np.shape(a) for n, a in arrays.items()})}, "
                             f"expected {expected}")
        self.total = total
        self.sums = np.array(arrays["sums"], dtype=np.float64)
        if self.histograms is not None:
            self.histograms = np.asarray(arrays["histograms"], dtype=np.float64)  # (16 MB: not copied)

    def result(self) -> dict[str, float]:
        total = self.total if self.total > 0 else float("nan")
        if not self.classifier:
            mse = self.sums[0] / total
            return {"rmse": float(np.sqrt(mse)), "mse": float(mse), "absolute_loss": float(self.sums[1] / total)}
        tp, fp, fn = self.sums[2:5]
        f1_denominator = 2 * tp + fn + fp
        return {
            "binary_classification_accuracy": float(self.sums[0] / total),
            "binary_classification_cross_entropy": float(self.sums[1] / total),
            "binary_f_beta": float(2 * tp / f1_denominator) if f1_denominator > 0 else 0.0,
            "auc": self._auc(),
        }

    def _auc(self) -> float:
        assert self.histograms is not None
        negatives, positives = self.histograms
        n_pos, n_neg = positives.sum(), negatives.sum()
        if n_pos <= 0 or n_neg <= 0:
            return float("nan")
        below = np.cumsum(negatives) - negatives  # negatives in lower bins
        return float((np.dot(positives, below) + 0.5 * np.dot(positives, negatives)) / (n_pos * n_neg))
