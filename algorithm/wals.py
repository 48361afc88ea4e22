"""``WALS``: weighted alternating least squares matrix factorization with the vocabulary of TensorFlow's
``WALSMatrixFactorization``, implicit-feedback ALS (Hu, Koren, Volinsky; implicit's
``AlternatingLeastSquares``) as the ``alpha`` setting of the same solver, and scikit-learn conventions.
Formulas: docs/wals.md.

Explicit form (``alpha=None``, TF's objective), for the matrix A with observed entries obs:
    Σ_{(i,j)∈obs} w_ij (a_ij − u_i·v_j)² + w0 Σ_{(i,j)∉obs} (u_i·v_j)² + λ (|U|² + |V|²),
    w_ij = w0 + r_i c_j s_ij   (w0 = unobserved_weight, r = row_weights, c = col_weights,
                                λ = regularization_coeff, s = fit's entry_weights, 1 by default)
Implicit form (``alpha`` set): target p_ij = 1 where a'_ij > 0 (else 0) and w_ij = w0 + α r_i c_j a'_ij with
a'_ij = s_ij a_ij; with w0 = 1 and unit weights this is implicit's ALS with confidence 1 + α·a_ij.

The input is a scipy sparse matrix; every stored entry is observed (a stored 0 too, as in TF's SparseTensor;
under the implicit form a stored 0 weighs exactly like an unobserved entry), and duplicate (row, column)
entries are summed (scipy's rule).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeAlias

import numba
import numpy as np
import scipy.sparse as sp

from algorithm import _wals_kernels as kernels
from algorithm._threads import numba_threads
from algorithm.base import DivergedError, Estimator, NotFittedError
from algorithm.best_epoch import BestEpoch
from algorithm.checkpoint import Checkpoints, TrainingStopped
from algorithm.csr import CSR
from algorithm.hyperparameters import defaults
from algorithm.metrics import rmse
from algorithm.ranking_metrics import BLOCK_VALUES, ranking_metrics, top_k
from algorithm.schemas import WALS_SCHEMA

OnEpoch = Callable[[int, dict[str, float], "dict[str, float] | None", float], None]
Sparse: TypeAlias = sp.spmatrix | sp.sparray

log = logging.getLogger(__name__)

_DEFAULTS = defaults(WALS_SCHEMA)
WEIGHT_NAMES = ("row_weights", "col_weights")
# Settings a checkpoint may be resumed under with other values: they do not change what the state means.
RESUMABLE_CHANGES = ("max_sweeps", "num_threads")
# predict scores serially below this many pairs (serving sends small requests).
PARALLEL_SCORING_PAIRS = 100_000
# Gramians for the training loss are summed in float64 over chunks of this many factor rows.
GRAM_CHUNK = 65_536
SCORING_FORMULA = "score(i, j) = dot(row_factors[i], col_factors[j])"


def _as_csr(matrix: Any, what: str) -> sp.csr_matrix:
    """``matrix`` as canonical float32 CSR (duplicates summed), never modifying the caller's matrix."""
    if not sp.issparse(matrix):
        raise TypeError(f"{what} must be a scipy sparse matrix (rows x columns), got {type(matrix).__name__}")
    csr = sp.csr_matrix(matrix, dtype=np.float32)
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    bad = np.flatnonzero(~np.isfinite(csr.data))
    if bad.size:
        raise ValueError(f"{what} has a non-finite value ({csr.data[bad[0]]}) at nonzero {bad[0]}")
    return csr


def weight_vector(value: Any, n: int, what: str) -> np.ndarray:
    """A scalar or per-item weight as a float32 vector of length ``n`` (each weight finite and >= 0)."""
    vector = np.ascontiguousarray(np.broadcast_to(np.asarray(value, dtype=np.float32), (n,))) \
        if np.ndim(value) == 0 else np.ascontiguousarray(value, dtype=np.float32)
    if vector.shape != (n,):
        raise ValueError(f"{what} must be a scalar or have one value per item: shape ({n},), "
                         f"got {vector.shape}")
    if not (np.isfinite(vector) & (vector >= 0)).all():
        raise ValueError(f"{what} must be finite and >= 0")
    return vector


def _entry_weights(weights: Any, csr: sp.csr_matrix, data_shape: tuple[int, int]) -> np.ndarray:
    """The per-entry weights s_ij as a float32 vector aligned with ``csr.data``: ``weights`` is a sparse
    matrix of the data's shape storing exactly the entries of R (duplicates summed), each finite and >= 0."""
    matrix = _as_csr(weights, "entry_weights")
    if matrix.shape != data_shape:
        raise ValueError(f"entry_weights has shape {matrix.shape}, expected {data_shape} like R")
    if matrix.shape != csr.shape:
        matrix.resize(csr.shape)
    if not (np.array_equal(matrix.indptr, csr.indptr) and np.array_equal(matrix.indices, csr.indices)):
        raise ValueError("entry_weights must store exactly the entries of R (the same (row, column) pairs, "
                         "explicit zeros included)")
    if (matrix.data < 0).any():
        raise ValueError("entry_weights must be >= 0")
    return np.ascontiguousarray(matrix.data, dtype=np.float32)


def _entries(csr: sp.csr_matrix, row_weights: np.ndarray, col_weights: np.ndarray,
             alpha: float | None, entry_weights: np.ndarray | None = None) -> tuple[CSR, np.ndarray]:
    """The stored entries of ``csr`` with their targets t_ij as values, and their extra weights
    e_ij = w_ij − w0 (module docstring), with the per-entry weights s_ij (aligned with ``csr.data``) when
    given."""
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    product = row_weights[rows] * col_weights[csr.indices]
    values = csr.data
    if entry_weights is not None:
        if alpha is None:
            product = product * entry_weights
        else:
            values = values * entry_weights
    target, extra = entry_terms(values, product, alpha)
    entries = CSR(np.ascontiguousarray(target, dtype=np.float32), csr.indices.astype(np.int64),
                  csr.indptr.astype(np.int64), csr.shape[1])
    return entries, np.ascontiguousarray(extra, dtype=np.float32)


def entry_terms(values: np.ndarray, product: np.ndarray, alpha: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(targets t_ij, extra weights e_ij) of entries with values a_ij and weight products r_i c_j (s_ij), as
    in the module docstring: the one formula of ``fit`` and of entries prepared elsewhere (``Entries``)."""
    if alpha is None:
        return values.copy(), product
    return (values > 0).astype(np.float32), (np.float32(alpha) * product * values).astype(np.float32)


@dataclass(frozen=True)
class Entries:
    """A training matrix prepared for the sweeps, for data that does not fit in memory: its entries by row
    (``rows``: targets t_ij at the columns, canonical: columns sorted, duplicates summed) and by column
    (``cols``: the same entries, rows sorted within each column), each with the extra weights e_ij beside
    them (``entry_terms`` with the estimator's weights and alpha). The arrays may be memory-mapped files
    (``np.memmap``): the sweeps read them in order and copy none of them."""

    rows: CSR
    row_extra: np.ndarray
    cols: CSR
    col_extra: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.n_rows, self.rows.n_cols

    def seen_rows(self, rows: np.ndarray) -> sp.csr_matrix:
        """The stored entries of ``rows`` only (the others empty), values 1: what the ranking metrics leave
        out of the candidates of the rows they score."""
        n, m = self.shape
        indptr = self.rows.indptr
        lengths = np.zeros(n, np.int64)
        lengths[rows] = indptr[rows + 1] - indptr[rows]
        indices = np.concatenate([self.rows.indices[indptr[r]:indptr[r + 1]] for r in rows.tolist()]
                                 or [np.zeros(0, np.int64)])
        return sp.csr_matrix((np.ones(indices.size, np.float32), indices, np.concatenate([[0], np.cumsum(lengths)])),
                             shape=(n, m))


def _transpose(entries: CSR, extra: np.ndarray) -> tuple[CSR, np.ndarray]:
    """The same entries and extra weights seen from the other side (columns as rows), rows sorted within
    each column."""
    order = sp.csr_matrix((np.arange(entries.nnz, dtype=np.int64), entries.indices, entries.indptr),
                          shape=(entries.n_rows, entries.n_cols)).tocsc()
    perm = order.data
    return (CSR(entries.data[perm], order.indices.astype(np.int64), order.indptr.astype(np.int64),
                entries.n_rows), extra[perm])


def gram64(F: np.ndarray) -> np.ndarray:
    """FᵀF summed in float64, chunk by chunk."""
    total = np.zeros((F.shape[1], F.shape[1]))
    for start in range(0, F.shape[0], GRAM_CHUNK):
        chunk = F[start:start + GRAM_CHUNK].astype(np.float64)
        total += chunk.T @ chunk
    return total



def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if np.ndim(value) > 0:
        return None  # per-item weights travel as arrays
    return value


class WALS(Estimator):
    """Weighted alternating least squares: A ≈ U Vᵀ with row factors U (num_rows × embedding_dimension) and
    column factors V, the parameters being ``WALS_SCHEMA``'s in ``algorithm.schemas`` (TF's names; see the
    module docstring and docs/wals.md for the objective and the weights).

    Each sweep re-solves every row factor against the fixed column factors, then every column factor against
    the new row factors (``solver``: ``cholesky`` exact, ``cg`` ``cg_steps`` conjugate-gradient steps
    warm-started from the current factors). ``row_weights``/``col_weights`` are scalars or float arrays with
    one weight per row/column. ``row_init``/``col_init`` = ``random`` draws N(0, 1) factors from ``seed`` (as
    TF); ``model`` takes them from ``fit``'s ``init_row_factors``/``init_col_factors``.
    ``num_rows``/``num_cols`` (optional) declare a larger matrix than the data spans: the extra rows/columns
    have no entries and get zero factors.

    With ``eval_set`` each sweep reports test metrics: ``rmse`` (explicit form) or ``precision_at_k``,
    ``map_at_k``, ``ndcg_at_k``, ``auc`` at k = ``eval_k`` (implicit form, training entries excluded from the
    candidates; definitions in ``algorithm.ranking_metrics``). With ``early_stopping_patience`` > 0 training
    stops after that many sweeps without a relative improvement of more than ``early_stopping_tolerance`` in
    rmse (lower is better) or ndcg_at_k (higher is better), and the factors of the best sweep are kept.
    Without ``eval_set`` early stopping is off. Sweeps count from 0.

    Fitted state: ``row_factors_``, ``col_factors_`` (float32, C-contiguous), ``row_weights_``,
    ``col_weights_`` (float32 vectors), ``best_sweep_`` (the sweep whose factors the model holds),
    ``best_score_`` (its test metric, None without eval_set), ``n_sweeps_``, ``n_threads_``.
    ``num_threads`` = 0 means numba's current thread count; the factors do not depend on it.
    """

    schema = WALS_SCHEMA
    array_params = WEIGHT_NAMES
    input_tags: ClassVar[dict[str, bool]] = {"sparse": True, "two_d_array": False}

    def __init__(
        self, *,
        num_rows: int | None = _DEFAULTS["num_rows"],
        num_cols: int | None = _DEFAULTS["num_cols"],
        embedding_dimension: int,
        unobserved_weight: float = _DEFAULTS["unobserved_weight"],
        regularization_coeff: float = _DEFAULTS["regularization_coeff"],
        row_init: str = _DEFAULTS["row_init"],
        col_init: str = _DEFAULTS["col_init"],
        row_weights: float | np.ndarray = _DEFAULTS["row_weights"],
        col_weights: float | np.ndarray = _DEFAULTS["col_weights"],
        max_sweeps: int = _DEFAULTS["max_sweeps"],
        solver: str = _DEFAULTS["solver"],
        cg_steps: int = _DEFAULTS["cg_steps"],
        alpha: float | None = _DEFAULTS["alpha"],
        eval_k: int = _DEFAULTS["eval_k"],
        seed: int = _DEFAULTS["seed"],
        num_threads: int = _DEFAULTS["num_threads"],
        early_stopping_patience: int = _DEFAULTS["early_stopping_patience"],
        early_stopping_tolerance: float = _DEFAULTS["early_stopping_tolerance"],
    ) -> None:
        self.num_rows = num_rows
        self.num_cols = num_cols
        self.embedding_dimension = embedding_dimension
        self.unobserved_weight = unobserved_weight
        self.regularization_coeff = regularization_coeff
        self.row_init = row_init
        self.col_init = col_init
        self.row_weights = row_weights
        self.col_weights = col_weights
        self.max_sweeps = max_sweeps
        self.solver = solver
        self.cg_steps = cg_steps
        self.alpha = alpha
        self.eval_k = eval_k
        self.seed = seed
        self.num_threads = num_threads
        self.early_stopping_patience = early_stopping_patience
        self.early_stopping_tolerance = early_stopping_tolerance

    # ------------------------------------------------------------------------------- parameters

    def __repr__(self) -> str:
        form = "explicit" if self.alpha is None else f"implicit, alpha={self.alpha}"
        return (f"WALS(embedding_dimension={self.embedding_dimension}, solver={self.solver!r}, "
                f"max_sweeps={self.max_sweeps}, {form})")

    # ------------------------------------------------------------------------------- training

    @property
    def stopping_metric(self) -> str:
        """The test metric early stopping watches: ndcg_at_k (higher is better) in the implicit form, else
        rmse."""
        return "rmse" if self.alpha is None else "ndcg_at_k"

    def _shape(self, data_shape: tuple[int, int]) -> tuple[int, int]:
        shape = []
        for axis, (name, declared) in enumerate((("num_rows", self.num_rows), ("num_cols", self.num_cols))):
            if declared is not None and declared < data_shape[axis]:
                raise ValueError(f"{name}={declared} but the matrix has {data_shape[axis]}")
            shape.append(data_shape[axis] if declared is None else declared)
        return shape[0], shape[1]

    def _initial_factors(self, n: int, m: int, init_row_factors: Any, init_col_factors: Any
                         ) -> tuple[np.ndarray, np.ndarray]:
        k = self.embedding_dimension
        out = []
        for stream, (side, method, given, count) in enumerate((
                ("row", self.row_init, init_row_factors, n), ("col", self.col_init, init_col_factors, m))):
            if method == "model" and given is None:
                raise ValueError(f"{side}_init='model' needs init_{side}_factors")
            if method == "random" and given is not None:
                raise ValueError(f"init_{side}_factors was given but {side}_init='random'; "
                                 f"set {side}_init='model'")
            if given is None:
                rng = np.random.default_rng([self.seed, stream])
                out.append(rng.standard_normal((count, k), dtype=np.float32))
                continue
            factors = np.array(given, dtype=np.float32, order="C")
            if factors.shape != (count, k):
                raise ValueError(f"init_{side}_factors has shape {factors.shape}, expected ({count}, {k})")
            if not np.isfinite(factors).all():
                raise ValueError(f"init_{side}_factors must be finite")
            out.append(factors)
        return out[0], out[1]

    def fit(self, R: Sparse | Entries, eval_set: Sparse | None = None, on_epoch: OnEpoch | None = None,
            init_row_factors: np.ndarray | None = None, init_col_factors: np.ndarray | None = None,
            entry_weights: Sparse | None = None, checkpoints: Checkpoints | None = None) -> WALS:
        """Factorize the sparse matrix ``R`` (rows x columns) in ``max_sweeps`` sweeps. ``R`` may also be
        ``Entries`` prepared with this estimator's weights and alpha (then without ``entry_weights``).

        ``entry_weights``: per-entry weights s_ij >= 0, a sparse matrix storing exactly R's entries
        (duplicates summed like R's): the explicit form's observed weight becomes w0 + r_i c_j s_ij; under the
        implicit form s_ij scales the count (a_ij -> s_ij a_ij, so s_ij = 0 makes the entry unobserved-like).

        ``eval_set``: held-out entries, a sparse matrix of the same shape, scored after every sweep (and
        driving early stopping). ``on_epoch(sweep, train, test_or_None, seconds)`` is called after each sweep
        with train metrics ``loss`` (the objective, regularization included) and ``rwse`` (TF's root weighted
        squared error), the test metrics, and the seconds the two half-sweeps took. Raises ``DivergedError``
        when the loss or the factors become non-finite.

        ``checkpoints`` (``algorithm.checkpoint.Checkpoints``): the fit resumes the checkpoint found there (same
        settings, max_sweeps and num_threads aside, and data; ``CheckpointError`` otherwise), saves one after every
        sweep but the last and between half-sweeps when one is due, and when a stop is requested ends after the
        half-sweep in flight with a checkpoint, raising ``TrainingStopped``. A resumed fit ends with the factors
        of the uninterrupted one (the solves are deterministic).
        """
        self._check_params()
        scale = None  # entry weights: folded into Entries' extra weights, else given beside R
        if isinstance(R, Entries):
            n, m = self._shape(R.shape)
            if (n, m) != R.shape or entry_weights is not None:
                raise ValueError(f"Entries must have the declared shape ({n}, {m}), got {R.shape}, and come "
                                 "without entry_weights (prepare them with the weights)")
        else:
            csr = _as_csr(R, "R")
            data_shape = csr.shape
            n, m = self._shape(data_shape)
            if (n, m) != csr.shape:
                csr.resize((n, m))
            scale = None if entry_weights is None else _entry_weights(entry_weights, csr, data_shape)
            if self.alpha is not None and (csr.data < 0).any():
                raise ValueError("The implicit form (alpha set) needs values >= 0: a value is a confidence "
                                 "count")
        test = None
        if eval_set is not None:
            test = _as_csr(eval_set, "eval_set")
            if test.shape != (n, m):
                raise ValueError(f"eval_set has shape {test.shape}, expected ({n}, {m}) like the training "
                                 "matrix")
        row_weights = weight_vector(self.row_weights, n, "row_weights")
        col_weights = weight_vector(self.col_weights, m, "col_weights")
        if isinstance(R, Entries):
            rows, row_extra, cols, col_extra = R.rows, R.row_extra, R.cols, R.col_extra
            seen = R.seen_rows(np.unique(test.nonzero()[0])) if test is not None and self.alpha is not None \
                else None
        else:
            rows, row_extra = _entries(csr, row_weights, col_weights, self.alpha, scale)
            cols, col_extra = _transpose(rows, row_extra)
            seen = csr
        U, V = self._initial_factors(n, m, init_row_factors, init_col_factors)
        w0, lam = float(self.unobserved_weight), float(self.regularization_coeff)
        sum_weights = w0 * n * m + float(row_extra.sum(dtype=np.float64))
        early_stopping = test is not None and self.early_stopping_patience > 0
        best = BestEpoch(self.early_stopping_tolerance, keep_weights=early_stopping,
                         higher_is_better=self.alpha is not None)
        n_threads = self.num_threads or numba.get_num_threads()
        identity = self._checkpoint_identity((n, m), rows.nnz, test, row_weights, col_weights, scale)
        U, V, start, half = self.resume(checkpoints, identity, best, (U, V))

        def saved(sweep: int, half: int) -> Path | None:
            """Write the checkpoint of the fit before ``half`` (0: rows, 1: columns) of ``sweep``."""
            if checkpoints is None:
                return None
            arrays = {"row_factors": U, "col_factors": V}
            if best.weights is not None:
                arrays["best_row_factors"], arrays["best_col_factors"] = best.weights
            return checkpoints.save("wals", identity, {"sweep": sweep, "half": half, "best": best.progress()},
                                    arrays)

        with numba_threads(n_threads) as workers:
            sweep = start - 1
            for sweep in range(start, self.max_sweeps):
                started = time.perf_counter()
                if not half:
                    kernels.solve(rows, row_extra, V, U, w0, lam, self.solver, self.cg_steps, workers)
                    if checkpoints is not None and (checkpoints.stop_requested or checkpoints.due()):
                        path = saved(sweep, 1)
                        if checkpoints.stop_requested:
                            raise TrainingStopped(f"in sweep {sweep} after its row half", path)
                half = 0
                kernels.solve(cols, col_extra, U, V, w0, lam, self.solver, self.cg_steps, workers)
                seconds = time.perf_counter() - started
                train = self._train_metrics(rows, row_extra, U, V, sum_weights, workers)
                if not math.isfinite(train["loss"]):
                    raise DivergedError(self._divergence_message(sweep, f"the loss became {train['loss']}"))
                metrics = None
                if test is not None:
                    metrics = self._test_metrics(test, seen, U, V, workers)
                    best.update(sweep, metrics[self.stopping_metric], lambda: (U.copy(), V.copy()))
                if on_epoch is not None:
                    on_epoch(sweep, train, metrics, seconds)
                if early_stopping and best.stale >= self.early_stopping_patience:
                    break
                if sweep + 1 < self.max_sweeps:
                    path = saved(sweep + 1, 0)
                    if checkpoints is not None and checkpoints.stop_requested:
                        raise TrainingStopped(f"after sweep {sweep}", path)
        if best.weights is not None:
            (U, V), best_sweep = best.weights, best.epoch
        else:
            best_sweep = sweep
        for name, factors in (("row factors", U), ("column factors", V)):
            if not np.isfinite(factors).all():
                raise DivergedError(self._divergence_message(sweep, f"the {name} have non-finite values"))
        self.row_factors_, self.col_factors_ = U, V
        self.row_weights_, self.col_weights_ = row_weights, col_weights
        self.best_sweep_ = best_sweep
        self.best_score_ = None if test is None else (
            best.score if early_stopping and math.isfinite(best.score) else best.last)
        self.n_sweeps_ = sweep + 1
        self.n_threads_ = n_threads
        return self

    @staticmethod
    def resume(checkpoints: Checkpoints | None, identity: dict[str, Any], best: BestEpoch,
               factors: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int, int]:
        """The factors, sweep and half a fit starts from: a matching checkpoint's (``best`` resumed from it,
        logged), else ``factors`` at sweep 0."""
        resumed = None if checkpoints is None else checkpoints.load("wals", identity)
        if resumed is None or checkpoints is None:
            return factors[0], factors[1], 0, 0
        progress, arrays = resumed
        start, half = int(progress["sweep"]), int(progress["half"])
        best.resume(progress["best"], (arrays["best_row_factors"], arrays["best_col_factors"])
                    if "best_row_factors" in arrays else None)
        log.info("Resuming from checkpoint %s: sweep %d%s", checkpoints.meta_path, start,
                 " after its row half" if half else "")
        return arrays["row_factors"], arrays["col_factors"], start, half

    def _checkpoint_identity(self, shape: tuple[int, int], nnz: int, test: sp.csr_matrix | None,
                             row_weights: np.ndarray, col_weights: np.ndarray, scale: np.ndarray | None
                             ) -> dict[str, Any]:
        """What a checkpoint of this fit belongs to: the settings that shape the factors and the data's shape
        (weight vectors and entry weights by their SHA-256)."""
        params = {name: value for name, value in self.get_params().items()
                  if name not in RESUMABLE_CHANGES and name not in WEIGHT_NAMES}
        digests = {name: hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()
                   for name, array in (("row_weights", row_weights), ("col_weights", col_weights),
                                       ("entry_weights", scale if scale is not None else np.empty(0)))}
        return {**params, **digests, "data_shape": list(shape), "data_entries": int(nnz),
                "test_entries": None if test is None else int(test.nnz)}

    def _train_metrics(self, rows: CSR, extra: np.ndarray, U: np.ndarray, V: np.ndarray, sum_weights: float,
                       workers: int) -> dict[str, float]:
        """loss = Σ_all w_ij (t_ij − u_i·v_j)² + λ(|U|² + |V|²) and rwse = sqrt(unregularized / Σ_all w_ij),
        the dense part computed as w0·trace(UᵀU VᵀV) (TF's reformulation)."""
        sparse_part = float(kernels.row_losses(rows, extra, U, V, float(self.unobserved_weight), workers).sum())
        return self.train_metrics(sparse_part, gram64(U), gram64(V), sum_weights)

    def train_metrics(self, sparse_part: float, gram_u: np.ndarray, gram_v: np.ndarray, sum_weights: float
                      ) -> dict[str, float]:
        """The train metrics of factors U, V from the sparse part of the loss (``kernels.row_losses`` summed
        over every row, or over every column with the sides swapped), UᵀU and VᵀV in float64 (``gram64``,
        or its sum over blocks of rows) and Σ_all w_ij (``sum_weights``)."""
        w0, lam = float(self.unobserved_weight), float(self.regularization_coeff)
        unregularized = sparse_part + w0 * float((gram_u * gram_v).sum())
        regularization = lam * float(np.trace(gram_u) + np.trace(gram_v))
        rwse = math.sqrt(max(unregularized, 0.0) / sum_weights) if sum_weights > 0 else math.nan
        return {"loss": unregularized + regularization, "rwse": rwse}

    def _test_metrics(self, test: sp.csr_matrix, train: sp.csr_matrix | None, U: np.ndarray, V: np.ndarray,
                      workers: int) -> dict[str, float]:
        if self.alpha is None:
            coo = test.tocoo()
            predictions = kernels.pair_scores(coo.row, coo.col, U, V, workers)
            return {"rmse": rmse(coo.data, predictions)}
        return ranking_metrics(U, V, test, self.eval_k, exclude=train)

    def _divergence_message(self, sweep: int, what: str) -> str:
        return (f"Training diverged in sweep {sweep}: {what}. Raise regularization_coeff "
                f"(now {self.regularization_coeff}) or scale the values (and alpha) to a smaller range.")

    # ------------------------------------------------------------------------------- scoring

    def _check_fitted(self) -> None:
        if not hasattr(self, "col_factors_"):
            raise NotFittedError("WALS is not fitted yet: call fit() or load an artifact")

    @staticmethod
    def _ids(values: Any, count: int, what: str) -> np.ndarray:
        ids = np.asarray(values)
        if ids.dtype.kind not in "iu":
            raise ValueError(f"{what} ids must be integers, got {ids.dtype}")
        ids = ids.astype(np.int64).ravel()
        bad = ids[(ids < 0) | (ids >= count)]
        if bad.size:
            raise ValueError(f"{what} id {bad[0]} is outside [0, {count})")
        return ids

    def predict(self, rows: Any, cols: Any) -> np.ndarray:
        """float32 scores ``row_factors_[rows[i]] · col_factors_[cols[i]]`` of (row, column) pairs."""
        self._check_fitted()
        r = self._ids(rows, self.row_factors_.shape[0], "row")
        c = self._ids(cols, self.col_factors_.shape[0], "column")
        if r.size != c.size:
            raise ValueError(f"rows has {r.size} ids but cols has {c.size}")
        workers = 1 if r.size < PARALLEL_SCORING_PAIRS else numba.get_num_threads()
        return kernels.pair_scores(r, c, self.row_factors_, self.col_factors_, workers)

    def recommend(self, row_or_rows: int | Sequence[int] | np.ndarray, k: int = 10,
                  exclude_seen: Sparse | None = None, include: Sequence[int] | np.ndarray | None = None,
                  exclude: Sequence[int] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best columns by score for a row id (1-D results) or a list of row ids (2-D, a row each).

        ``exclude_seen``: sparse matrix with one row per queried row (shape (len(rows), num_cols)), whose
        stored columns are left out for that row (pass ``R[rows]`` to filter training items); ``include``:
        only these columns are candidates; ``exclude``: these columns never are. Returns (column ids int64,
        scores float32), best first, ties by lower id; slots beyond a row's candidates hold -1 and -inf."""
        self._check_fitted()
        single = np.ndim(row_or_rows) == 0
        rows = self._ids(row_or_rows, self.row_factors_.shape[0], "row")
        ids, scores = self.recommend_from_factors(self.row_factors_[rows], k, exclude_seen, include, exclude)
        return (ids[0], scores[0]) if single else (ids, scores)

    def recommend_from_factors(
        self, factors: np.ndarray, k: int = 10, exclude_seen: Sparse | None = None,
        include: Sequence[int] | np.ndarray | None = None, exclude: Sequence[int] | np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``recommend`` for row factors given directly (n × embedding_dimension), e.g. from ``project_rows``:
        the fold-in path for rows the model was not trained on. Always 2-D results."""
        self._check_fitted()
        queries = np.ascontiguousarray(np.atleast_2d(factors), dtype=np.float32)
        n_cols, dim = self.col_factors_.shape
        if queries.ndim != 2 or queries.shape[1] != dim:
            raise ValueError(f"factors must have {dim} columns, got shape {np.shape(factors)}")
        if not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        candidates = (np.arange(n_cols) if include is None
                      else np.unique(self._ids(include, n_cols, "include")))
        if exclude is not None:
            candidates = np.setdiff1d(candidates, self._ids(exclude, n_cols, "exclude"))
        n = queries.shape[0]
        seen = None
        if exclude_seen is not None:
            seen = _as_csr(exclude_seen, "exclude_seen")
            if seen.shape != (n, n_cols):
                raise ValueError(f"exclude_seen has shape {seen.shape}; it needs one row per queried row: "
                                 f"({n}, {n_cols}) (pass R[rows], not the whole training matrix)")
        width = min(int(k), candidates.size)
        ids = np.full((n, int(k)), -1, dtype=np.int64)
        scores = np.full((n, int(k)), -np.inf, dtype=np.float32)
        if width == 0:
            return ids, scores
        position = np.full(n_cols, -1, dtype=np.int64)
        position[candidates] = np.arange(candidates.size)
        V_t = np.ascontiguousarray(self.col_factors_[candidates]).T
        block = max(1, BLOCK_VALUES // candidates.size)
        for start in range(0, n, block):
            stop = min(n, start + block)
            block_scores = queries[start:stop] @ V_t
            if seen is not None:
                part = seen[start:stop]
                where = position[part.indices]
                keep = where >= 0
                block_rows = np.repeat(np.arange(stop - start), np.diff(part.indptr))
                block_scores[block_rows[keep], where[keep]] = -np.inf
            found, values = top_k(block_scores, width)
            ids[start:stop, :width] = np.where(found >= 0, candidates[np.maximum(found, 0)], -1)
            scores[start:stop, :width] = values
        return ids, scores

    def similar_cols(self, col: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` columns most similar to ``col`` by cosine similarity of their factors (``col`` itself
        left out; a zero factor has similarity 0 to everything). Returns (column ids int64, similarities
        float32)."""
        self._check_fitted()
        j = int(self._ids(col, self.col_factors_.shape[0], "column")[0])
        V = self.col_factors_
        norms = np.linalg.norm(V, axis=1)
        safe = np.where(norms > 0, norms, 1.0).astype(np.float32)
        query = V[j] / safe[j]
        scores = ((V @ query) / safe)[None, :]
        scores[0, j] = -np.inf
        ids, values = top_k(scores, min(int(k), V.shape[0] - 1) or 1)
        return ids[0], values[0]

    def top_rows_for_col(self, col: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows with the highest score for column ``col``: (row ids int64, scores float32)."""
        self._check_fitted()
        j = int(self._ids(col, self.col_factors_.shape[0], "column")[0])
        scores = (self.row_factors_ @ self.col_factors_[j])[None, :]
        ids, values = top_k(scores, min(int(k), self.row_factors_.shape[0]))
        return ids[0], values[0]

    # ------------------------------------------------------------------------------- projection (fold-in)

    def _project(self, csr: sp.csr_matrix, weights: Any, other: np.ndarray, other_weights: np.ndarray
                 ) -> np.ndarray:
        own = weight_vector(1.0 if weights is None else weights, csr.shape[0], "weights")
        entries, extra = _entries(csr, own, other_weights, self.alpha)
        factors = np.zeros((csr.shape[0], other.shape[1]), dtype=np.float32)
        kernels.solve(entries, extra, other, factors, float(self.unobserved_weight),
                      float(self.regularization_coeff), "cholesky", 1,
                      min(numba.get_num_threads(), max(1, csr.shape[0])))
        return factors

    def project_rows(self, R_new: Sparse, weights: float | np.ndarray | None = None) -> np.ndarray:
        """Row factors of new rows (n_new × num_cols sparse, same column ids) from their observed entries,
        solved exactly against the fixed column factors: one training half-sweep (TF's project_row_factors).

        ``weights``: the new rows' row weights, a scalar or one per row; None means 1.0 (as TF)."""
        self._check_fitted()
        csr = _as_csr(R_new, "R_new")
        if csr.shape[1] != self.col_factors_.shape[0]:
            raise ValueError(f"R_new has {csr.shape[1]} columns, the model has {self.col_factors_.shape[0]}")
        if self.alpha is not None and (csr.data < 0).any():
            raise ValueError("The implicit form (alpha set) needs values >= 0")
        return self._project(csr, weights, self.col_factors_, self.col_weights_)

    def project_cols(self, C_new: Sparse, weights: float | np.ndarray | None = None) -> np.ndarray:
        """Column factors of new columns given as a num_rows × n_new sparse matrix (the new columns in the
        matrix's own orientation), solved exactly against the fixed row factors (TF's project_col_factors).

        ``weights``: the new columns' column weights, a scalar or one per column; None means 1.0 (as TF)."""
        self._check_fitted()
        csr = _as_csr(C_new, "C_new")
        if csr.shape[0] != self.row_factors_.shape[0]:
            raise ValueError(f"C_new has {csr.shape[0]} rows, the model has {self.row_factors_.shape[0]}")
        if self.alpha is not None and (csr.data < 0).any():
            raise ValueError("The implicit form (alpha set) needs values >= 0")
        return self._project(csr.T.tocsr(), weights, self.row_factors_, self.row_weights_)

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """How well the trained column factors explain new rows: the score scikit-learn's tools maximize
        (``cross_val_score(WALS(...), R)`` holds out rows of R). ``X`` holds new rows (n × num_cols sparse);
        each is folded in (``project_rows``) from its 1st, 3rd, 5th... stored entry and scored on the others:
        minus the RMSE of those entries under the explicit form, NDCG@``eval_k`` of them under the implicit
        form (the folded-in columns left out of the candidates). Rows with one entry are not scored."""
        self._check_fitted()
        if y is not None or sample_weight is not None:
            raise ValueError("WALS.score takes the rows only: their held-out entries are the targets, all "
                             "weighted alike (no y, no sample_weight)")
        csr = _as_csr(X, "X")
        if csr.shape[1] != self.col_factors_.shape[0]:
            raise ValueError(f"X has {csr.shape[1]} columns, the model has {self.col_factors_.shape[0]}")
        coo = csr.tocoo()
        folded = (np.arange(csr.nnz) - np.repeat(csr.indptr[:-1], np.diff(csr.indptr))) % 2 == 0
        fold_in, held_out = (sp.csr_matrix((coo.data[part], (coo.row[part], coo.col[part])), shape=csr.shape)
                             for part in (folded, ~folded))
        if held_out.nnz == 0:
            raise ValueError("WALS.score needs rows with at least two entries: one to fold in, one to score")
        U = self.project_rows(fold_in)
        if self.alpha is None:
            held = held_out.tocoo()
            return -rmse(held.data, kernels.pair_scores(held.row.astype(np.int64), held.col.astype(np.int64), U,
                                                        self.col_factors_, 1))
        return ranking_metrics(U, self.col_factors_, held_out, self.eval_k, exclude=fold_in)["ndcg_at_k"]

    # ------------------------------------------------------------------------------- artifact hooks

    def get_row_factors(self) -> np.ndarray:
        """The row factors (TF's ``get_row_factors``), shape (num_rows, embedding_dimension)."""
        self._check_fitted()
        return self.row_factors_

    def get_col_factors(self) -> np.ndarray:
        """The column factors (TF's ``get_col_factors``), shape (num_cols, embedding_dimension)."""
        self._check_fitted()
        return self.col_factors_

    def get_projections(self, entries: Sparse, project_row: bool = True,
                        weights: float | np.ndarray | None = None) -> np.ndarray:
        """TF's ``get_projections``: factors of new rows (``project_row``) or new columns folded in from
        their observed entries against the fixed other side."""
        return self.project_rows(entries, weights) if project_row else self.project_cols(entries, weights)

    def artifact_arrays(self) -> dict[str, np.ndarray]:
        """The arrays ``algorithm.artifact`` stores: the factors, and per-item weights if they are vectors."""
        self._check_fitted()
        arrays = {"row_factors": self.row_factors_, "col_factors": self.col_factors_}
        for name in WEIGHT_NAMES:
            if np.ndim(getattr(self, name)) > 0:
                arrays[name] = getattr(self, f"{name}_")
        return arrays

    def artifact_meta(self) -> dict[str, Any]:
        """The JSON metadata ``algorithm.artifact`` stores with the arrays (vector weights appear as null in
        ``hyperparameters`` and as arrays of the same name)."""
        self._check_fitted()
        return {
            "algorithm": "wals",
            "num_rows": int(self.row_factors_.shape[0]),
            "num_cols": int(self.col_factors_.shape[0]),
            "embedding_dimension": int(self.row_factors_.shape[1]),
            "feedback": "explicit" if self.alpha is None else "implicit",
            "hyperparameters": {name: _json_value(value) for name, value in self.get_params().items()},
            "best_sweep": self.best_sweep_,
            "sweeps_run": self.n_sweeps_,
            "n_threads": self.n_threads_,
            "scoring": SCORING_FORMULA,
        }

    @classmethod
    def from_artifact(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> WALS:
        """Rebuild a fitted model from ``artifact_meta()``/``artifact_arrays()`` output."""
        hyperparameters = meta["hyperparameters"]
        if not isinstance(hyperparameters, Mapping):
            raise ValueError(f"hyperparameters must be a JSON object, found {type(hyperparameters).__name__}")
        names = set(cls._param_names())
        params = {name: value for name, value in hyperparameters.items() if name in names}
        for name in WEIGHT_NAMES:
            if params.get(name) is None:
                params[name] = np.asarray(arrays[name], dtype=np.float32)
        model = cls(**params)
        model._check_params()
        n, m, k = int(meta["num_rows"]), int(meta["num_cols"]), int(meta["embedding_dimension"])
        for name, shape in (("row_factors", (n, k)), ("col_factors", (m, k))):
            if name not in arrays or arrays[name].shape != shape:
                got = arrays[name].shape if name in arrays else "missing"
                raise ValueError(f"array {name!r} has shape {got}, expected {shape}")
            if arrays[name].dtype != np.float32:
                raise ValueError(f"array {name!r} is {arrays[name].dtype}; a WALS model's factors are float32")
        model.row_factors_ = np.ascontiguousarray(arrays["row_factors"], dtype=np.float32)
        model.col_factors_ = np.ascontiguousarray(arrays["col_factors"], dtype=np.float32)
        model.row_weights_ = weight_vector(params["row_weights"], n, "row_weights")
        model.col_weights_ = weight_vector(params["col_weights"], m, "col_weights")
        model.best_sweep_ = int(meta.get("best_sweep", -1))
        model.best_score_ = None
        model.n_sweeps_ = int(meta.get("sweeps_run", 0))
        model.n_threads_ = int(meta.get("n_threads", 0))
        return model
