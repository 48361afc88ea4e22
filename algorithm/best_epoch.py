"""Early stopping as both estimators do it: the best epoch by a test metric, and its weights."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


def improves(score: float, best: float, tolerance: float) -> bool:
    """Whether ``score`` beats ``best`` (lower is better) by more than ``tolerance`` relative to it."""
    return score < best - tolerance * abs(best) if math.isfinite(best) else score < best


@dataclass
class BestEpoch:
    """The epoch with the best test metric so far (``epoch``, ``score``; -1 and ±inf before any), the epochs
    since (``stale``), the latest score (``last``) and, with ``keep_weights``, a copy of the best epoch's
    weights. An epoch is better when it beats the best by more than ``tolerance`` relative to it; the metric
    is lower-is-better unless ``higher_is_better``."""

    tolerance: float
    keep_weights: bool
    higher_is_better: bool = False
    epoch: int = -1
    stale: int = 0
    last: float = math.nan
    weights: Any = None
    _lowest: float = math.inf  # the best score, negated when higher is better

    @property
    def _sign(self) -> float:
        return -1.0 if self.higher_is_better else 1.0

    @property
    def score(self) -> float:
        return self._sign * self._lowest

    def update(self, epoch: int, score: float, snapshot: Callable[[], Any]) -> None:
        """Record epoch ``epoch``'s score; ``snapshot()`` copies the current weights, called only when they are
        kept."""
        self.last = score
        if improves(self._sign * score, self._lowest, self.tolerance):
            self._lowest, self.epoch, self.stale = self._sign * score, epoch, 0
            if self.keep_weights:
                self.weights = None  # free the previous copy first
                self.weights = snapshot()
        else:
            self.stale += 1

    def progress(self) -> dict[str, float | int]:
        """The counters (not the weights) a checkpoint keeps, for ``resume``."""
        return {"epoch": self.epoch, "stale": self.stale, "last": self.last, "lowest": self._lowest}

    def resume(self, progress: Mapping[str, float | int], weights: Any = None) -> None:
        """Continue from ``progress()`` of an earlier fit, with its kept ``weights``."""
        self.epoch, self.stale = int(progress["epoch"]), int(progress["stale"])
        self.last, self._lowest = float(progress["last"]), float(progress["lowest"])
        self.weights = weights
