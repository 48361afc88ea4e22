"""Data-parallel FM: one replica's share of a fit (its rows, the packed weights and optimizer state it trains with
the estimator's epoch kernels) and the rule that combines the replicas' changes (``combine``).

A fit on N replicas: each starts from the same table (``FactorizationMachines`` initialization or warm start),
trains its rows in rounds of mini-batches, and after each round sends how the table rows of the features it
touched changed in the round (``changes``: deltas from the round's start); ``Combiner`` merges every replica's
deltas into the round's start (they add up; Adam's moving averages take the mean), and every replica applies
the result (``apply``). After the last round of an epoch every replica holds the same table.
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
def _mark_features(indices, indptr, order, mark, touched, n_touched):  # pragma: no cover - numba
    """Append to ``touched`` (from ``n_touched`` on) the features of rows ``order`` not yet marked; the new count."""
    for r in order:
        for j in range(indptr[r], indptr[r + 1]):
            f = indices[j]
            if not mark[f]:
                mark[f] = True
                touched[n_touched] = f
                n_touched += 1
    return n_touched


@numba.njit(cache=True, nogil=True)
def _deltas(features, table, base, mark, out):  # pragma: no cover - numba
    """``out[i] = table[f] - base[f]`` for each ``features[i] = f``, unmarking f."""
    for i in range(features.size):
        f = features[i]
        mark[f] = False
        for c in range(table.shape[1]):
            out[i, c] = table[f, c] - base[f, c]


@numba.njit(cache=True, nogil=True)
def _put(features, rows, table, base):  # pragma: no cover - numba
    for i in range(features.size):
        f = features[i]
        for c in range(table.shape[1]):
            table[f, c] = rows[i, c]
            base[f, c] = rows[i, c]


@numba.njit(cache=True, nogil=True)
def _add_changes(features, deltas, slot, union, n_union, sums, counts, starts, base):  # pragma: no cover - numba
    """Add one replica's ``deltas`` of ``features`` into ``sums`` (rows by ``slot[f]``, new features appended to
    ``union`` with their ``base`` row copied to ``starts``: each touched row is read from the table once); the new
    union size."""
    for i in range(features.size):
        f = features[i]
        s = slot[f]
        if s < 0:
            s = n_union
            slot[f] = s
            union[s] = f
            n_union += 1
            for c in range(sums.shape[1]):
                sums[s, c] = 0.0
                starts[s, c] = base[f, c]
            counts[s] = 0.0
        for c in range(sums.shape[1]):
            sums[s, c] += deltas[i, c]
        counts[s] += 1.0
    return n_union


@numba.njit(cache=True, nogil=True)
def _finish_rows(union, sums, counts, starts, averaged, slot):  # pragma: no cover - numba
    """``sums`` rows become their start + summed deltas (the mean in ``averaged`` columns); ``slot`` cleared."""
    for s in range(union.size):
        slot[union[s]] = -1
        for c in range(sums.shape[1]):
            value = sums[s, c] / counts[s] if averaged[c] else sums[s, c]
            sums[s, c] = starts[s, c] + value


class FMReplica:
    """One replica of a data-parallel fit of ``model`` (its parameters; it is not changed) on rows ``X``, ``y``
    (and ``sample_weight``); ``rank`` draws this replica's row order apart from the others'."""

    def __init__(self, model: FactorizationMachines, X: Any, y: Any, sample_weight: Any = None, rank: int = 0
                 ) -> None:
        model._check_params()
        self.model, self.rank = model, rank
        self.optimizer = model.resolved_params()["optimizer"]
        self.layout = model._state_layout()
        self.rows, self.y, self.weights, self.row_weight = model._training_rows(X, y, sample_weight)
        self.n_threads = model.num_threads or numba.get_num_threads()
        self.hp = model._hyperparameter_vector()
        self.order = np.arange(self.rows.n_rows, dtype=np.int64)
        self.row_scores = np.zeros(self.rows.n_rows, dtype=np.float32)
        self.mark = np.zeros(model.feature_dim, dtype=np.bool_)  # features trained since the round's start
        self.touched = np.zeros(model.feature_dim, dtype=np.int64)  # ... listed: touched[:n_touched]
        self.n_touched = 0
        self.position = 0
        self.trained = False  # since the last ``changes``
        self.bias = np.zeros(0, dtype=np.float32)
        self.table = np.zeros((0, 0), dtype=np.float32)
        self.base_bias = self.bias
        self.base = self.table  # the table at the round's start (the same on every replica)
        self.step = self.first_epoch = 0
        self._buffers: kernels.Buffers | None = None

    def start(self, bias: np.ndarray, table: np.ndarray, step: int, first_epoch: int) -> None:
        """Begin from the fit's initial bias row, packed table, optimizer steps and earlier epochs."""
        self.bias, self.table = np.array(bias, dtype=np.float32), np.array(table, dtype=np.float32)
        self.base_bias, self.base = self.bias.copy(), self.table.copy()
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
                self.table, model.num_factors, self.layout.code,
                kernels.LOGISTIC if model.predictor_type == "binary_classifier" else kernels.REGRESSION, self.hp,
                model.use_bias, model.use_linear, self.step, self._buffers, self.row_scores)
        self.n_touched = _mark_features(self.rows.indices, self.rows.indptr, order, self.mark, self.touched,
                                        self.n_touched)
        self.position, self.trained = end, True
        return int(order.size)

    def changes(self) -> Update:
        """How the table rows of the features trained since the round's start, and the bias row, changed (empty
        when nothing was trained)."""
        features = np.sort(self.touched[:self.n_touched])  # ascending: table rows read in memory order
        deltas = np.empty((features.size, self.table.shape[1]), dtype=np.float32)
        _deltas(features, self.table, self.base, self.mark, deltas)
        self.n_touched = 0
        bias = self.bias - self.base_bias if self.trained else np.zeros(0, dtype=np.float32)
        self.trained = False
        return Update(features, deltas, bias)

    def apply(self, update: Update) -> None:
        """Take the combined rows and bias of a round (``combine``): the next round starts from them."""
        if update.features.size:
            _put(update.features, update.rows, self.table, self.base)
        if update.bias.size:
            self.bias[:] = update.bias
            self.base_bias[:] = update.bias

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

    def checkpoint_arrays(self) -> dict[str, np.ndarray]:
        """The arrays a checkpoint keeps of this replica's weights and state, named as a one-host fit's
        (``FactorizationMachines.fit``): ``bias`` and ``table`` (in the users' ids: no ``feature_order``)."""
        return {"bias": self.bias, "table": self.table}

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
    return model._initial_table(model._state_layout())


class Combiner:
    """The rule that combines the replicas' changes of a round (``__call__``), with its scratch kept between rounds
    (a slot per feature), for table rows of ``layout`` (the optimizer state, ``FMReplica.layout``) and
    ``num_factors``.

    Per table row, over the replicas that touched it, the changes add up (as if the replicas' mini-batches had run
    one after another: the weights and the accumulators of AdaGrad and FTRL take every replica's steps), but
    Adam's moving averages take the replicas' mean.
    """

    def __init__(self, feature_dim: int, layout: kernels.StateLayout, num_factors: int) -> None:
        weights = 1 + num_factors
        self.slot = np.full(feature_dim, -1, dtype=np.int64)
        self.averaged = np.zeros(layout.width(num_factors), dtype=np.bool_)  # the columns that take the mean
        if layout.code == kernels.OPTIMIZER_CODES["adam"]:
            self.averaged[weights:] = True

    def __call__(self, changes: list[Update], base: np.ndarray, base_bias: np.ndarray) -> Update:
        """The round's result every replica applies: the start (``base``, ``base_bias``) and the replicas'
        changes combined by the rule."""
        bound = min(self.slot.size, sum(change.features.size for change in changes))
        union = np.empty(bound, dtype=np.int64)
        sums = np.empty((bound, base.shape[1]), dtype=np.float32)
        counts = np.empty(bound, dtype=np.float32)
        starts = np.empty_like(sums)  # the union's rows of ``base``
        n = 0
        for change in changes:
            n = _add_changes(change.features, change.rows, self.slot, union, n, sums, counts, starts, base)
        union, sums, counts = union[:n], sums[:n], counts[:n]
        _finish_rows(union, sums, counts, starts, self.averaged, self.slot)
        biases = [change.bias for change in changes if change.bias.size]
        bias = base_bias.copy()
        if biases:
            bias += np.sum(biases, axis=0)
            if self.averaged.any():  # Adam: the bias's moving averages take the mean
                bias[1:] = base_bias[1:] + np.mean(biases, axis=0)[1:]
        return Update(union, sums, bias.astype(np.float32))
