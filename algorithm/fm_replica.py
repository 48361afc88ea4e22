"""Data-parallel FM: one replica's share of a fit (its rows, the packed weights and optimizer state it trains with
the estimator's epoch kernels) and the rule that combines the replicas' changes (``combine``).

A fit on N replicas: each starts from the same table (``FactorizationMachines`` initialization or warm start),
trains its rows in rounds of mini-batches, and after each round sends the table rows of the features it touched
(``changes``); ``combine`` gives each such row the mean of the replicas that touched it (a feature only one replica
saw keeps that replica's update whole, a feature every replica saw gets their average, the bias too), and every
replica applies the result (``apply``). After the last round of an epoch every replica holds the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from algorithm import _fm_kernels as kernels
from algorithm._threads import numba_threads
from algorithm.best_epoch import BestEpoch
from algorithm.fm import FactorizationMachines, _constant_prediction_loss, _score, _training_buffers
from algorithm.metrics import train_metrics


@dataclass(frozen=True)
class Update:
    """Table rows by feature (``features`` sorted, ``rows`` the packed table rows of them) and the bias row."""

    features: np.ndarray
    rows: np.ndarray
    bias: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.features.nbytes + self.rows.nbytes + self.bias.nbytes)


@dataclass(frozen=True)
class EpochSums:
    """A replica's epoch: its rows, their total loss weight, the summed training loss, the train metrics of its
    rows and the loss per unit of weight of its best constant prediction."""

    rows: int
    weight: float
    loss: float
    metrics: dict[str, float]
    constant_loss: float


@numba.njit(cache=True, nogil=True)
def _mark_features(indices: np.ndarray, indptr: np.ndarray, order: np.ndarray, mark: np.ndarray) -> None:
    for r in order:
        for j in range(indptr[r], indptr[r + 1]):
            mark[indices[j]] = True


class FMReplica:
    """One replica of a data-parallel fit of ``model`` (its parameters; it is not changed) on rows ``X``, ``y``
    (and ``sample_weight``); ``rank`` draws this replica's row order apart from the others'."""

    def __init__(self, model: FactorizationMachines, X: Any, y: Any, sample_weight: Any = None, rank: int = 0
                 ) -> None:
        model._check_params()
        self.model, self.rank = model, rank
        self.optimizer = model.resolved_params()["optimizer"]
        self.rows, self.y, self.weights, self.row_weight = model._training_rows(X, y, sample_weight)
        self.n_threads = model.num_threads or numba.get_num_threads()
        self.hp = model._hyperparameter_vector()
        self.order = np.arange(self.rows.n_rows, dtype=np.int64)
        self.row_scores = np.zeros(self.rows.n_rows, dtype=np.float32)
        self.touched = np.zeros(model.feature_dim, dtype=np.bool_)
        self.position = 0
        self.trained = False  # since the last ``changes``
        self.bias = np.zeros(0, dtype=np.float32)
        self.table = np.zeros((0, 0), dtype=np.float32)
        self.step = self.first_epoch = 0
        self._buffers: kernels.Buffers | None = None

    def start(self, bias: np.ndarray, table: np.ndarray, step: int, first_epoch: int) -> None:
        """Begin from the fit's initial bias row, packed table, optimizer steps and earlier epochs."""
        self.bias, self.table = np.array(bias, dtype=np.float32), np.array(table, dtype=np.float32)
        self.step, self.first_epoch = int(step), int(first_epoch)

    def begin_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s row order (from seed, epoch and rank) and reset its loss."""
        rng = np.random.default_rng([self.model.seed, 1, self.first_epoch + epoch, self.rank])
        self.order = rng.permutation(self.rows.n_rows).astype(np.int64)
        self.position = 0
        self.row_scores[:] = 0.0
        if self._buffers is not None:
            self._buffers.loss[:] = 0.0

    @property
    def epoch_done(self) -> bool:
        return self.position >= self.rows.n_rows

    def train(self, batches: int) -> int:
        """Train the next ``batches`` mini-batches of the epoch (all that are left when 0); the rows trained."""
        model = self.model
        size = model.mini_batch_size
        end = self.rows.n_rows if batches <= 0 else min(self.rows.n_rows, self.position + batches * size)
        if end <= self.position:
            return 0
        order = self.order[self.position:end]
        with numba_threads(self.n_threads) as running:
            kernel, shares = model._epoch_kernel(self.n_threads, running)
            if self._buffers is None:
                self._buffers = _training_buffers(shares, self.rows, size, model.feature_dim, model.num_factors,
                                                  split_batches=kernel is kernels.train_epoch_parallel)
            rows = self.rows
            self.step = kernel(
                (rows.data, rows.indices, rows.indptr), self.y, self.row_weight, order, size, self.bias,
                self.table, model.num_factors, kernels.OPTIMIZER_CODES[self.optimizer],
                kernels.LOGISTIC if model.predictor_type == "binary_classifier" else kernels.REGRESSION, self.hp,
                model.use_bias, model.use_linear, self.step, self._buffers, self.row_scores)
        _mark_features(self.rows.indices, self.rows.indptr, order, self.touched)
        self.position, self.trained = end, True
        return int(order.size)

    def changes(self) -> Update:
        """The table rows of the features trained since the last call, and the bias row (empty when nothing was
        trained)."""
        features = np.flatnonzero(self.touched)
        self.touched[:] = False
        bias = self.bias.copy() if self.trained else np.zeros(0, dtype=np.float32)
        self.trained = False
        return Update(features, self.table[features], bias)

    def apply(self, update: Update) -> None:
        """Take the combined rows and bias of a round."""
        if update.features.size:
            self.table[update.features] = update.rows
        if update.bias.size:
            self.bias[:] = update.bias

    def epoch_sums(self) -> EpochSums:
        """This replica's epoch so far (``EpochSums``)."""
        logistic = self.model.predictor_type == "binary_classifier"
        loss = 0.0 if self._buffers is None else float(self._buffers.loss.sum())
        weight = float(self.row_weight.sum()) if self.row_weight.size else float(self.rows.n_rows)
        return EpochSums(self.rows.n_rows, weight, loss,
                         train_metrics(self.model.predictor_type, self.y, self.row_scores, self.weights),
                         _constant_prediction_loss(self.y, self.row_weight, logistic))

    def scores(self, X: Any) -> np.ndarray:
        """Scores of rows ``X`` with the replica's current weights (the model's once every replica applied the
        epoch's last update)."""
        rows = X
        k = self.model.num_factors
        return _score(rows, self.bias[:1], self.table[:, 0], self.table[:, 1:1 + k],
                      self.model.predictor_type == "binary_classifier", self.n_threads)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, int]:
        """A copy of the weights and state (for early stopping's best epoch)."""
        return self.bias.copy(), self.table.copy(), self.step

    def keep_fit(self, epoch: int, best: BestEpoch, stopped: str | None, *, evaluated: bool,
                 early_stopping: bool) -> FactorizationMachines:
        """Set ``model``'s fitted state from this replica's table after the last ``epoch`` (or the best epoch's
        copy): the model's artifact is that of a one-host fit. The replica's table is consumed."""
        table, self.table = self.table, np.zeros((0, 0), dtype=np.float32)
        return self.model._keep_fit(self.bias, table, self.step, epoch, best, stopped, self.optimizer,
                                    self.first_epoch, self.n_threads, evaluated=evaluated,
                                    early_stopping=early_stopping)


def initial_state(model: FactorizationMachines) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The fit's starting bias row, packed table, optimizer steps and earlier epochs (initialization from the
    seed, or the warm start ``model.warm_start_from`` set)."""
    model._check_params()
    return model._initial_table(kernels.STATE_ARRAYS[model.resolved_params()["optimizer"]])


def combine(changes: list[Update]) -> Update:
    """The update every replica applies: each touched table row the mean of the replicas that touched it, the
    bias row the mean of the replicas that trained (sent a bias row)."""
    trained = [change for change in changes if change.bias.size]
    features = np.unique(np.concatenate([change.features for change in changes])) if changes else np.zeros(0, int)
    width = next((change.rows.shape[1] for change in changes if change.rows.ndim == 2), 0)
    sums = np.zeros((features.size, width), dtype=np.float32)
    counts = np.zeros(features.size, dtype=np.float32)
    for change in changes:
        at = np.searchsorted(features, change.features)
        sums[at] += change.rows
        counts[at] += 1.0
    sums /= np.maximum(counts, 1.0)[:, None]
    bias = (np.mean([change.bias for change in trained], axis=0).astype(np.float32) if trained
            else np.zeros(0, dtype=np.float32))
    return Update(features, sums, bias)
