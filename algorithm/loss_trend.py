"""Divergence that is not (yet) NaN: a training loss that keeps growing, told apart from noise."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise

RISES = 3  # consecutive epochs the loss must rise
GROWTH = 1.5  # ... ending this many times above its lowest value


@dataclass
class RisingLoss:
    """The training loss of each epoch (the objective the optimizer minimizes, on the same rows every epoch).

    ``diverging`` is true once the loss rose in each of the last ``rises`` epochs and the latest value exceeds
    both ``growth`` times the lowest so far and ``baseline``, the loss of the best constant prediction: the model
    is then worse than knowing nothing about the rows. Epoch-to-epoch noise does not rise that far that
    steadily (a near-zero loss jitters by large factors, but stays far below the baseline), and the training
    loss of a model that overfits keeps falling (overfitting shows in the test metric instead)."""

    baseline: float = 0.0
    rises: int = RISES
    growth: float = GROWTH
    losses: list[float] = field(default_factory=list)

    def update(self, loss: float) -> bool:
        """Record the next epoch's loss; whether the loss is now diverging."""
        self.losses.append(loss)
        return self.diverging

    @property
    def diverging(self) -> bool:
        recent = self.losses[-(self.rises + 1):]
        if len(recent) <= self.rises or not all(b > a for a, b in pairwise(recent)):
            return False
        return recent[-1] > max(self.growth * self.lowest, self.baseline)

    @property
    def lowest(self) -> float:
        return min(self.losses, default=math.inf)

    @property
    def lowest_epoch(self) -> int:
        """The epoch (counted from 0) of the lowest loss; -1 before any."""
        return self.losses.index(self.lowest) if self.losses else -1
