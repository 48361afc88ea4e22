"""numba kernels of WALS: one half-sweep (every row of one side re-solved against the other side's
factors), the per-row training loss and pair scores. The sweep loop, metrics and the estimator live in
``algorithm.wals``.

Normal equations of row i (see docs/wals.md), with Y the other side's factors (one row y_j per column j):
    (G + Σ_{j∈obs(i)} e_ij y_j y_jᵀ) x_i = Σ_{j∈obs(i)} (w0 + e_ij) t_ij y_j,   G = w0 YᵀY + λI
where t_ij is the target and e_ij = w_ij − w0 ≥ 0 the entry's weight above the unobserved weight w0. G is
computed once per half-sweep; each row adds corrections from its own observed entries only, so a half-sweep
costs O(nnz·k²) for cholesky and O(nnz·k·cg_steps) for cg (the implicit-ALS trick of Hu, Koren, Volinsky).

Every array is float32 (factors, targets, weights; accumulators too, like implicit's sdot/sposv) with int64
``indptr``/``indices``. Each kernel is a serial body over rows worker, worker + n_workers, ... (scratch
allocated once per worker) plus a ``prange`` wrapper over the workers; ``n_workers`` = 1 calls the body
directly, with no parallel region (serving-sized calls). Each row's solve reads only that row's inputs, so
results do not depend on the worker count or on scheduling: a given seed gives the same factors on any number
of threads.

``solve_cholesky`` builds the k×k system (lower triangle, four entries per pass over it) and factorizes it in
place; a pivot that is not positive (only possible with regularization 0) drops that direction, so empty
or degenerate rows get finite factors instead of an error. The cg solver runs ``cg_steps`` conjugate-gradient
steps warm-started from the current factors, the algorithm of implicit's ``least_squares_cg`` (Takács et
al.). A row with no observed entries has the exact solution 0 under both solvers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

# Fastmath without nnan/ninf, so NaN and inf still propagate (stumpy's choice, as in _fm_kernels).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
SOLVERS = ("cholesky", "cg")
# cg stops on a row once its squared residual norm is below this (implicit's threshold).
CG_TOLERANCE = 1e-20
# cg keeps a gathered copy of a row's y_j (reused by every step) for rows with at most this many entries.
CG_GATHER_LIMIT = 4096
# A Cholesky pivot at most this fraction of its diagonal entry counts as zero (semidefinite system).
PIVOT_FLOOR = 1e-6


class Entries(NamedTuple):
    """The observed entries of one side in CSR form: row i holds ``indices[indptr[i]:indptr[i+1]]``
    (columns of the other side) with their targets t_ij and extra weights e_ij = w_ij − w0."""

    indptr: np.ndarray
    indices: np.ndarray
    target: np.ndarray
    extra: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1


# ----------------------------------------------------------------------------------------- small helpers


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _dot(a: np.ndarray, b: np.ndarray, n: int) -> np.float32:
    total = np.float32(0.0)
    for i in range(n):
        total += a[i] * b[i]
    return total


@njit(fastmath=FASTMATH, cache=True)
def _cholesky_solve(A: np.ndarray, b: np.ndarray, k: int) -> None:
    """Solve A x = b for symmetric positive semidefinite A given by its lower triangle; A is overwritten with
    its Cholesky factor L (row-major lower), b with x. Directions with a non-positive pivot get x = 0."""
    for j in range(k):  # left-looking, by columns; four rows share each pass over L[j, :j]
        Lj = A[j]
        pivot = Lj[j] - _dot(Lj, Lj, j)
        if pivot > np.float32(PIVOT_FLOOR) * Lj[j]:
            diagonal = np.sqrt(pivot)
            inverse = np.float32(1.0) / diagonal
        else:
            diagonal = np.float32(0.0)
            inverse = np.float32(0.0)
        Lj[j] = diagonal
        i = j + 1
        while i + 4 <= k:
            L0, L1, L2, L3 = A[i], A[i + 1], A[i + 2], A[i + 3]
            s0 = s1 = s2 = s3 = np.float32(0.0)
            for p in range(j):
                ljp = Lj[p]
                s0 += L0[p] * ljp
                s1 += L1[p] * ljp
                s2 += L2[p] * ljp
                s3 += L3[p] * ljp
            L0[j] = (L0[j] - s0) * inverse
            L1[j] = (L1[j] - s1) * inverse
            L2[j] = (L2[j] - s2) * inverse
            L3[j] = (L3[j] - s3) * inverse
            i += 4
        for rest in range(i, k):
            Li = A[rest]
            Li[j] = (Li[j] - _dot(Li, Lj, j)) * inverse
    for i in range(k):  # L y = b
        Li = A[i]
        b[i] = (b[i] - _dot(Li, b, i)) / Li[i] if Li[i] > 0.0 else np.float32(0.0)
    for i in range(k - 1, -1, -1):  # Lᵀ x = y, column-oriented so L is read by rows
        Li = A[i]
        xi = b[i] / Li[i] if Li[i] > 0.0 else np.float32(0.0)
        b[i] = xi
        for p in range(i):
            b[p] -= Li[p] * xi


@njit(fastmath=FASTMATH, cache=True)
def _add_row_system(A: np.ndarray, b: np.ndarray, indices: np.ndarray, target: np.ndarray,
                    extra: np.ndarray, start: int, end: int, w0: np.float32, Y: np.ndarray, k: int) -> None:
    """A += Σ e_ij y_j y_jᵀ (lower triangle), b += Σ (w0 + e_ij) t_ij y_j over entries [start, end); four
    entries per pass over A so each load/store of A carries four multiply-adds."""
    e = start
    while e + 4 <= end:
        y0, y1, y2, y3 = Y[indices[e]], Y[indices[e + 1]], Y[indices[e + 2]], Y[indices[e + 3]]
        e0, e1, e2, e3 = extra[e], extra[e + 1], extra[e + 2], extra[e + 3]
        r0 = (w0 + e0) * target[e]
        r1 = (w0 + e1) * target[e + 1]
        r2 = (w0 + e2) * target[e + 2]
        r3 = (w0 + e3) * target[e + 3]
        for a in range(k):
            b[a] += r0 * y0[a] + r1 * y1[a] + r2 * y2[a] + r3 * y3[a]
            s0, s1, s2, s3 = e0 * y0[a], e1 * y1[a], e2 * y2[a], e3 * y3[a]
            Aa = A[a]
            for c in range(a + 1):
                Aa[c] += s0 * y0[c] + s1 * y1[c] + s2 * y2[c] + s3 * y3[c]
        e += 4
    while e < end:
        y = Y[indices[e]]
        ex = extra[e]
        rhs = (w0 + ex) * target[e]
        for a in range(k):
            b[a] += rhs * y[a]
            s = ex * y[a]
            Aa = A[a]
            for c in range(a + 1):
                Aa[c] += s * y[c]
        e += 1


# ----------------------------------------------------------------------------------------- solvers


@njit(fastmath=FASTMATH, cache=True)
def _cholesky_rows(indptr: np.ndarray, indices: np.ndarray, target: np.ndarray, extra: np.ndarray, w0: float,
                   Y: np.ndarray, G: np.ndarray, X: np.ndarray, worker: int, n_workers: int) -> None:
    """Exact solve of rows worker, worker + n_workers, ... of X."""
    n, k = X.shape
    w0_32 = np.float32(w0)
    A = np.empty((k, k), dtype=np.float32)
    b = np.empty(k, dtype=np.float32)
    for row in range(worker, n, n_workers):
        start, end = indptr[row], indptr[row + 1]
        if start == end:
            X[row, :] = 0.0
            continue
        A[:, :] = G
        b[:] = 0.0
        _add_row_system(A, b, indices, target, extra, start, end, w0_32, Y, k)
        _cholesky_solve(A, b, k)
        X[row, :] = b


@njit(fastmath=FASTMATH, cache=True, parallel=True)
def _cholesky_parallel(indptr: np.ndarray, indices: np.ndarray, target: np.ndarray, extra: np.ndarray,
                       w0: float, Y: np.ndarray, G: np.ndarray, X: np.ndarray, n_workers: int) -> None:
    for worker in prange(n_workers):
        _cholesky_rows(indptr, indices, target, extra, w0, Y, G, X, worker, n_workers)


@njit(fastmath=FASTMATH, cache=True)
def _add_sparse_product(Ap: np.ndarray, p: np.ndarray, gathered: np.ndarray, use_gathered: bool,
                        Y: np.ndarray, indices: np.ndarray, extra: np.ndarray, start: int, end: int,
                        k: int) -> None:
    """Ap += Σ e_ij (y_j·p) y_j over entries [start, end), reading y_j from ``gathered`` if it holds them."""
    for e in range(start, end):
        y = gathered[e - start] if use_gathered else Y[indices[e]]
        d = _dot(y, p, k) * extra[e]
        for a in range(k):
            Ap[a] += d * y[a]


@njit(fastmath=FASTMATH, cache=True)
def _cg_rows(indptr: np.ndarray, indices: np.ndarray, target: np.ndarray, extra: np.ndarray, w0: float,
             Y: np.ndarray, G: np.ndarray, X: np.ndarray, cg_steps: int, worker: int, n_workers: int) -> None:
    """``cg_steps`` conjugate-gradient steps, from the current X, on rows worker, worker + n_workers, ..."""
    n, k = X.shape
    w0_32 = np.float32(w0)
    tolerance = np.float32(CG_TOLERANCE)
    longest = 0
    for row in range(worker, n, n_workers):
        longest = max(longest, indptr[row + 1] - indptr[row])
    capacity = min(longest, CG_GATHER_LIMIT)
    x = np.empty(k, dtype=np.float32)
    r = np.empty(k, dtype=np.float32)
    p = np.empty(k, dtype=np.float32)
    Ap = np.empty(k, dtype=np.float32)
    gathered = np.empty((capacity, k), dtype=np.float32)
    for row in range(worker, n, n_workers):
        start, end = indptr[row], indptr[row + 1]
        if start == end:
            X[row, :] = 0.0
            continue
        use_gathered = end - start <= capacity
        x[:] = X[row]
        for a in range(k):  # r = b − A x
            r[a] = -_dot(G[a], x, k)
        for e in range(start, end):
            y = Y[indices[e]]
            if use_gathered:
                gathered[e - start, :] = y
            ex = extra[e]
            coefficient = (w0_32 + ex) * target[e] - ex * _dot(y, x, k)
            for a in range(k):
                r[a] += coefficient * y[a]
        rs_old = _dot(r, r, k)
        if rs_old < tolerance:
            continue
        p[:] = r
        for _ in range(cg_steps):
            for a in range(k):
                Ap[a] = _dot(G[a], p, k)
            _add_sparse_product(Ap, p, gathered, use_gathered, Y, indices, extra, start, end, k)
            curvature = _dot(p, Ap, k)
            if curvature <= 0.0:
                break
            step = rs_old / curvature
            for a in range(k):
                x[a] += step * p[a]
                r[a] -= step * Ap[a]
            rs_new = _dot(r, r, k)
            if rs_new < tolerance:
                break
            beta = rs_new / rs_old
            for a in range(k):
                p[a] = r[a] + beta * p[a]
            rs_old = rs_new
        X[row, :] = x


@njit(fastmath=FASTMATH, cache=True, parallel=True)
def _cg_parallel(indptr: np.ndarray, indices: np.ndarray, target: np.ndarray, extra: np.ndarray, w0: float,
                 Y: np.ndarray, G: np.ndarray, X: np.ndarray, cg_steps: int, n_workers: int) -> None:
    for worker in prange(n_workers):
        _cg_rows(indptr, indices, target, extra, w0, Y, G, X, cg_steps, worker, n_workers)


# ----------------------------------------------------------------------------------------- loss, scores


@njit(fastmath=FASTMATH, cache=True)
def _loss_rows(indptr: np.ndarray, indices: np.ndarray, target: np.ndarray, extra: np.ndarray, w0: float,
               X: np.ndarray, Y: np.ndarray, out: np.ndarray, worker: int, n_workers: int) -> None:
    k = X.shape[1]
    for row in range(worker, X.shape[0], n_workers):
        x = X[row]
        total = 0.0
        for e in range(indptr[row], indptr[row + 1]):
            prediction = np.float64(_dot(x, Y[indices[e]], k))
            residual = np.float64(target[e]) - prediction
            total += (w0 + extra[e]) * residual * residual - w0 * prediction * prediction
        out[row] = total


@njit(fastmath=FASTMATH, cache=True, parallel=True)
def _loss_parallel(indptr: np.ndarray, indices: np.ndarray, target: np.ndarray, extra: np.ndarray, w0: float,
                   X: np.ndarray, Y: np.ndarray, out: np.ndarray, n_workers: int) -> None:
    for worker in prange(n_workers):
        _loss_rows(indptr, indices, target, extra, w0, X, Y, out, worker, n_workers)


@njit(fastmath=FASTMATH, cache=True)
def _score_pairs(rows: np.ndarray, cols: np.ndarray, X: np.ndarray, Y: np.ndarray, out: np.ndarray,
                 worker: int, n_workers: int) -> None:
    k = X.shape[1]
    for i in range(worker, rows.size, n_workers):
        out[i] = _dot(X[rows[i]], Y[cols[i]], k)


@njit(fastmath=FASTMATH, cache=True, parallel=True)
def _score_pairs_parallel(rows: np.ndarray, cols: np.ndarray, X: np.ndarray, Y: np.ndarray, out: np.ndarray,
                          n_workers: int) -> None:
    for worker in prange(n_workers):
        _score_pairs(rows, cols, X, Y, out, worker, n_workers)


# ----------------------------------------------------------------------------------------- Python gates


def _require(array: np.ndarray, dtype: type, name: str, ndim: int) -> None:
    if not isinstance(array, np.ndarray) or array.dtype != dtype or array.ndim != ndim:
        got = (f"{array.dtype} with {array.ndim} dims" if isinstance(array, np.ndarray)
               else type(array).__name__)
        raise ValueError(f"{name} must be a {ndim}-D {np.dtype(dtype).name} array, got {got}")
    if not array.flags.c_contiguous or not array.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writeable")


def _check_entries(entries: Entries, n_rows: int, n_other: int) -> None:
    _require(entries.indptr, np.int64, "indptr", 1)
    _require(entries.indices, np.int64, "indices", 1)
    _require(entries.target, np.float32, "target", 1)
    _require(entries.extra, np.float32, "extra", 1)
    nnz = entries.indices.size
    if entries.indptr.size != n_rows + 1 or entries.indptr[0] != 0 or entries.indptr[-1] != nnz:
        raise ValueError(f"indptr must have {n_rows + 1} entries from 0 to nnz={nnz}")
    if entries.target.size != nnz or entries.extra.size != nnz:
        raise ValueError("indices, target and extra must have one value per entry")
    if nnz and (entries.indices.min() < 0 or entries.indices.max() >= n_other):
        raise ValueError(f"indices must lie in [0, {n_other})")


def gramian(Y: np.ndarray, unobserved_weight: float, regularization: float) -> np.ndarray:
    """G = w0 YᵀY + λI as float32 (summed in float32 by BLAS, scaled in float64)."""
    k = Y.shape[1]
    G = unobserved_weight * (Y.T @ Y).astype(np.float64) + regularization * np.eye(k)
    return np.ascontiguousarray(G, dtype=np.float32)


def solve(entries: Entries, other: np.ndarray, factors: np.ndarray, unobserved_weight: float,
          regularization: float, solver: str, cg_steps: int, n_workers: int) -> None:
    """One half-sweep: re-solve every row of ``factors`` (in place) against the fixed ``other`` factors."""
    _require(other, np.float32, "other factors", 2)
    _require(factors, np.float32, "factors", 2)
    if factors.shape[1] != other.shape[1]:
        raise ValueError(f"factors have {factors.shape[1]} columns but the other side has {other.shape[1]}")
    _check_entries(entries, factors.shape[0], other.shape[0])
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    G = gramian(other, unobserved_weight, regularization)
    args = (entries.indptr, entries.indices, entries.target, entries.extra, float(unobserved_weight), other,
            G, factors)
    if solver == "cholesky":
        if n_workers > 1:
            _cholesky_parallel(*args, n_workers)
        else:
            _cholesky_rows(*args, 0, 1)
    elif n_workers > 1:
        _cg_parallel(*args, int(cg_steps), n_workers)
    else:
        _cg_rows(*args, int(cg_steps), 0, 1)


def row_losses(entries: Entries, X: np.ndarray, Y: np.ndarray, unobserved_weight: float,
               n_workers: int) -> np.ndarray:
    """Per row i, in float64: Σ_{j∈obs(i)} [w_ij (t_ij − x_i·y_j)² − w0 (x_i·y_j)²] (the sparse loss)."""
    _require(X, np.float32, "X", 2)
    _require(Y, np.float32, "Y", 2)
    _check_entries(entries, X.shape[0], Y.shape[0])
    out = np.zeros(X.shape[0], dtype=np.float64)
    args = (entries.indptr, entries.indices, entries.target, entries.extra, float(unobserved_weight), X, Y,
            out)
    if n_workers > 1:
        _loss_parallel(*args, n_workers)
    else:
        _loss_rows(*args, 0, 1)
    return out


def pair_scores(rows: np.ndarray, cols: np.ndarray, X: np.ndarray, Y: np.ndarray,
                n_workers: int) -> np.ndarray:
    """float32 x_rows[i]·y_cols[i] for each pair (indices already validated by the caller)."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    cols = np.ascontiguousarray(cols, dtype=np.int64)
    out = np.empty(rows.size, dtype=np.float32)
    if n_workers > 1:
        _score_pairs_parallel(rows, cols, X, Y, out, n_workers)
    else:
        _score_pairs(rows, cols, X, Y, out, 0, 1)
    return out

