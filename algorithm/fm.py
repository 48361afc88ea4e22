"""``FactorizationMachines``: the estimator around the numba kernels (parameters, epoch loop, early stopping,
prediction), following scikit-learn conventions.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numba
import numpy as np

from algorithm import _fm_kernels as kernels
from algorithm._threads import numba_threads
from algorithm.base import DivergedError, Estimator, NotFittedError
from algorithm.best_epoch import BestEpoch
from algorithm.block_position import BlockPosition, check_pass, skip_blocks
from algorithm.checkpoint import START_OVER, CheckpointError, Checkpoints, TrainingStopped
from algorithm.csr import CSR
from algorithm.feature_layout import FeatureLayout
from algorithm.hyperparameters import defaults
from algorithm.loss_trend import RisingLoss
from algorithm.metrics import STOPPING_METRIC, train_metrics
from algorithm.optimizer_defaults import resolve_optimizer_defaults
from algorithm.row_blocks import RUN_ROWS, RowBlocks, block_order, rows_order
from algorithm.schemas import FM_SCHEMA
from algorithm.stream_metrics import StreamingMetrics

log = logging.getLogger(__name__)

OnEpoch = Callable[[int, dict[str, float], "dict[str, float] | None", float], None]
OnBlock = Callable[[int, int, int, float], None]  # (epoch, rows done in it, of them trained by this fit, seconds)

PREDICTOR_TYPES = FM_SCHEMA["predictor_type"].choices
OPTIMIZERS = FM_SCHEMA["optimizer"].choices
_DEFAULTS = defaults(FM_SCHEMA)
GROUPS = ("bias", "linear", "factors")
# predict_scores uses the parallel kernel from this many nonzeros on (serving sends small requests).
PARALLEL_SCORING_NNZ = 200_000
INIT_BLOCK_ROWS = 65_536  # rows of the table initialized per block
CHECK_BLOCK = 65_536  # values (rows) per block of the input checks: no whole-column temporaries beside the data
BLOCKS_PER_BUFFER = 4  # stream_buffer_mb holds this many blocks (the one trained on, the next being decoded, ...)
# Rows per call of the epoch kernel: at most CHUNK_ROWS and about CHUNK_SECONDS of training at the rate of the
# previous call (whole mini-batches, at least one): stop requests and checkpoints happen between calls, so a
# stop waits about CHUNK_SECONDS even on a loaded machine. Shorter calls slow Hogwild epochs on a loaded
# machine (each call ends waiting for the slowest thread): 0.1 s cost 1.6x there, 0.5 s 1.02x
# (bench/bench_fm_chunks.py).
CHUNK_ROWS = 1 << 20
CHUNK_SECONDS = 0.5
FIRST_CHUNK_ROWS = 4_096
# Settings a checkpoint may be resumed under with other values: they do not change what the state means.
RESUMABLE_CHANGES = ("epochs", "num_threads")

SCORING_FORMULA = (
    "z = w0[0] + sum_i w[i]*x[i] + 0.5*sum_f((sum_i V[i,f]*x[i])**2 - sum_i V[i,f]**2*x[i]**2); "
    "score = 1/(1+exp(-z)) for binary_classifier (predicted_label = 1.0 if score >= 0.5 else 0.0), "
    "score = z for regressor"
)


def _checked_rows(X: Any, feature_dim: int, what: str = "X") -> CSR:
    """``X`` (a ``CSR``, a scipy sparse matrix or a dense 2-D array: ``CSR.from_matrix``) as a ``CSR``
    whose feature indices lie in [0, feature_dim). Sparse input is never densified."""
    rows = X if isinstance(X, CSR) else CSR.from_matrix(X, what=what)
    if rows.nnz:
        low, high = int(rows.indices.min()), int(rows.indices.max())
        if low < 0 or high >= feature_dim:
            bad = high if high >= feature_dim else low
            raise ValueError(f"{what} has feature index {bad}, outside [0, feature_dim={feature_dim})")
    return rows


def _first_non_finite(values: np.ndarray) -> int | None:
    """Position of the first NaN or infinite value of a 1-D array, checked in blocks; None if all are finite."""
    for start in range(0, values.size, CHECK_BLOCK):
        bad = np.flatnonzero(~np.isfinite(values[start:start + CHECK_BLOCK]))
        if bad.size:
            return start + int(bad[0])
    return None


def _as_vector(values: Any, n: int, what: str) -> np.ndarray:
    vector = np.ascontiguousarray(values, dtype=np.float32)
    if vector.shape != (n,):
        raise ValueError(f"{what} must have one value per row: shape ({n},), got {vector.shape}")
    bad = _first_non_finite(vector)
    if bad is not None:
        raise ValueError(f"{what} of row {bad} is {vector[bad]}; every value must be finite")
    return vector


def _as_labels(y: Any, n: int, predictor_type: str, what: str = "y") -> np.ndarray:
    labels = _as_vector(y, n, what)
    if predictor_type == "binary_classifier":
        bad = np.flatnonzero((labels != 0) & (labels != 1))
        if bad.size:
            raise ValueError(f"{what} of row {bad[0]} is {labels[bad[0]]:g}; "
                             "predictor_type=binary_classifier needs labels 0 or 1")
    return labels


def _init_array(rng: np.random.Generator, shape: tuple[int, ...], method: str, sigma: float,
                scale: float | None, value: float | None) -> np.ndarray:
    if method == "normal":
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)).astype(np.float32)
    if method == "uniform":
        bound = math.sqrt(3.0) * sigma if scale is None else scale
        return rng.uniform(-bound, bound, shape).astype(np.float32)
    return np.full(shape, 0.0 if value is None else value, dtype=np.float32)


@dataclass(frozen=True)
class OptimizerState:
    """Where training left off, for a warm start to continue from: the ``optimizer``, its state arrays by
    name (``<state>_<weights>`` for each of ``kernels.STATE_NAMES[optimizer]``, e.g. Adam's ``m_w0``,
    ``m_w``, ``m_V``, ``v_w0``, ``v_w``, ``v_V``, float32 and shaped like w0, w, V; row-wise AdaGrad's ``h_V``
    is (feature_dim, 1), one value per feature for its k factors), the optimizer ``steps``
    taken (one per mini-batch: Adam's bias correction counts them) and the ``epochs`` the weights have been
    trained (the next epoch's row order is drawn from the seed and this count)."""

    optimizer: str
    steps: int
    epochs: int
    arrays: dict[str, np.ndarray]

    def matches(self, feature_dim: int, num_factors: int, factor_width: int | None = None) -> bool:
        """Whether the arrays are exactly the optimizer's, shaped for this model size, with ``factor_width``
        state values per feature for the factors (None: any the optimizer can keep, num_factors or, for
        AdaGrad, 1)."""
        if self.optimizer not in kernels.STATE_NAMES:
            return False
        widths = ([factor_width] if factor_width is not None else
                  sorted({kernels.state_layout(self.optimizer, num_factors, adagrad_state).factor_width
                          for adagrad_state in kernels.ADAGRAD_STATES}))
        got = {name: array.shape for name, array in self.arrays.items()}
        for width in widths:
            shapes = {"w0": (1,), "w": (feature_dim,), "V": (feature_dim, width)}
            if got == {f"{state}_{name}": shape for state in kernels.STATE_NAMES[self.optimizer]
                       for name, shape in shapes.items()}:
                return True
        return False

    def factor_width(self) -> int | None:
        """State values per feature for the factors (None for a state-less optimizer)."""
        names = kernels.STATE_NAMES.get(self.optimizer, ())
        return self.arrays[f"{names[0]}_V"].shape[1] if names and f"{names[0]}_V" in self.arrays else None


def _longest_rows(indptr: np.ndarray, count: int) -> np.ndarray:
    """Nonzero counts of the ``count`` longest rows (at least one value), found over blocks of rows."""
    longest = np.zeros(1, dtype=np.int64)
    for r0 in range(0, len(indptr) - 1, CHECK_BLOCK):
        both = np.concatenate([longest, np.diff(indptr[r0:r0 + CHECK_BLOCK + 1])])
        longest = np.partition(both, both.size - count)[both.size - count:] if both.size > count else both
    return longest


def _training_buffers(n_threads: int, rows: CSR, batch_size: int, feature_dim: int, num_factors: int,
                      split_batches: bool = True, current: kernels.Buffers | None = None) -> kernels.Buffers:
    """Per-thread scratch of the training kernels (``kernels.Buffers``) for ``rows`` in batches of ``batch_size``.
    ``split_batches``: each batch is cut into one chunk per thread (the deterministic kernel); otherwise every
    thread runs whole batches (serial and Hogwild kernels). ``current``: buffers of earlier rows (a streamed
    fit's earlier blocks), returned as they are when large enough, else grown (their feature map kept);
    ``short_rows`` and ``pair_rows`` always tell whether every row of ``rows`` has at most two nonzeros, and
    exactly two (then row r's are at 2r)."""
    chunk = min(batch_size, rows.n_rows)  # rows per thread per batch
    if split_batches:
        chunk = -(-chunk // n_threads)
    longest = _longest_rows(rows.indptr, chunk)  # a chunk touches at most their sum of distinct features
    slots = max(1, min(feature_dim, int(longest.sum())))
    row_length = _line_padded(max(1, int(longest.max())), 8)
    short_rows = int(longest.max()) <= 2  # (kernels._short_rows_pass)
    # (at most two a row and 2·n in all: exactly two each; kernels._pair_rows_pass)
    pair_rows = short_rows and int(rows.indptr[-1]) == 2 * rows.n_rows
    T, k = n_threads, num_factors
    if current is not None:
        if slots <= current.grad.shape[1] and row_length <= current.row_slots.shape[1]:
            return current._replace(short_rows=short_rows, pair_rows=pair_rows)
        slots, row_length = max(slots, current.grad.shape[1]), max(row_length, current.row_slots.shape[1])
    return kernels.Buffers(
        slot_of=np.zeros((T, feature_dim), dtype=np.int32) if current is None else current.slot_of,
        slot_feature=np.zeros((T, slots), dtype=np.int64),
        n_slots=np.zeros(T, dtype=np.int64),
        grad=np.zeros((T, slots, 1 + k), dtype=np.float32),
        bias_grad=np.zeros(T, dtype=np.float64),
        sums=np.zeros((T, _line_padded(1 + k, 4)), dtype=np.float32),
        squares=np.zeros((T, _line_padded(k, 4)), dtype=np.float32),
        row_slots=np.zeros((T, row_length), dtype=np.int64),
        loss=np.zeros(T, dtype=np.float64) if current is None else current.loss,
        short_rows=short_rows,
        pair_rows=pair_rows,
    )


def _line_padded(n: int, itemsize: int) -> int:
    """Row length for ``n`` items of ``itemsize`` bytes that keeps each thread's row of a (threads, n) scratch
    array off its neighbours' cache lines (whole lines, plus one line of gap): the rows written per nonzero
    would otherwise bounce one line between the cores."""
    per_line = kernels.LINE_FLOATS * 4 // itemsize  # items per 64-byte line
    return (-(-n // per_line) + 1) * per_line


class FactorizationMachines(Estimator):
    """Second-order Factorization Machine trained with mini-batch AdaGrad, Adam (the optimizer of SageMaker's
    built-in FM), SGD or FTRL; the parameters are the built-in's hyperparameters (``FM_SCHEMA`` in
    ``algorithm.schemas``, which also holds their defaults and allowed values).

    Initialization per group (bias, linear, factors): ``normal`` draws N(0, init_sigma²); ``uniform`` draws
    from [-init_scale, init_scale], and an unset init_scale means sqrt(3)·init_sigma (the same variance as
    ``normal``); ``constant`` uses init_value, unset meaning 0. ``use_bias=False``/``use_linear=False`` pin
    w0/w at 0. An unset ``optimizer`` is AdaGrad, or the built-in's Adam when any of the built-in's optimizer
    settings is set (``algorithm.optimizer_defaults``). Unset (None) learning rates, weight decays, ``eps`` and
    ``factors_init_sigma`` take the optimizer's defaults (a few per predictor_type; ``resolved_params()`` gives
    the optimizer and values training uses): Adam's are the built-in's, the others' were tuned for mean batch
    gradients on CTR-like and ratings data (AdaGrad's large eps makes rarely seen features take small SGD-like
    steps). Unset ``rescale_grad`` is 1 / rows in the batch; unset ``clip_gradient`` means no clipping. A
    learning rate of 0 freezes its group. ``adagrad_state=row`` keeps one AdaGrad second moment per feature for
    its k factors (the mean of their squared gradients) instead of one per factor (``element``, the default):
    2 state floats per feature instead of 1 + k, at the same quality on the bench sets.
    FTRL uses MXNet's λ1 = 0.01 and β = 1. All four optimizers share one
    kernel (a branch per update), so each costs no more than Adam.

    With ``eval_set`` and ``early_stopping_patience`` > 0, training stops after that many epochs without a
    relative improvement of more than ``early_stopping_tolerance`` in the test metric (rmse, or
    binary_classification_cross_entropy), and the weights of the best epoch (with their optimizer state) are
    kept. Epochs count from 0.

    A training loss that keeps growing (``algorithm.loss_trend.RisingLoss``: up in each of 3 epochs in a
    row, to more than 1.5 times its lowest and above the loss of the best constant prediction) is divergence
    even before it becomes NaN, and a warning names the settings to lower: with early stopping the fit stops
    there and keeps the best epoch's weights; without it the fit goes on (it may recover; the metrics show
    whether it did), warned once. A loss that becomes NaN or infinite raises ``DivergedError``.

    ``warm_start_from`` continues an earlier fit: its weights and, when it carries the state of the same
    optimizer, the optimizer state, step count and epoch count, so 3 epochs and a warm start of 3 more train
    like 6 epochs in one fit (on one thread, or deterministic: the same model). Epoch e's row order is drawn
    from (seed, e), e counting every epoch the weights were trained.

    Fitted state: ``w0_`` (shape (1,)), ``w_`` (feature_dim,), ``V_`` (feature_dim, num_factors), all float32;
    ``best_epoch_`` (the epoch whose weights the model holds), ``best_score_`` (its test metric, None without
    eval_set), ``n_epochs_`` (epochs run), ``stopped_early_`` (None when every epoch ran, else
    "early_stopping" or "diverging"), ``optimizer_state_`` (an ``OptimizerState``, None for a model loaded
    for serving), ``n_threads_``, ``n_features_in_``.

    ``num_threads`` (0: numba's current thread count, capped at ``NUMBA_NUM_THREADS``): on one thread a given
    ``seed`` always gives the same model. On more, threads run whole mini-batches and update the weights
    lock-free (Hogwild, like xLearn and libFM): fast, but repeats differ slightly. ``deterministic=True``
    instead cuts each mini-batch into ``num_threads`` row chunks and sums their gradients in a fixed order,
    so a given ``seed`` and ``n_threads_`` give the same model on any machine, at a cost of two thread
    barriers per mini-batch.
    """

    schema = FM_SCHEMA
    # ``fit`` trains with the features renumbered by frequency (``algorithm.feature_layout``); False trains in
    # the users' ids: the same model up to float reassociation, more slowly (for tests and benchmarks).
    renumber_features = True

    def __init__(
        self, *, feature_dim: int, num_factors: int, predictor_type: str,
        epochs: int = _DEFAULTS["epochs"],
        mini_batch_size: int = _DEFAULTS["mini_batch_size"],
        clip_gradient: float | None = _DEFAULTS["clip_gradient"],
        eps: float | None = _DEFAULTS["eps"],
        rescale_grad: float | None = _DEFAULTS["rescale_grad"],
        bias_lr: float | None = _DEFAULTS["bias_lr"],
        bias_wd: float | None = _DEFAULTS["bias_wd"],
        bias_init_method: str = _DEFAULTS["bias_init_method"],
        bias_init_sigma: float = _DEFAULTS["bias_init_sigma"],
        bias_init_scale: float | None = _DEFAULTS["bias_init_scale"],
        bias_init_value: float | None = _DEFAULTS["bias_init_value"],
        linear_lr: float | None = _DEFAULTS["linear_lr"],
        linear_wd: float | None = _DEFAULTS["linear_wd"],
        linear_init_method: str = _DEFAULTS["linear_init_method"],
        linear_init_sigma: float = _DEFAULTS["linear_init_sigma"],
        linear_init_scale: float | None = _DEFAULTS["linear_init_scale"],
        linear_init_value: float | None = _DEFAULTS["linear_init_value"],
        factors_lr: float | None = _DEFAULTS["factors_lr"],
        factors_wd: float | None = _DEFAULTS["factors_wd"],
        factors_init_method: str = _DEFAULTS["factors_init_method"],
        factors_init_sigma: float | None = _DEFAULTS["factors_init_sigma"],
        factors_init_scale: float | None = _DEFAULTS["factors_init_scale"],
        factors_init_value: float | None = _DEFAULTS["factors_init_value"],
        use_bias: bool = _DEFAULTS["use_bias"],
        use_linear: bool = _DEFAULTS["use_linear"],
        optimizer: str | None = _DEFAULTS["optimizer"],
        adagrad_state: str = _DEFAULTS["adagrad_state"],
        positive_class_weight: float = _DEFAULTS["positive_class_weight"],
        seed: int = _DEFAULTS["seed"],
        num_threads: int = _DEFAULTS["num_threads"],
        early_stopping_patience: int = _DEFAULTS["early_stopping_patience"],
        early_stopping_tolerance: float = _DEFAULTS["early_stopping_tolerance"],
        deterministic: bool = _DEFAULTS["deterministic"],
        stream_buffer_mb: int = _DEFAULTS["stream_buffer_mb"],
        shuffle: str = _DEFAULTS["shuffle"],
    ) -> None:
        self.feature_dim = feature_dim
        self.num_factors = num_factors
        self.predictor_type = predictor_type
        self.epochs = epochs
        self.mini_batch_size = mini_batch_size
        self.clip_gradient = clip_gradient
        self.eps = eps
        self.rescale_grad = rescale_grad
        self.bias_lr = bias_lr
        self.bias_wd = bias_wd
        self.bias_init_method = bias_init_method
        self.bias_init_sigma = bias_init_sigma
        self.bias_init_scale = bias_init_scale
        self.bias_init_value = bias_init_value
        self.linear_lr = linear_lr
        self.linear_wd = linear_wd
        self.linear_init_method = linear_init_method
        self.linear_init_sigma = linear_init_sigma
        self.linear_init_scale = linear_init_scale
        self.linear_init_value = linear_init_value
        self.factors_lr = factors_lr
        self.factors_wd = factors_wd
        self.factors_init_method = factors_init_method
        self.factors_init_sigma = factors_init_sigma
        self.factors_init_scale = factors_init_scale
        self.factors_init_value = factors_init_value
        self.use_bias = use_bias
        self.use_linear = use_linear
        self.optimizer = optimizer
        self.adagrad_state = adagrad_state
        self.positive_class_weight = positive_class_weight
        self.seed = seed
        self.num_threads = num_threads
        self.early_stopping_patience = early_stopping_patience
        self.early_stopping_tolerance = early_stopping_tolerance
        self.deterministic = deterministic
        self.stream_buffer_mb = stream_buffer_mb
        self.shuffle = shuffle

    # ------------------------------------------------------------------------------- parameters

    def __repr__(self) -> str:
        return (f"FactorizationMachines(feature_dim={self.feature_dim}, num_factors={self.num_factors}, "
                f"predictor_type={self.predictor_type!r}, optimizer={self.optimizer!r})")

    @property
    def _estimator_type(self) -> str:
        """scikit-learn's kind of this model (its tags, ``score``, stratified cross-validation)."""
        return "classifier" if self.predictor_type == "binary_classifier" else "regressor"

    # ------------------------------------------------------------------------------- memory, init

    @staticmethod
    def state_bytes(feature_dim: int, num_factors: int, optimizer: str, n_threads: int = 1,
                    early_stopping: bool = False, adagrad_state: str = _DEFAULTS["adagrad_state"]) -> int:
        """Bytes of the model (w0, w, V float32), its optimizer state (``adagrad_state``: AdaGrad's, per factor
        or per row) and the per-thread feature->slot maps training needs (4 bytes per feature per thread); with
        ``early_stopping``, also the best epoch's copy of the model and its state."""
        if optimizer not in kernels.STATE_ARRAYS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        layout = kernels.state_layout(optimizer, num_factors, adagrad_state)
        floats = (1 + layout.n_state) + feature_dim * layout.width(num_factors)
        return 4 * floats * (2 if early_stopping else 1) + 4 * feature_dim * max(1, n_threads)

    def warm_start_from(
        self, source: FactorizationMachines | Mapping[str, np.ndarray]
    ) -> FactorizationMachines:
        """Start the next ``fit`` from a fitted model: its weights and, when its ``optimizer_state_`` is of
        this model's optimizer, that state with its step and epoch counts (else the optimizer starts fresh,
        which ``fit`` logs with the reason). Arrays {"w0", "w", "V"} give weights only. Raises ValueError when
        the model sizes (feature_dim, num_factors) differ."""
        state = None
        if isinstance(source, FactorizationMachines):
            source._check_fitted()
            arrays = source.artifact_arrays()
            state = getattr(source, "optimizer_state_", None)
        elif isinstance(source, Mapping):
            arrays = dict(source)
        else:
            raise TypeError(f"warm_start_from takes a fitted FactorizationMachines or arrays {{'w0', 'w', 'V'}}, "
                            f"not {type(source).__name__}")
        expected = {"w0": (1,), "w": (self.feature_dim,), "V": (self.feature_dim, self.num_factors)}
        got = {name: np.shape(arrays[name]) if name in arrays else None for name in expected}
        if got != expected:
            earlier = ("" if got["V"] is None or len(got["V"]) != 2
                       else f" (feature_dim={got['V'][0]}, num_factors={got['V'][1]})")
            raise ValueError(
                f"Cannot warm start: the earlier model{earlier} has w0 {got['w0']}, w {got['w']}, V {got['V']} "
                f"but this model (feature_dim={self.feature_dim}, num_factors={self.num_factors}) needs "
                f"w0 {expected['w0']}, w {expected['w']}, V {expected['V']}: set feature_dim and num_factors "
                "to the earlier model's to continue it")
        weights = tuple(np.array(arrays[name], dtype=np.float32, order="C") for name in expected)
        self._warm_start = (*weights, state)
        return self

    def _state_layout(self) -> kernels.StateLayout:
        """The optimizer state of this fit's packed table (``kernels.StateLayout``)."""
        params = self.resolved_params()
        return kernels.state_layout(params["optimizer"], self.num_factors, params["adagrad_state"])

    def _continued_state(self, state: OptimizerState | None) -> OptimizerState | None:
        """The earlier fit's optimizer state when this fit can continue it (logged either way), else None. An
        element-wise AdaGrad state continues as a row-wise one exactly: the mean of a feature's per-factor h is
        the h row-wise AdaGrad would have accumulated from the same gradients."""
        optimizer = self.resolved_params()["optimizer"]
        width = self._state_layout().factor_width
        if (state is not None and state.optimizer == optimizer == "adagrad" and width == 1
                and state.matches(self.feature_dim, self.num_factors, self.num_factors)):
            log.info("Warm start: the earlier model kept AdaGrad's h per factor; this fit keeps one per feature "
                     "(adagrad_state=row), their mean")
            state = OptimizerState(state.optimizer, state.steps, state.epochs, {
                **state.arrays, "h_V": state.arrays["h_V"].mean(axis=1, keepdims=True, dtype=np.float64
                                                               ).astype(np.float32)})
        if state is None:
            reason = "the earlier model carries no optimizer state"
        elif state.optimizer != optimizer:
            reason = f"the earlier model was trained with optimizer={state.optimizer}, this fit uses {optimizer}"
        elif state.matches(self.feature_dim, self.num_factors) and not state.matches(
                self.feature_dim, self.num_factors, width):
            reason = ("the earlier model kept AdaGrad's h per feature (adagrad_state=row), this fit keeps one per "
                      "factor (adagrad_state=element)")
        elif not state.matches(self.feature_dim, self.num_factors, width):
            reason = "the earlier model's optimizer state does not fit this model's size"
        else:
            log.info("Warm start: the %s optimizer continues from its state after %d epoch(s) (%d steps)",
                     optimizer, state.epochs, state.steps)
            return state
        log.warning("Warm start from the earlier weights; the %s optimizer starts fresh (%s), so its first "
                    "steps are full-size and may undo part of the earlier training", optimizer, reason)
        return None

    def _initial_table(self, layout: kernels.StateLayout) -> tuple[np.ndarray, np.ndarray, int, int]:
        """The bias [w0, state...] and the packed training table (``kernels.pack``) at their initial values,
        the optimizer steps and the epochs already taken (0 unless a warm start continues an optimizer state).
        The table is filled in row blocks, so no full-size w or V exists beside it (the random stream is the
        same as drawing whole arrays)."""
        d, k = self.feature_dim, self.num_factors
        bias = np.zeros(1 + layout.n_state, dtype=np.float32)
        table = np.zeros((d, layout.width(k)), dtype=np.float32)
        steps = epochs = 0
        warm = getattr(self, "_warm_start", None)
        if warm is not None:
            bias[0], table[:, 0], table[:, 1:1 + k] = warm[0][0], warm[1], warm[2]
            state = self._continued_state(warm[3])
            if state is not None:
                steps, epochs = state.steps, state.epochs
                for j, (name, c) in enumerate(zip(layout.names, layout.offsets(k)[1:], strict=True), start=1):
                    bias[j] = state.arrays[f"{name}_w0"][0]
                    table[:, c] = state.arrays[f"{name}_w"]
                    table[:, c + 1:c + 1 + layout.factor_width] = state.arrays[f"{name}_V"]
        else:
            rng = np.random.default_rng([self.seed, 0])
            params = self.resolved_params()
            targets = {"bias": (bias[:1], 1), "linear": (table[:, 0], 1), "factors": (table[:, 1:1 + k], k)}
            for group in GROUPS:
                target, width = targets[group]
                for r0 in range(0, len(target), INIT_BLOCK_ROWS):
                    block = target[r0:r0 + INIT_BLOCK_ROWS]
                    block[...] = _init_array(
                        rng, (len(block), width) if width > 1 else (len(block),),
                        getattr(self, f"{group}_init_method"), params[f"{group}_init_sigma"],
                        getattr(self, f"{group}_init_scale"), getattr(self, f"{group}_init_value"))
        if not self.use_bias:
            bias[0] = 0.0
        if not self.use_linear:
            table[:, 0] = 0.0
        return bias, table, steps, epochs

    def resolved_params(self) -> dict[str, Any]:
        """``get_params()`` with the optimizer resolved and the unset (None) learning rates, weight decays, eps and
        factors_init_sigma replaced by its defaults for the predictor_type (``algorithm.optimizer_defaults``): the
        values training uses."""
        return resolve_optimizer_defaults(self.get_params())

    def _hyperparameter_vector(self) -> np.ndarray:
        params = self.resolved_params()
        hp = np.zeros(kernels.HP_SIZE)
        for code, group in zip((kernels.BIAS, kernels.LINEAR, kernels.FACTORS), GROUPS, strict=True):
            hp[kernels.HP_LR + code] = params[f"{group}_lr"]
            hp[kernels.HP_WD + code] = params[f"{group}_wd"]
        eps = params["eps"]
        hp[kernels.HP_EPS] = 0.0 if eps is None else eps  # unset only for the optimizers that use no eps
        hp[kernels.HP_CLIP] = math.inf if self.clip_gradient is None else self.clip_gradient
        hp[kernels.HP_RESCALE] = 0.0 if self.rescale_grad is None else self.rescale_grad
        return hp

    # ------------------------------------------------------------------------------- training

    def fit(self, X: Any, y: Any, sample_weight: Any = None, eval_set: tuple[Any, Any] | None = None,
            on_epoch: OnEpoch | None = None, checkpoints: Checkpoints | None = None) -> FactorizationMachines:
        """Train for ``epochs`` passes over the rows of ``X`` (epoch e in an order drawn from ``seed`` and e),
        continuing the model ``warm_start_from`` gave, if any.

        ``eval_set=(X_test, y_test)`` is scored after every epoch (and drives early stopping);
        ``on_epoch(epoch, train_metrics, test_metrics_or_None, seconds)`` is called after each epoch with the
        built-in's metric names (train metrics are those of the scores seen while training, as the built-in
        reports them; ``seconds`` is the training time of the epoch). Raises ``DivergedError`` when the loss
        becomes NaN or infinite, or keeps growing without early stopping to fall back on.

        ``checkpoints`` (``algorithm.checkpoint.Checkpoints``): the fit resumes the checkpoint found there (of the
        same hyperparameters, epochs aside, and data shape; ``CheckpointError`` otherwise), saves one after every
        epoch but the last and within epochs when one is due, and when a stop is requested ends at the next
        chunk of rows (whole mini-batches, about ``CHUNK_SECONDS`` of training) with a checkpoint, raising
        ``TrainingStopped``. A resumed fit trains exactly as the uninterrupted one (deterministic or one
        thread, same threads): the row order is drawn from (seed, epoch), so the position in it suffices.

        Training runs with the features renumbered by frequency (``algorithm.feature_layout``): the rows' ids are
        rewritten once (a copy of the indices, int16 or int32 when the ids fit), the table's rows are moved in
        place to that layout and written back as the table is split at the end, so the fitted arrays, the
        optimizer state and checkpoints' meaning are in the users' ids (a checkpoint keeps its tables in the
        layout, with the feature order).
        """
        self._check_params()
        optimizer = self.resolved_params()["optimizer"]
        d, k = self.feature_dim, self.num_factors
        rows, y, weights, row_weight = self._training_rows(X, y, sample_weight)
        evaluation = None
        if eval_set is not None:
            eval_rows = _checked_rows(eval_set[0], d, "eval_set X")
            eval_y = _as_labels(eval_set[1], eval_rows.n_rows, self.predictor_type, "eval_set y")
            evaluation = (eval_rows, eval_y)

        state_layout = self._state_layout()
        bias, table, step, first_epoch = self._initial_table(state_layout)
        hp = self._hyperparameter_vector()
        order: np.ndarray = np.empty(rows.n_rows, dtype=order_dtype(rows.n_rows))
        block_rows = self._block_rows(rows)
        row_scores = np.zeros(rows.n_rows, dtype=np.float32)
        logistic = self.predictor_type == "binary_classifier"
        early_stopping = evaluation is not None and self.early_stopping_patience > 0
        best = BestEpoch(self.early_stopping_tolerance, keep_weights=early_stopping)
        trend = RisingLoss(_constant_prediction_loss(y, row_weight, logistic))
        total_weight = float(row_weight.sum()) if row_weight.size else float(rows.n_rows)
        stopped = None
        n_threads = self.num_threads or numba.get_num_threads()
        identity = self._checkpoint_identity(rows, row_weight, evaluation)
        resumed = None if checkpoints is None else checkpoints.load("fm", identity)
        start, position, warned, resumed_loss = 0, 0, False, 0.0
        layout = None  # (set below: the training rows of a resumed table, else by frequency)
        if resumed is not None:
            progress, arrays = resumed
            if "host_positions" in progress:
                raise CheckpointError(
                    f"Checkpoint {checkpoints.meta_path if checkpoints else None} is within epoch "
                    f"{progress['epoch']} of a job on {progress['hosts']} hosts: it resumes on as many hosts with "
                    f"the same data only; {START_OVER}")
            bias, table, row_scores = arrays["bias"], arrays["table"], arrays.get("row_scores", row_scores)
            step, first_epoch = int(progress["steps"]), int(progress["first_epoch"])
            start, position, warned = int(progress["epoch"]), int(progress["position"]), bool(progress["warned"])
            resumed_loss = float(progress["loss"])
            best.resume(progress["best"], None if "best_table" not in arrays else
                        (arrays["best_bias"], arrays["best_table"], int(progress["best_steps"])))
            trend.losses = [float(loss) for loss in progress["losses"]]
            if "feature_order" in arrays:  # (the tables are in its training rows)
                layout = FeatureLayout.from_order(arrays["feature_order"])
            log.info("Resuming from checkpoint %s: epoch %d, row %d of %d (%d optimizer steps taken)",
                     checkpoints.meta_path if checkpoints else None, start, position, rows.n_rows, step)
            if self.deterministic and int(progress["n_threads"]) != n_threads:
                log.warning("The checkpoint was written training on %s threads and this fit runs %d: the model "
                            "will differ from an uninterrupted run's", progress["n_threads"], n_threads)
        if layout is None and self.renumber_features:
            layout = FeatureLayout.by_frequency(rows.indices, d)
            fresh = resumed is None and step == 0  # the optimizer state is zeros: only [w, V] differ by row
            for array in (table, None if best.weights is None else best.weights[1]):
                if array is not None:
                    layout.to_training(array, 1 + k if fresh else None)
        X = _renumbered(rows, layout)
        eval_X = None if evaluation is None else _renumbered(evaluation[0], layout)
        with numba_threads(n_threads) as running:
            train_epoch, shares = self._epoch_kernel(n_threads, running)
            buffers = _training_buffers(shares, rows, self.mini_batch_size, d, k,
                                        split_batches=train_epoch is kernels.train_epoch_parallel)
            chunk = _chunk_rows(self.mini_batch_size, FIRST_CHUNK_ROWS / CHUNK_SECONDS)  # until a rate is known

            def saved(epoch: int, position: int, table: np.ndarray) -> Path | None:
                """Write the checkpoint of the fit at ``position`` in ``epoch`` (None: checkpoints off)."""
                if checkpoints is None:
                    return None
                state = {"epoch": epoch, "position": position, "steps": step, "first_epoch": first_epoch,
                         "loss": float(buffers.loss.sum()), "best": best.progress(), "losses": trend.losses,
                         "warned": warned, "n_threads": n_threads,
                         "best_steps": None if best.weights is None else best.weights[2]}
                arrays = {"bias": bias, "table": table}
                if layout is not None:
                    arrays["feature_order"] = layout.order
                if position:
                    arrays["row_scores"] = row_scores
                if best.weights is not None:
                    arrays["best_bias"], arrays["best_table"] = best.weights[:2]
                return checkpoints.save("fm", identity, state, arrays)

            epoch = start - 1
            for epoch in range(start, self.epochs):
                seconds = 0.0
                self._shuffle(order, first_epoch + epoch, block_rows)
                buffers.loss[:] = 0.0
                if position:
                    buffers.loss[0] = resumed_loss

                while position < rows.n_rows:  # bounded kernel calls: a stop request is seen between them
                    end = min(position + chunk, rows.n_rows)
                    started = time.perf_counter()
                    step = train_epoch(
                        X, y, row_weight, order[position:end],
                        self.mini_batch_size, bias, table, k, state_layout.code,
                        kernels.LOGISTIC if logistic else kernels.REGRESSION, hp, self.use_bias, self.use_linear,
                        step, buffers, row_scores)
                    elapsed = time.perf_counter() - started
                    seconds += elapsed
                    chunk = _chunk_rows(self.mini_batch_size, (end - position) / max(elapsed, 1e-9))
                    position = end
                    if checkpoints is not None and position < rows.n_rows:
                        if checkpoints.stop_requested:
                            raise TrainingStopped(f"in epoch {epoch} at row {position} of {rows.n_rows}",
                                                  saved(epoch, position, table))
                        if checkpoints.due():
                            saved(epoch, position, table)
                position = 0
                loss = float(buffers.loss.sum())
                if not math.isfinite(loss):
                    raise DivergedError(self._divergence_message(epoch, f"the training loss became {loss}"))
                test = None
                if evaluation is not None and eval_X is not None:  # scored from views of the table, not copies
                    test = train_metrics(self.predictor_type, evaluation[1], _score_arrays(
                        eval_X, bias[:1], table[:, 0], table[:, 1:1 + k], logistic, n_threads))
                    best.update(epoch, test[STOPPING_METRIC[self.predictor_type]],
                                partial(_training_snapshot, bias, table, step))
                if on_epoch is not None:
                    on_epoch(epoch, train_metrics(self.predictor_type, y, row_scores, weights), test, seconds)
                if trend.update(loss / total_weight) and not warned:
                    warned = True
                    if self._warn_diverging(epoch, trend, best):
                        stopped = "diverging"
                        break
                if early_stopping and best.stale >= self.early_stopping_patience:
                    stopped = "early_stopping"
                    break
                if epoch + 1 < self.epochs:
                    path = saved(epoch + 1, 0, table)
                    if checkpoints is not None and checkpoints.stop_requested:
                        raise TrainingStopped(f"after epoch {epoch}", path)
        return self._keep_fit(bias, table, step, epoch, best, stopped, optimizer, first_epoch, n_threads,
                              evaluated=evaluation is not None, early_stopping=early_stopping, layout=layout)

    def fit_blocks(self, train: RowBlocks, eval_blocks: RowBlocks | None = None,
                   on_epoch: OnEpoch | None = None, on_block: OnBlock | None = None,
                   checkpoints: Checkpoints | None = None) -> FactorizationMachines:
        """``fit`` on rows that arrive in blocks (``algorithm.row_blocks``), each pass over ``train`` one epoch:
        the memory the data takes is the block in hand, whatever the row count.

        Epoch e's blocks come in the order ``train`` draws from (seed, e) when it can reorder them (else as they
        arrive); the rows of each block are shuffled by the same random stream, and trained on in mini-batches
        with the kernels of ``fit``. Every block carries its labels (and optional weights). The train metrics
        are those of the scores seen while training, accumulated over the blocks (``StreamingMetrics``);
        ``eval_blocks`` is scored block by block after every epoch. ``on_block(epoch, rows_done, rows_trained,
        seconds)`` is called after each block (rows trained: rows done less those a resume passed over). Early
        stopping, divergence and warm starts work as in ``fit``.

        ``checkpoints``: as in ``fit``, at block ends: a checkpoint after every epoch but the last, after a block
        when one is due, and when a stop is requested, after the block in hand (then ``TrainingStopped``). One
        within an epoch keeps the blocks done and the epoch's sums (metrics, label sums, loss); the resumed fit
        starts that epoch's pass again with its random stream and passes over those blocks without training them
        (``algorithm.block_position``), so it ends with the uninterrupted fit's model (deterministic or one
        thread, same threads). ``CheckpointError`` when the data does not fit the checkpoint's position.
        """
        self._check_params()
        optimizer = self.resolved_params()["optimizer"]
        d, k = self.feature_dim, self.num_factors
        state_layout = self._state_layout()
        bias, table, step, first_epoch = self._initial_table(state_layout)
        hp = self._hyperparameter_vector()
        logistic = self.predictor_type == "binary_classifier"
        early_stopping = eval_blocks is not None and self.early_stopping_patience > 0
        best = BestEpoch(self.early_stopping_tolerance, keep_weights=early_stopping)
        trend = RisingLoss()
        stopped, warned = None, False
        n_threads = self.num_threads or numba.get_num_threads()
        identity = self._stream_identity(eval_blocks is not None)
        resumed = None if checkpoints is None else checkpoints.load("fm", identity)
        path = None if checkpoints is None else checkpoints.meta_path
        start, saved_path = 0, None
        resume_at = BlockPosition()
        carried: tuple[StreamingMetrics, _LabelSums, np.ndarray] | None = None  # the sums of the resumed epoch
        whole_pass: BlockPosition | None = None  # the blocks, rows and nonzeros of an epoch, once one ended
        expected_pass: BlockPosition | None = None  # ... of the checkpoint's job, until this job checked them
        if resumed is not None:
            progress, arrays = resumed
            bias, table = arrays["bias"], arrays["table"]  # (arrays that own their memory: no copies)
            step, first_epoch, start = int(progress["steps"]), int(progress["first_epoch"]), int(progress["epoch"])
            warned, trend.baseline = bool(progress["warned"]), float(progress["baseline"])
            trend.losses = [float(loss) for loss in progress["losses"]]
            best.resume(progress["best"], None if "best_table" not in arrays else
                        (arrays["best_bias"], arrays["best_table"], int(progress["best_steps"])))
            resume_at = BlockPosition.from_progress(progress["position"])
            if progress["pass"] is not None:
                whole_pass = expected_pass = BlockPosition.from_progress(progress["pass"])
            if resume_at.blocks:
                metrics, labels = StreamingMetrics(self.predictor_type), _LabelSums()
                metrics.restore(float(progress["metrics_total"]),
                                {name: arrays[f"metrics_{name}"] for name in ("sums", "histograms")
                                 if f"metrics_{name}" in arrays})
                labels.restore(progress["labels"])
                carried = metrics, labels, arrays["loss"]
            saved_path = path
            log.info("Resuming from checkpoint %s: epoch %d, block %d (%d rows done in it; %d optimizer steps "
                     "taken)", path, start, resume_at.blocks, resume_at.rows, step)
            if self.deterministic and int(progress["n_threads"]) != n_threads:
                log.warning("The checkpoint was written training on %s threads and this fit runs %d: the model "
                            "will differ from an uninterrupted run's", progress["n_threads"], n_threads)

        def save(epoch: int, done: BlockPosition, metrics: StreamingMetrics | None = None,
                 labels: _LabelSums | None = None) -> Path | None:
            """Write the checkpoint of the fit at ``done`` in ``epoch``, with the epoch's sums (``metrics``,
            ``labels``, the loss) when within it (None: checkpoints off)."""
            if checkpoints is None:
                return None
            progress = {"epoch": epoch, "position": done.progress(), "steps": step, "first_epoch": first_epoch,
                        "pass": None if whole_pass is None else whole_pass.progress(), "best": best.progress(),
                        "losses": trend.losses, "baseline": trend.baseline, "warned": warned,
                        "n_threads": n_threads, "best_steps": None if best.weights is None else best.weights[2]}
            arrays = {"bias": bias, "table": table}
            if best.weights is not None:
                arrays["best_bias"], arrays["best_table"] = best.weights[:2]
            if metrics is not None and labels is not None:  # within the epoch, after a block trained
                assert buffers is not None
                progress["metrics_total"], sums = metrics.state()
                progress["labels"] = labels.progress()
                arrays.update({f"metrics_{name}": array for name, array in sums.items()}, loss=buffers.loss)
            return checkpoints.save("fm", identity, progress, arrays)

        with numba_threads(n_threads) as running:
            train_epoch, shares = self._epoch_kernel(n_threads, running)
            split = train_epoch is kernels.train_epoch_parallel
            buffers: kernels.Buffers | None = None
            epoch = start - 1
            for epoch in range(start, self.epochs):
                started = time.perf_counter()
                rng = self._epoch_rng(first_epoch + epoch)
                blocks = iter(train.blocks(rng))
                carried_loss, skipped_rows = None, 0
                if carried is None:
                    metrics, labels, done = StreamingMetrics(self.predictor_type), _LabelSums(), BlockPosition()
                else:
                    (metrics, labels, carried_loss), carried = carried, None
                    done = skip_blocks(blocks, rng, resume_at, path, partial(_stop_while_skipping, checkpoints, epoch))
                    skipped_rows = done.rows
                    log.info("Skipped the first %d block(s) (%d rows) of epoch %d without training them, %.1f s "
                             "after the epoch started (a stream, such as a Pipe-mode FIFO, reads and decodes them "
                             "again; File mode maps them from its cache, once built)", done.blocks, done.rows, epoch,
                             time.perf_counter() - started)
                if buffers is not None:
                    buffers.loss[:] = 0.0
                for block in blocks:
                    done.advance(block)
                    check_pass(done, expected_pass, path, complete=False)
                    if block.n_rows == 0:
                        continue
                    if block.labels is None:
                        raise ValueError(f"a block of rows {done.rows - block.n_rows}..{done.rows} has no labels")
                    rows, y, weights, row_weight = self._training_rows(block, block.labels, block.weights)
                    buffers = _training_buffers(shares, rows, self.mini_batch_size, d, k, split, buffers)
                    if carried_loss is not None:
                        _carry_loss(buffers.loss, carried_loss)
                        carried_loss = None
                    order = rows_order(rows.n_rows, rng, self._run_rows(), out=np.empty(
                        rows.n_rows, dtype=order_dtype(rows.n_rows)))
                    scores = np.zeros(rows.n_rows, dtype=np.float32)
                    step = train_epoch(
                        (rows.data, rows.indices, rows.indptr), y, row_weight, order, self.mini_batch_size, bias,
                        table, k, state_layout.code,
                        kernels.LOGISTIC if logistic else kernels.REGRESSION, hp, self.use_bias, self.use_linear,
                        step, buffers, scores)
                    metrics.update(y, scores, weights)
                    labels.update(y, row_weight)
                    if on_block is not None:
                        on_block(epoch, done.rows, done.rows - skipped_rows, time.perf_counter() - started)
                    if checkpoints is not None:
                        if checkpoints.stop_requested:
                            raise TrainingStopped(f"in epoch {epoch} after block {done.blocks} ({done.rows} rows)",
                                                  save(epoch, done, metrics, labels))
                        if checkpoints.due():
                            save(epoch, done, metrics, labels)
                if done.rows == 0:
                    raise ValueError("the training data has no rows")
                check_pass(done, expected_pass, path, complete=True)
                whole_pass, expected_pass = done, None
                seconds = time.perf_counter() - started
                if carried_loss is None:  # (else every block of the resumed epoch was done before it)
                    assert buffers is not None
                    carried_loss = buffers.loss
                loss = float(carried_loss.sum())
                if not math.isfinite(loss):
                    raise DivergedError(self._divergence_message(epoch, f"the training loss became {loss}"))
                test = None
                if eval_blocks is not None:
                    test = self._streamed_metrics(eval_blocks, bias[:1], table[:, 0], table[:, 1:1 + k], n_threads)
                    best.update(epoch, test[STOPPING_METRIC[self.predictor_type]],
                                partial(_training_snapshot, bias, table, step))
                if on_epoch is not None:
                    on_epoch(epoch, metrics.result(), test, seconds)
                if epoch == 0:
                    trend.baseline = labels.constant_prediction_loss(logistic)
                if trend.update(loss / labels.weight) and not warned:
                    warned = True
                    if self._warn_diverging(epoch, trend, best):
                        stopped = "diverging"
                        break
                if early_stopping and best.stale >= self.early_stopping_patience:
                    stopped = "early_stopping"
                    break
                if epoch + 1 < self.epochs:
                    saved_path = save(epoch + 1, BlockPosition())
                    if checkpoints is not None and checkpoints.stop_requested:
                        raise TrainingStopped(f"after epoch {epoch}", saved_path)
        return self._keep_fit(bias, table, step, epoch, best, stopped, optimizer, first_epoch, n_threads,
                              evaluated=eval_blocks is not None, early_stopping=early_stopping)

    def _streamed_metrics(self, blocks: RowBlocks, w0: np.ndarray, w: np.ndarray, V: np.ndarray,
                          n_threads: int) -> dict[str, float]:
        """The built-in's metrics of the weights (w0, w, V) on ``blocks``, scored block by block."""
        metrics = StreamingMetrics(self.predictor_type)
        for block in blocks.blocks(None):
            if block.n_rows == 0:
                continue
            rows = _checked_rows(block, self.feature_dim, "eval X")
            labels = _as_labels(block.labels, rows.n_rows, self.predictor_type, "eval y")
            scores = _score(rows, w0, w, V, self.predictor_type == "binary_classifier", n_threads)
            metrics.update(labels, scores, block.weights)
        return metrics.result()

    def streamed_metrics(self, blocks: RowBlocks) -> dict[str, float]:
        """The built-in's metrics of the fitted model on ``blocks`` (with labels), scored block by block."""
        self._check_fitted()
        return self._streamed_metrics(blocks, self.w0_, self.w_, self.V_, numba.get_num_threads())

    def _keep_fit(self, bias: np.ndarray, table: np.ndarray, step: int, epoch: int, best: BestEpoch,
                  stopped: str | None, optimizer: str, first_epoch: int, n_threads: int, *, evaluated: bool,
                  early_stopping: bool, layout: FeatureLayout | None = None) -> FactorizationMachines:
        """Set the fitted state from the training table after the last ``epoch`` (or from the best epoch's copy
        that early stopping kept). The table is consumed: its memory is freed (the caller's name for it too)."""
        k, state_layout = self.num_factors, self._state_layout()
        if best.weights is not None:
            if table.flags.owndata:  # (a table resumed from a checkpoint may be a view, which cannot shrink)
                table.resize((0, table.shape[1]), refcheck=False)
            (bias, table, step), best_epoch = best.weights, best.epoch
            best.weights = None
        else:
            best_epoch = epoch
        w, V, states = kernels.split_in_place(table, k, state_layout.n_state,
                                              rows=None if layout is None else layout.order,
                                              factor_width=state_layout.factor_width)
        del table
        for name, array in (("w0", bias[:1]), ("w", w), ("V", V)):
            if not np.isfinite(array).all():
                raise DivergedError(self._divergence_message(epoch, f"{name} has non-finite values"))
        self.w0_, self.w_, self.V_ = bias[:1].copy(), w, V
        state_arrays = {
            f"{name}_{part}": array
            for j, (name, (w_state, V_state)) in enumerate(zip(state_layout.names, states, strict=True), start=1)
            for part, array in (("w0", bias[j:j + 1].copy()), ("w", w_state), ("V", V_state))}
        self.optimizer_state_: OptimizerState | None = OptimizerState(
            optimizer, step, first_epoch + best_epoch + 1, state_arrays)
        self.best_epoch_ = best_epoch
        self.best_score_ = None if not evaluated else (best.score if early_stopping else best.last)
        self.n_epochs_ = epoch + 1
        self.stopped_early_ = stopped
        self.n_threads_ = n_threads
        self.n_features_in_ = self.feature_dim
        return self

    def _checkpoint_identity(self, rows: CSR, row_weight: np.ndarray, evaluation: tuple[CSR, np.ndarray] | None
                             ) -> dict[str, Any]:
        """What a checkpoint of this fit belongs to: the settings that shape its state and the data's shape."""
        return self._data_identity(rows.n_rows, rows.nnz, bool(row_weight.size),
                                   None if evaluation is None else evaluation[0].n_rows)

    def _data_identity(self, rows: int, nonzeros: int, weighted: bool, test_rows: int | None) -> dict[str, Any]:
        """``_checkpoint_identity`` of training data of ``rows`` rows and ``nonzeros`` nonzeros (``weighted``:
        with per-row loss weights) and ``test_rows`` evaluation rows (None: none), however the rows are held
        (one host's, or every host's shares summed)."""
        params = {name: value for name, value in _json_params(self.resolved_params()).items()
                  if name not in RESUMABLE_CHANGES}
        return {**params, "data_rows": int(rows), "data_nonzeros": int(nonzeros), "data_weighted": bool(weighted),
                "test_rows": None if test_rows is None else int(test_rows)}

    def _stream_identity(self, evaluated: bool) -> dict[str, Any]:
        """What a checkpoint of a streamed fit belongs to: the settings that shape its state (a stream's shape is
        unknown before it is read)."""
        params = {name: value for name, value in _json_params(self.resolved_params()).items()
                  if name not in RESUMABLE_CHANGES}
        return {**params, "streamed": True, "evaluated": evaluated}

    def _shuffle(self, order: np.ndarray, epoch: int, block_rows: int) -> None:
        """Fill ``order`` with the row order of epoch ``epoch`` (counting every epoch the weights were trained,
        warm starts included), drawn from (seed, epoch) alone: a permutation of every row (shuffle=full), or
        the blocks of ``block_rows`` stored rows in a shuffled order with the rows of each in ``rows_order``
        (blocks: shuffled; runs: runs of ``RUN_ROWS`` rows shuffled), as ``fit_blocks`` visits them."""
        rng = self._epoch_rng(epoch)
        if self.shuffle == "full":
            rows_order(order.size, rng, 1, out=order)
            return
        at = 0
        for b in block_order(-(-order.size // block_rows), rng):
            r0 = b * block_rows
            n = min(block_rows, order.size - r0)
            rows_order(n, rng, self._run_rows(), out=order[at:at + n], offset=r0)
            at += n

    def _run_rows(self) -> int:
        """Rows per run of ``rows_order`` under this ``shuffle`` (1: every row shuffled)."""
        return RUN_ROWS if self.shuffle == "runs" else 1

    def _epoch_rng(self, epoch: int) -> np.random.Generator:
        """The random stream of epoch ``epoch``'s row order."""
        return np.random.default_rng([self.seed, 1, epoch])

    def _block_rows(self, rows: CSR) -> int:
        """Rows per block of shuffle=blocks: ``stream_buffer_mb`` / ``BLOCKS_PER_BUFFER`` of the data, rounded
        down to whole mini-batches (at least one)."""
        per_row = max(1.0, rows.nbytes / max(rows.n_rows, 1))
        batches = int(self.stream_buffer_mb * 2**20 / BLOCKS_PER_BUFFER / per_row) // self.mini_batch_size
        return max(1, batches) * self.mini_batch_size

    def _warn_diverging(self, epoch: int, trend: RisingLoss, best: BestEpoch) -> bool:
        """Warn that the training loss keeps growing; whether to stop (early stopping kept a better epoch's
        weights, which the fit then keeps)."""
        what = (f"the training loss rose in each of the last {trend.rises} epochs, to {trend.losses[-1]:.4g}, "
                f"{trend.losses[-1] / trend.lowest:.3g} times its lowest ({trend.lowest:.4g} in epoch "
                f"{trend.lowest_epoch})")
        message = self._divergence_message(epoch, what)
        if best.weights is None:
            log.warning("%s Training goes on (with a test channel and early_stopping_patience > 0 it would stop "
                        "here and keep the weights of the best epoch).", message)
            return False
        log.warning("%s Training stops here and keeps the weights of epoch %d, the best by the test metric.",
                    message, best.epoch)
        return True

    def _epoch_kernel(self, n_threads: int, running: int) -> tuple[Callable[..., int], int]:
        """The epoch kernel and its thread count: serial on one thread; ``deterministic``: ``n_threads`` row
        chunks per batch (the model depends on the seed and n_threads only); else Hogwild on the threads
        numba runs."""
        if self.deterministic and n_threads > 1:
            return kernels.train_epoch_parallel, n_threads
        if running > 1 and not self.deterministic:
            return kernels.train_epoch_hogwild, running
        return kernels.train_epoch_serial, 1

    def _training_rows(self, X: Any, y: Any, sample_weight: Any
                       ) -> tuple[CSR, np.ndarray, np.ndarray | None, np.ndarray]:
        """Validated rows, labels, sample weights (or None) and per-row loss weights (sample weight times
        positive_class_weight on label-1 rows; empty when every row weighs 1)."""
        rows = _checked_rows(X, self.feature_dim)
        if rows.n_rows == 0:
            raise ValueError("X has no rows")
        bad = _first_non_finite(rows.data)
        if bad is not None:
            raise ValueError(f"X has a non-finite value ({rows.data[bad]}) at nonzero {bad}")
        labels = _as_labels(y, rows.n_rows, self.predictor_type)
        weights = None if sample_weight is None else _as_vector(sample_weight, rows.n_rows, "sample_weight")
        if weights is not None and (weights < 0).any():
            raise ValueError("sample_weight must be >= 0")
        reweight = self.positive_class_weight != 1.0  # binary_classifier only (_check_params)
        if weights is None and not reweight:
            return rows, labels, weights, np.empty(0, dtype=np.float32)  # the kernels read it as all ones
        row_weight = np.ones(rows.n_rows, dtype=np.float32) if weights is None else weights.copy()
        if reweight:
            row_weight[labels == 1] *= np.float32(self.positive_class_weight)
        return rows, labels, weights, row_weight

    def _divergence_message(self, epoch: int, what: str) -> str:
        """Training diverged in ``epoch`` (``what`` happened): the settings to lower, with their values."""
        params = self.resolved_params()
        rates = ", ".join(f"{group}_lr={params[f'{group}_lr']}" for group in GROUPS)
        fixes = [f"Lower the learning rates ({rates})"]
        if self.predictor_type == "binary_classifier" and self.positive_class_weight != 1.0:
            fixes.append(f"lower positive_class_weight={self.positive_class_weight} (it scales the gradient of "
                         "every label-1 row)")
        fixes.append("set clip_gradient (e.g. 1.0)" if self.clip_gradient is None
                     else f"lower clip_gradient={self.clip_gradient}")
        return (f"Training diverged in epoch {epoch}: {what}. {', '.join(fixes)} or scale the features to a "
                "smaller range.")

    # ------------------------------------------------------------------------------- prediction

    def _check_fitted(self) -> None:
        if not hasattr(self, "V_"):
            raise NotFittedError("FactorizationMachines is not fitted yet: call fit() or load an artifact")

    def predict_scores(self, X: Any) -> np.ndarray:
        """float32 score per row: the probability of label 1 (binary_classifier) or the prediction
        (regressor)."""
        self._check_fitted()
        rows = _checked_rows(X, self.feature_dim)
        threads = 1 if rows.nnz < PARALLEL_SCORING_NNZ else numba.get_num_threads()
        return _score(rows, self.w0_, self.w_, self.V_, self.predictor_type == "binary_classifier", threads)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels 0.0/1.0 (score >= 0.5) for binary_classifier, the scores for regressor."""
        scores = self.predict_scores(X)
        if self.predictor_type == "binary_classifier":
            return (scores >= 0.5).astype(np.float32)
        return scores

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``[P(0), P(1)]`` per row (binary_classifier only), as scikit-learn's."""
        if self.predictor_type != "binary_classifier":
            raise AttributeError("predict_proba is only available for predictor_type='binary_classifier'")
        p = self.predict_scores(X)
        return np.column_stack([1.0 - p, p]).astype(np.float32)

    # ------------------------------------------------------------------------------- artifact hooks

    def artifact_arrays(self) -> dict[str, np.ndarray]:
        """The arrays ``algorithm.artifact`` stores, in checksum order."""
        self._check_fitted()
        return {"w0": self.w0_, "w": self.w_, "V": self.V_}

    def artifact_meta(self) -> dict[str, Any]:
        """The JSON metadata ``algorithm.artifact`` stores with the arrays."""
        self._check_fitted()
        return {
            "algorithm": "fm",
            "predictor_type": self.predictor_type,
            "feature_dim": self.feature_dim,
            "num_factors": self.num_factors,
            "hyperparameters": _json_params(self.resolved_params()),
            "best_epoch": self.best_epoch_,
            "epochs_run": self.n_epochs_,
            "stopped_early": self.stopped_early_,
            "n_threads": self.n_threads_,
            "scoring": SCORING_FORMULA,
        }

    def artifact_optimizer_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """The optimizer state ``algorithm.artifact`` stores beside the model, as (JSON metadata, arrays);
        None when the model has none (loaded for serving)."""
        self._check_fitted()
        state = self.optimizer_state_
        if state is None:
            return None
        return {"optimizer": state.optimizer, "steps": state.steps, "epochs": state.epochs}, state.arrays

    def restore_optimizer_state(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        """Attach the state ``artifact_optimizer_state()`` gave, for a warm start to continue; ValueError when it
        is not a state of a known optimizer for this model's size."""
        state = OptimizerState(str(meta["optimizer"]), int(meta["steps"]), int(meta["epochs"]),
                               {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in arrays.items()})
        if not state.matches(self.feature_dim, self.num_factors):
            raise ValueError(f"the optimizer state ({state.optimizer}) holds arrays {sorted(arrays)}, not the "
                             f"state of that optimizer for feature_dim={self.feature_dim}, "
                             f"num_factors={self.num_factors}")
        self.optimizer_state_ = state

    @classmethod
    def from_artifact(
        cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> FactorizationMachines:
        """Rebuild a fitted model from ``artifact_meta()``/``artifact_arrays()`` output; ValueError (KeyError for
        a missing key) naming what does not fit."""
        names = set(cls._param_names())
        model = cls(**{name: value for name, value in _hyperparameters(meta).items() if name in names})
        model._check_params()
        d, k = model.feature_dim, model.num_factors
        expected = {"w0": (1,), "w": (d,), "V": (d, k)}
        for name, shape in expected.items():
            if name not in arrays or arrays[name].shape != shape:
                got = arrays[name].shape if name in arrays else "missing"
                raise ValueError(f"array {name!r} has shape {got}, expected {shape}")
            if arrays[name].dtype != np.float32:
                raise ValueError(f"array {name!r} is {arrays[name].dtype}; an FM model's arrays are float32")
        model.w0_, model.w_, model.V_ = (
            np.ascontiguousarray(arrays[name], dtype=np.float32) for name in expected)
        model.best_epoch_ = int(meta.get("best_epoch", -1))
        model.best_score_ = None
        model.n_epochs_ = int(meta.get("epochs_run", 0))
        model.stopped_early_ = meta.get("stopped_early")
        model.optimizer_state_ = None
        model.n_threads_ = int(meta.get("n_threads", 0))
        model.n_features_in_ = d
        return model


def _hyperparameters(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    """The "hyperparameters" object of an artifact's metadata."""
    hyperparameters = meta["hyperparameters"]
    if not isinstance(hyperparameters, Mapping):
        raise ValueError(f"hyperparameters must be a JSON object, found {type(hyperparameters).__name__}")
    return hyperparameters


class _LabelSums:
    """Weighted sums of the labels of a pass: the loss of the best constant prediction, without keeping them."""

    def __init__(self) -> None:
        self.weight = self.first = self.second = 0.0

    def update(self, y: np.ndarray, row_weight: np.ndarray) -> None:
        w = np.ones(y.size) if row_weight.size == 0 else row_weight.astype(np.float64)
        y64 = y.astype(np.float64)
        self.weight += float(w.sum())
        self.first += float(np.dot(w, y64))
        self.second += float(np.dot(w, y64 * y64))

    def progress(self) -> dict[str, float]:
        """The sums as a checkpoint keeps them, for ``restore``."""
        return {"weight": self.weight, "first": self.first, "second": self.second}

    def restore(self, progress: Mapping[str, float]) -> None:
        self.weight, self.first, self.second = (float(progress[name]) for name in ("weight", "first", "second"))

    def constant_prediction_loss(self, logistic: bool) -> float:
        """As ``_constant_prediction_loss``: log loss of the base rate, or the labels' variance."""
        mean = self.first / self.weight
        if logistic:
            p = min(max(mean, 1e-12), 1.0 - 1e-12)
            return -(mean * math.log(p) + (1.0 - mean) * math.log(1.0 - p))
        return max(0.0, self.second / self.weight - mean * mean)


def _stop_while_skipping(checkpoints: Checkpoints | None, epoch: int, done: BlockPosition) -> None:
    """``TrainingStopped`` when a stop was requested while a resumed fit skips the blocks its checkpoint had
    done (the checkpoint stays as it is: the fit has trained nothing since)."""
    if checkpoints is not None and checkpoints.stop_requested:
        raise TrainingStopped(f"in epoch {epoch} while skipping the blocks its checkpoint had done (at block "
                              f"{done.blocks}; nothing trained since the checkpoint)", checkpoints.meta_path)


def _carry_loss(loss: np.ndarray, carried: np.ndarray) -> None:
    """Start the per-thread loss sums ``loss`` from those a checkpoint ``carried`` (their total in the first
    thread's when the thread count differs)."""
    loss[:] = 0.0
    if carried.shape == loss.shape:
        loss[:] = carried
    else:
        loss[0] = carried.sum()


def _chunk_rows(batch_size: int, rows_per_second: float = math.inf) -> int:
    """Rows of the next epoch-kernel call (``CHUNK_ROWS`` and ``CHUNK_SECONDS`` at ``rows_per_second``), in whole
    mini-batches, so the batches, and the model, are those of one call over the whole order."""
    rows = min(CHUNK_ROWS, rows_per_second * CHUNK_SECONDS)
    return max(1, int(rows) // batch_size) * batch_size


def _training_snapshot(bias: np.ndarray, table: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Copies of the bias and the packed table (the weights and their optimizer state) and the step count: what
    early stopping keeps of its best epoch."""
    return bias.copy(), table.copy(), steps


def _constant_prediction_loss(y: np.ndarray, row_weight: np.ndarray, logistic: bool) -> float:
    """Training loss per unit of row weight of the best constant prediction (the weighted mean label): log loss
    of the base rate for the classifier, the labels' variance for the regressor."""
    weights = row_weight if row_weight.size else None
    mean = float(np.average(y, weights=weights))
    if logistic:
        p = min(max(mean, 1e-12), 1.0 - 1e-12)
        return -(mean * math.log(p) + (1.0 - mean) * math.log(1.0 - p))
    return float(np.average(np.square(y - np.float32(mean)), weights=weights))


def _json_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as plain JSON types (numpy scalars become Python numbers)."""
    return {name: value.item() if isinstance(value, np.generic) else value for name, value in params.items()}


def _score(rows: CSR, w0: np.ndarray, w: np.ndarray, V: np.ndarray, logistic: bool,
           n_threads: int) -> np.ndarray:
    return _score_arrays((rows.data, rows.indices, rows.indptr), w0, w, V, logistic, n_threads)


def _score_arrays(X: tuple[np.ndarray, np.ndarray, np.ndarray], w0: np.ndarray, w: np.ndarray, V: np.ndarray,
                  logistic: bool, n_threads: int) -> np.ndarray:
    """Scores of the CSR rows ``X`` = (data, indices, indptr), whose indices are rows of (w, V)."""
    data, indices, indptr = X
    n_rows = indptr.size - 1
    out = np.empty(n_rows, dtype=np.float32)
    if n_threads > 1 and n_rows > 1:
        kernels.score_parallel(data, indices, indptr, w0, w, V, logistic, out, min(n_threads, n_rows))
    else:
        kernels.score_serial(data, indices, indptr, w0, w, V, logistic, out)
    return out


def order_dtype(n_rows: int) -> type:
    """The dtype of an epoch's row order over ``n_rows`` rows (the training kernels are compiled for it)."""
    return np.int32 if n_rows < 2**31 else np.int64


def _renumbered(rows: CSR, layout: FeatureLayout | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data, indices, indptr) of ``rows`` with the indices as ``layout``'s training rows (as they are without
    one)."""
    indices = rows.indices if layout is None else layout.renumbered(rows.indices)
    return rows.data, indices, rows.indptr
