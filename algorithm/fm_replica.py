"""Data-parallel FM: one replica's share of a fit (its rows, the packed weights and optimizer state it trains with
the estimator's epoch kernels) and the rule that combines the replicas' changes (``combine``).

A fit on N replicas: each starts from the same table, its rows renumbered by how many training rows of *all*
replicas use each feature (``sync_plan``: one ``FeatureLayout`` for every replica), and trains its rows in rounds
of mini-batches. After a round a replica sends how a ``Part`` of the table changed since it was last combined
(``changes``): the weights of the **hot** rows (the features a round's rows use many times, whose steps would pile
up if the replicas took them apart for long) and of one slice of the other used rows (the features some training
row uses), a different slice each round, so that an epoch's rounds combine every used row once and no round sends
much more than another; the optimizer state (AdaGrad's and FTRL's accumulators, Adam's moments) stays with each
replica, which steps by its own gradients, and is combined only when the fit needs it whole (``STATE``: early
stopping's best epoch, checkpoints, the end). ``combine`` adds the replicas' changes (as if their mini-batches had
run one after another; a row more than two replicas changed takes two replicas' worth; Adam's moving averages take
the mean over the replicas that changed a row); every replica takes the result (``apply``), also while it trains
on (its own changes since it sent are kept). After a ``STATE`` combination every replica holds the same weights.

Rare features are thus combined once per epoch, the frequent ones every round: the hot rows and each slice are
contiguous rows of the renumbered table, so a round sends and adds plain arrays (no per-feature lists) and costs
little beside training (docs/distributed.md measures the rule against combining every touched row every round).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from algorithm import _fm_kernels as kernels
from algorithm import _replica_kernels as replica_kernels
from algorithm._threads import numba_threads
from algorithm.best_epoch import BestEpoch
from algorithm.feature_layout import FeatureLayout
from algorithm.fm import (
    FactorizationMachines,
    _constant_prediction_loss,
    _renumbered,
    _score_arrays,
    _training_buffers,
    order_dtype,
)
from algorithm.metrics import train_metrics

HOT_TOUCHES = 10  # a feature is hot when a round's rows (all replicas') are expected to use it this often
SUMMED_HOSTS = 2  # a row's changes add up over at most this many replicas' worth (``combine``)


@dataclass(frozen=True)
class Block:
    """A block of the renumbered table: its rows [0, ``rows.shape[0]``) in the first ``rows.shape[1]`` columns
    (changes, or the combined values), and the bias row (empty: unchanged)."""

    rows: np.ndarray
    bias: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.rows.nbytes + self.bias.nbytes)


@dataclass(frozen=True)
class Part:
    """The rows and columns of the renumbered table a block holds: the hot rows' and the ``index``-th of
    ``count`` slices of the other used rows' weights (an epoch's round ``index`` of ``count``), or every used row,
    weights and optimizer state (``state``)."""

    index: int = 0
    count: int = 1
    state: bool = False


STATE = Part(state=True)


@dataclass(frozen=True)
class SyncPlan:
    """How the replicas of a fit share their table: ``order`` the users' feature of each training row (most used
    first), ``hot`` the leading rows combined every round, ``used`` the leading rows some training row uses (the
    others never change)."""

    order: np.ndarray
    hot: int
    used: int


def sync_plan(counts: np.ndarray, rows_per_round: int, total_rows: int, hot_touches: float = HOT_TOUCHES
              ) -> SyncPlan:
    """The plan of a fit whose replicas' rows use feature ``i`` ``counts[i]`` times in all (``total_rows`` rows),
    ``rows_per_round`` of them trained between two combinations (0: one combination per epoch, no hot rows); a
    feature is hot when a round's rows are expected to use it at least ``hot_touches`` times."""
    order = np.argsort(-counts, kind="stable")
    sorted_counts = counts[order]
    used = int(np.count_nonzero(sorted_counts))
    hot = 0
    if rows_per_round > 0 and total_rows > 0:
        hot = int(np.count_nonzero(sorted_counts * (rows_per_round / total_rows) >= hot_touches))
    return SyncPlan(order, hot, used)


@dataclass(frozen=True)
class EpochSums:
    """A replica's epoch: its rows, their total loss weight, the summed training loss, the train metrics of its
    rows and the loss per unit of weight of its best constant prediction."""

    rows: int
    weight: float
    loss: float
    metrics: dict[str, float]
    constant_loss: float


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
        self.order: np.ndarray = np.arange(self.rows.n_rows, dtype=order_dtype(self.rows.n_rows))
        self.row_scores = np.zeros(self.rows.n_rows, dtype=np.float32)
        self.position = 0
        self._carried_loss = 0.0  # the epoch's loss before a checkpoint it resumed (``resume_epoch``)
        self.trained = False  # since the last ``changes``
        self.sent: Block | None = None  # the block and bias as they were when ``changes`` last sent their changes
        self.sent_ranges = np.zeros((0, 2), dtype=np.int64)  # the table's rows of that block ([start, stop) pairs)
        self.sent_base: np.ndarray = np.zeros((0, 0), dtype=np.float32)  # those rows as last combined
        self.features: FeatureLayout | None = None  # the plan's renumbering (``start``)
        self.X: tuple[np.ndarray, np.ndarray, np.ndarray] = (self.rows.data, self.rows.indices, self.rows.indptr)
        self.hot = self.used = 0
        self.bias = np.zeros(0, dtype=np.float32)
        self.table = np.zeros((0, 0), dtype=np.float32)
        self.base_bias = self.bias
        self.base = self.table  # the used rows as last combined (the same on every replica)
        self.step = self.first_epoch = 0
        self._buffers: kernels.Buffers | None = None
        self._blocks: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}  # per shape: changes, as sent, base

    def feature_counts(self) -> np.ndarray:
        """How many of this replica's rows use each feature (``sync_plan`` takes every replica's sum)."""
        return np.bincount(self.rows.indices, minlength=self.model.feature_dim)

    def start(self, bias: np.ndarray, table: np.ndarray, step: int, first_epoch: int, plan: SyncPlan) -> None:
        """Begin from the fit's initial bias row, packed table (users' ids), optimizer steps and earlier epochs,
        renumbered by ``plan`` (the same on every replica)."""
        self.features = FeatureLayout.from_order(plan.order)
        self.X = _renumbered(self.rows, self.features)
        self.hot, self.used = plan.hot, plan.used
        self.bias, self.table = np.array(bias, dtype=np.float32), np.array(table, dtype=np.float32)
        self.features.to_training(self.table)
        self.base_bias, self.base = self.bias.copy(), self.table[:self.used].copy()
        self.step, self.first_epoch = int(step), int(first_epoch)

    def begin_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s row order (from seed, epoch and rank) and reset its loss."""
        rng = np.random.default_rng([self.model.seed, 1, self.first_epoch + epoch, self.rank])
        self.order = rng.permutation(self.rows.n_rows).astype(order_dtype(self.rows.n_rows))
        self.position = 0
        self.row_scores[:] = 0.0
        self._carried_loss = 0.0
        if self._buffers is not None:
            self._buffers.loss[:] = 0.0

    def round_arrays(self) -> dict[str, np.ndarray]:
        """This replica's own weights and state between two rounds (``restore`` takes them back): its bias row and
        table, the used rows and bias as last combined, and whether it trained since it last sent changes."""
        return {"bias": self.bias, "table": self.table, "base": self.base, "base_bias": self.base_bias,
                "trained": np.array([self.trained])}

    def restore(self, arrays: dict[str, np.ndarray], step: int) -> None:
        """Take back ``round_arrays`` and the optimizer steps after ``start`` (the same plan): nothing is in
        flight (every combination sent was applied)."""
        for name, array in self.round_arrays().items():
            if arrays[name].shape != array.shape:
                raise ValueError(f"a checkpoint's {name} of shape {arrays[name].shape} does not fit this replica's "
                                 f"{array.shape}")
        self.bias, self.table = arrays["bias"].copy(), arrays["table"].copy()
        self.base, self.base_bias = arrays["base"].copy(), arrays["base_bias"].copy()
        self.step, self.sent, self.trained = int(step), None, bool(arrays["trained"][0])

    def epoch_progress(self) -> tuple[int, np.ndarray, float]:
        """Where this replica is in its epoch: the rows trained, their scores (all rows: zeros for the others)
        and their summed loss (what a checkpoint within the epoch keeps)."""
        loss = self._carried_loss + (0.0 if self._buffers is None else float(self._buffers.loss.sum()))
        return self.position, self.row_scores, loss

    def resume_epoch(self, epoch: int, position: int, row_scores: np.ndarray, loss: float) -> None:
        """Continue epoch ``epoch`` from ``epoch_progress``'s ``position``, ``row_scores`` and ``loss``."""
        if not 0 <= position <= self.rows.n_rows or row_scores.shape != self.row_scores.shape:
            raise ValueError(f"a position in the epoch at row {position} with {row_scores.size} scores does not fit "
                             f"this replica's {self.rows.n_rows} rows")
        self.begin_epoch(epoch)
        self.position, self._carried_loss = int(position), float(loss)
        self.row_scores[:] = row_scores

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
            if self._carried_loss:  # (resumed within the epoch: it sums on, as a one-host fit's does)
                self._buffers.loss[0] += self._carried_loss
                self._carried_loss = 0.0
            self.step = kernel(
                self.X, self.y, self.row_weight, order, size, self.bias, self.table, model.num_factors,
                self.layout.code,
                kernels.LOGISTIC if model.predictor_type == "binary_classifier" else kernels.REGRESSION, self.hp,
                model.use_bias, model.use_linear, self.step, self._buffers, self.row_scores)
        self.position, self.trained = end, True
        return int(order.size)

    def ranges(self, part: Part) -> tuple[tuple[int, int], ...]:
        """The table's rows [start, stop) of ``part``, in order."""
        if part.state:
            return ((0, self.used),)
        cold = self.used - self.hot
        start, stop = (self.hot + cold * i // part.count for i in (part.index, part.index + 1))
        if start == self.hot:
            return ((0, stop),)
        return tuple(r for r in ((0, self.hot), (start, stop)) if r[1] > r[0])

    def changes(self, part: Part) -> Block:
        """How ``part`` of the table changed since it was last combined (its rows in order), and the bias row
        (empty when nothing was trained). Its combination (``combine`` with ``sent_base``) is taken by ``apply``,
        before the next changes. The arrays are the replica's own, overwritten by the next changes of that
        shape."""
        ranges = self.ranges(part)
        columns = self.table.shape[1] if part.state else 1 + self.model.num_factors
        shape = (sum(stop - start for start, stop in ranges), columns)
        if shape not in self._blocks:  # (reused: new arrays of this size would page-fault on every round)
            self._blocks[shape] = tuple(np.empty(shape, np.float32) for _ in range(3))
        rows, now, base = self._blocks[shape]
        rows_of = np.array(ranges, dtype=np.int64).reshape(-1, 2)
        replica_kernels.take_changes(self.table, self.base, rows_of, now, base, rows)
        self.sent, self.sent_ranges, self.sent_base = Block(now, self.bias.copy()), rows_of, base
        bias = self.bias - self.base_bias if self.trained else np.zeros(0, dtype=np.float32)
        self.trained = False
        return Block(rows, bias)

    def apply(self, combined: Block) -> None:
        """Take the combination of the block ``changes`` last sent (``combine``): the changes trained since it
        was sent stay on top of it."""
        sent, self.sent = self.sent, None
        if sent is None or sent.rows.shape != combined.rows.shape:
            raise ValueError(f"a combined block of shape {combined.rows.shape} does not match the block sent")
        replica_kernels.apply_combination(self.table, self.base, self.sent_ranges, sent.rows, combined.rows)
        if combined.bias.size:
            self.bias -= sent.bias
            self.bias += combined.bias
            self.base_bias[:] = combined.bias

    def epoch_sums(self) -> EpochSums:
        """This replica's epoch so far (``EpochSums``)."""
        logistic = self.model.predictor_type == "binary_classifier"
        loss = self.epoch_progress()[2]
        weight = float(self.row_weight.sum()) if self.row_weight.size else float(self.rows.n_rows)
        return EpochSums(self.rows.n_rows, weight, loss,
                         train_metrics(self.model.predictor_type, self.y, self.row_scores, self.weights),
                         _constant_prediction_loss(self.y, self.row_weight, logistic))

    def scores(self, X: Any) -> np.ndarray:
        """Scores of rows ``X`` (users' ids) with the replica's current weights (the model's once every replica
        applied the epoch's last update)."""
        k = self.model.num_factors
        return _score_arrays(_renumbered(X, self.features), self.bias[:1], self.table[:, 0],
                             self.table[:, 1:1 + k], self.model.predictor_type == "binary_classifier",
                             self.n_threads)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, int]:
        """A copy of the weights and state (for early stopping's best epoch)."""
        return self.bias.copy(), self.table.copy(), self.step

    def checkpoint_arrays(self) -> dict[str, np.ndarray]:
        """The arrays a checkpoint keeps of this replica's weights and state, named as a one-host fit's
        (``FactorizationMachines.fit``): ``bias``, ``table`` and ``feature_order`` (the table is in its rows)."""
        arrays = {"bias": self.bias, "table": self.table}
        if self.features is not None:
            arrays["feature_order"] = self.features.order
        return arrays

    def keep_fit(self, epoch: int, best: BestEpoch, stopped: str | None, *, evaluated: bool,
                 early_stopping: bool) -> FactorizationMachines:
        """Set ``model``'s fitted state from this replica's table after the last ``epoch`` (or the best epoch's
        copy), back in the users' ids: the model's artifact is that of a one-host fit. The replica's table is
        consumed."""
        table, self.table = self.table, np.zeros((0, 0), dtype=np.float32)
        return self.model._keep_fit(self.bias, table, self.step, epoch, best, stopped, self.optimizer,
                                    self.first_epoch, self.n_threads, evaluated=evaluated,
                                    early_stopping=early_stopping, layout=self.features)


def initial_state(model: FactorizationMachines) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The fit's starting bias row, packed table, optimizer steps and earlier epochs (initialization from the
    seed, or the warm start ``model.warm_start_from`` set)."""
    model._check_params()
    return model._initial_table(model._state_layout())


@dataclass(frozen=True)
class ColumnRules:
    """How ``combine`` treats the columns of the packed table: the ``averaged`` ones (Adam's moving averages)
    take the mean over the replicas that changed a row; the leading ``weights`` ones ([w, V]) add up over at
    most ``SUMMED_HOSTS`` replicas' worth; the others (accumulated optimizer state) add up."""

    averaged: np.ndarray
    weights: int


def column_rules(layout: kernels.StateLayout, num_factors: int) -> ColumnRules:
    """The ``ColumnRules`` of a packed table of ``layout`` with ``num_factors`` factors."""
    averaged = np.zeros(layout.width(num_factors), dtype=np.bool_)
    if layout.code == kernels.OPTIMIZER_CODES["adam"]:
        averaged[1 + num_factors:] = True
    return ColumnRules(averaged, 1 + num_factors)


def combine(changes: list[Block], base: np.ndarray, base_bias: np.ndarray, rules: ColumnRules,
            out: np.ndarray | None = None) -> Block:
    """The block every replica applies: the rows as last combined (``base``: ``FMReplica.sent_base``, and
    ``base_bias``) plus the replicas' ``changes`` (all of one shape) added up, except that the averaged columns
    take the mean over the replicas that changed the row, and the weights of a row (or the bias) that more than
    ``SUMMED_HOSTS`` replicas changed take their mean times ``SUMMED_HOSTS``: each replica steps a frequent feature
    most of the way to where its own rows pull it, and the sum of three or more such steps overshoots by more than
    it corrects (docs/distributed.md). ``out``: an array of that shape to hold the rows."""
    n, columns = changes[0].rows.shape
    total = np.empty((n, columns), np.float32) if out is None else out
    np.copyto(total, changes[0].rows)
    for change in changes[1:]:
        total += change.rows
    mean = rules.averaged[:columns]
    capped = len(changes) > SUMMED_HOSTS
    if mean.any() or capped:
        changed = np.zeros(n, dtype=np.float32)
        for change in changes:
            changed += np.any(change.rows != 0.0, axis=1)
        np.maximum(changed, 1.0, out=changed)
        if capped:
            total[:, :rules.weights] *= (np.minimum(changed, SUMMED_HOSTS) / changed)[:, None]
        if mean.any():
            total[:, mean] = np.sum([change.rows[:, mean] for change in changes], axis=0) / changed[:, None]
    total += base[:n, :columns]
    biases = [change.bias for change in changes if change.bias.size]
    bias = base_bias.copy()
    if biases:
        summed = np.sum(biases, axis=0)
        summed[0] *= min(len(biases), SUMMED_HOSTS) / len(biases)
        bias += summed
        if rules.averaged.any():  # Adam: the bias's moving averages take the mean
            bias[1:] = base_bias[1:] + np.mean(biases, axis=0)[1:]
    return Block(total, bias.astype(np.float32))
