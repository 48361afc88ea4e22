"""numba kernels of WALS: one half-sweep (every row of one side re-solved against the other side's
factors), the per-row training loss and pair scores. The sweep loop, metrics and the estimator live in
``algorithm.wals``.

Normal equations of row i (see docs/wals.md), with Y the other side's factors (one row y_j per column j):
    (G + Σ_{j∈obs(i)} e_ij y_j y_jᵀ) x_i = Σ_{j∈obs(i)} (w0 + e_ij) t_ij y_j,   G = w0 YᵀY + λI
where t_ij is the target and e_ij = w_ij − w0 ≥ 0 the entry's weight above the unobserved weight w0. G is
computed once per half-sweep; each row adds corrections from its own observed entries only, so a half-sweep
costs at most O(nnz·k² + n·k³) for cholesky and O(nnz·k·cg_steps) for cg (the implicit-ALS trick of Hu,
Koren, Volinsky). BLAS is called from inside numba's threads: run it single-threaded
(OPENBLAS_NUM_THREADS=1, as the image does) so the two levels do not oversubscribe the cores.

One side's observed entries are a ``CSR`` (``algorithm.csr``) whose values are the targets t_ij, with the extra
weights e_ij in an array aligned with them. Every array is float32 (factors, targets, weights; accumulators
too, like implicit's sdot/sposv) with int64 ``indptr``/``indices``. Each kernel is a serial body over rows
(or row blocks) worker, worker + n_workers, ... (scratch allocated once per worker) plus a ``prange`` wrapper
over the workers; ``n_workers`` = 1 calls the body directly, with no parallel region (serving-sized calls).
A row's result depends only on its own inputs (and, for cg, on its block, which depends only on indptr), so
a given seed gives the same factors on any number of threads.

cholesky solves each row exactly in one of two ways. A row with n entries, n at most SHORT_ROW_FACTOR·k,
goes through its n×n system (push-through/Woodbury identity, with G = LLᵀ factorized once per half-sweep and
Z = Y L⁻ᵀ computed as one matrix product): its cost is O(n²k + n³) instead of O(nk² + k³), which is most of
the rows of a power-law data set. A longer row builds its k×k system as G plus matrix products (BLAS) of
gathered, √e_ij-scaled y_j, in chunks of DIRECT_CHUNK entries, and factorizes it in place (left-looking,
four rows per pass); a pivot that is not positive (only possible with regularization 0) drops that
direction, so degenerate rows get finite factors instead of an error (G is then not used for short rows).
cg runs ``cg_steps`` conjugate-gradient steps warm-started from the current factors, the algorithm of
implicit's ``least_squares_cg`` (Takács et al.), on blocks of consecutive rows: a block's y_j are gathered
once and reused by every step, and the G products of the block's rows are one small matrix product (BLAS)
per step. Copies are plain loops: numba's slice assignment is several times slower in these hot paths.
A row with no observed entries has the exact solution 0 under both solvers.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from algorithm._fastmath import FASTMATH
from algorithm.csr import CSR

SOLVERS = ("cholesky", "cg")
# cg stops on a row once its squared residual norm is below this (implicit's threshold).
CG_TOLERANCE = 1e-20
# cg works on blocks of up to CG_BLOCK_ROWS consecutive rows holding at most CG_BLOCK_ENTRIES entries (a
# longer row is a block of its own); a block's y_j are gathered once if they take at most CG_GATHER_BYTES.
CG_BLOCK_ROWS = 64
CG_BLOCK_ENTRIES = 2048
CG_GATHER_BYTES = 32 << 20
# cholesky: rows with at most SHORT_ROW_FACTOR * k entries are solved through their n×n system (Woodbury),
# when G's condition number is at most SHORT_ROW_MAX_CONDITION; longer rows build their k×k system from
# gathered chunks of at most DIRECT_CHUNK entries.
SHORT_ROW_FACTOR = 1.0
SHORT_ROW_MAX_CONDITION = 1e5
DIRECT_CHUNK = 2048
# A Cholesky pivot at most this fraction of its diagonal entry counts as zero (semidefinite system).
PIVOT_FLOOR = 1e-6


# ----------------------------------------------------------------------------------------- small helpers


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _dot(a: np.ndarray, b: np.ndarray, n: int) -> np.float32:
    total = np.float32(0.0)
    for i in range(n):
        total += a[i] * b[i]
    return total


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _fill(target: np.ndarray, source: np.ndarray, n: int) -> None:
    """target[:n] = source[:n] as a plain loop (numba's slice assignment is several times slower)."""
    for i in range(n):
        target[i] = source[i]


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _zero(target: np.ndarray, n: int) -> None:
    for i in range(n):
        target[i] = 0.0


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


# ----------------------------------------------------------------------------------------- solvers


@njit(fastmath=FASTMATH, cache=True)
def _direct_row(indices: np.ndarray, target: np.ndarray, extra: np.ndarray, start: int, end: int,
                w0: np.float32, Y: np.ndarray, G: np.ndarray, A: np.ndarray, T: np.ndarray, S: np.ndarray,
                b: np.ndarray) -> None:
    """Exact solve of one row into ``b``: A = G + Σ e_j y_j y_jᵀ built as GEMMs SᵀS over chunks of gathered
    rows s_j = √e_j y_j (``S`` holds one chunk), b = Σ (w0 + e_j) t_j y_j, then the Cholesky solve."""
    k = b.size
    for a in range(k):
        _fill(A[a], G[a], k)
    _zero(b, k)
    chunk = S.shape[0]
    for first in range(start, end, chunk):
        last = min(end, first + chunk)
        for e in range(first, last):
            y = Y[indices[e]]
            scale = np.sqrt(extra[e])
            rhs = (w0 + extra[e]) * target[e]
            s = S[e - first]
            for a in range(k):
                s[a] = scale * y[a]
                b[a] += rhs * y[a]
        rows = S[:last - first]
        np.dot(rows.T, rows, T)
        for a in range(k):
            Aa, Ta = A[a], T[a]
            for c in range(a + 1):
                Aa[c] += Ta[c]
    _cholesky_solve(A, b, k)


@njit(fastmath=FASTMATH, cache=True)
def _woodbury_row(indices: np.ndarray, target: np.ndarray, extra: np.ndarray, start: int, end: int,
                  w0: np.float32, Z: np.ndarray, W: np.ndarray, M: np.ndarray, c: np.ndarray,
                  b: np.ndarray) -> bool:
    """Exact solve of a short row into ``b`` through the n×n system instead of the k×k one (n entries):
    with G = LLᵀ, z_j = L⁻¹y_j (rows of Z), w_j = √e_j z_j (rows of W) and d_j = (w0 + e_j) t_j / √e_j,
        x = L⁻ᵀ Wᵀ (I + W Wᵀ)⁻¹ d,
    which equals (G + Σ e_j y_j y_jᵀ)⁻¹ Σ (w0 + e_j) t_j y_j (push-through identity) without cancellation.
    Entries with e_j = 0 and t_j = 0 add nothing and are skipped; returns False (b untouched) when an entry has
    e_j = 0 but a nonzero right-hand side, which this form cannot express."""
    k = b.size
    n = 0
    for e in range(start, end):
        ex = extra[e]
        rhs = (w0 + ex) * target[e]
        if ex <= 0.0:
            if rhs != 0.0:
                return False
            continue
        scale = np.sqrt(ex)
        z = Z[indices[e]]
        w = W[n]
        for a in range(k):
            w[a] = scale * z[a]
        c[n] = rhs / scale
        n += 1
    _zero(b, k)
    if n == 0:
        return True
    rows = W[:n]
    system = M[:n * n].reshape((n, n))
    np.dot(rows, rows.T, system)
    for i in range(n):
        system[i, i] += 1.0
    coefficients = c[:n]
    _cholesky_solve(system, coefficients, n)
    for i in range(n):  # b = Wᵀ c  (x' = Wᵀ(I + WWᵀ)⁻¹ d)
        ci, w = coefficients[i], W[i]
        for a in range(k):
            b[a] += ci * w[a]
    return True


@njit(fastmath=FASTMATH, cache=True)
def _cholesky_rows(indptr: np.ndarray, indices: np.ndarray, target: np.ndarray, extra: np.ndarray, w0: float,
                   Y: np.ndarray, G: np.ndarray, Z: np.ndarray, Linv: np.ndarray, short: int, X: np.ndarray,
                   worker: int, n_workers: int) -> None:
    """Exact solve of rows worker, worker + n_workers, ... of X: rows with at most ``short`` entries by
    ``_woodbury_row`` (with Z = Y L⁻ᵀ and L⁻¹ of G = LLᵀ), the others by ``_direct_row``."""
    n_rows, k = X.shape
    w0_32 = np.float32(w0)
    longest = 0
    for row in range(worker, n_rows, n_workers):
        longest = max(longest, indptr[row + 1] - indptr[row])
    A = np.empty((k, k), dtype=np.float32)
    T = np.empty((k, k), dtype=np.float32)
    S = np.empty((max(1, min(longest, DIRECT_CHUNK)), k), dtype=np.float32)
    width = max(1, min(longest, short))
    W = np.empty((width, k), dtype=np.float32)
    M = np.empty(width * width, dtype=np.float32)
    c = np.empty(width, dtype=np.float32)
    b = np.empty(k, dtype=np.float32)
    x = np.empty(k, dtype=np.float32)
    for row in range(worker, n_rows, n_workers):
        start, end = indptr[row], indptr[row + 1]
        if start == end:
            _zero(X[row], k)
            continue
        if end - start <= short and _woodbury_row(indices, target, extra, start, end, w0_32, Z, W, M, c, b):
            _zero(x, k)
            for i in range(k):  # x = Linvᵀ b: x_a = Σ_{i ≥ a} Linv[i, a] b_i
                bi, Li = b[i], Linv[i]
                for a in range(i + 1):
                    x[a] += Li[a] * bi
            _fill(X[row], x, k)
            continue
        _direct_row(indices, target, extra, start, end, w0_32, Y, G, A, T, S, b)
        _fill(X[row], b, k)


@njit(fastmath=FASTMATH, cache=True, parallel=True)
def _cholesky_parallel(indptr: np.ndarray, indices: np.ndarray, target: np.ndarray, extra: np.ndarray,
                       w0: float, Y: np.ndarray, G: np.ndarray, Z: np.ndarray, Linv: np.ndarray, short: int,
                       X: np.ndarray, n_workers: int) -> None:
    for worker in prange(n_workers):
        _cholesky_rows(indptr, indices, target, extra, w0, Y, G, Z, Linv, short, X, worker, n_workers)


@njit(cache=True)
def _row_blocks(indptr: np.ndarray, max_rows: int, max_entries: int) -> np.ndarray:
    """Starts of blocks of consecutive rows (plus the end): a block closes at ``max_rows`` rows or before its
    entries would exceed ``max_entries`` (a longer row forms a block of its own). Depends on indptr only."""
    n = indptr.size - 1
    starts = np.zeros(n + 2, dtype=np.int64)
    if n == 0:
        return starts[:1]
    count = 0
    first = 0
    for row in range(n):
        if row - first >= max_rows or (row > first and indptr[row + 1] - indptr[first] > max_entries):
            count += 1
            starts[count] = row
            first = row
    count += 1
    starts[count] = n
    return starts[:count + 1]


@njit(fastmath=FASTMATH, cache=True)
def _add_sparse_product(out: np.ndarray, p: np.ndarray, source: np.ndarray, rows_of: np.ndarray, first: int,
                        extra: np.ndarray, target: np.ndarray, start: int, m: int, w0: np.float32,
                        residual: bool, k: int) -> None:
    """For the m entries start, start + 1, ... with y_q = source[rows_of[first + q]], four per pass over out:
    out += Σ e_q (y_q·p) y_q, or, if ``residual``, out += Σ ((w0 + e_q) t_q − e_q (y_q·p)) y_q."""
    q = 0
    while q + 4 <= m:
        y0, y1 = source[rows_of[first + q]], source[rows_of[first + q + 1]]
        y2, y3 = source[rows_of[first + q + 2]], source[rows_of[first + q + 3]]
        d0 = d1 = d2 = d3 = np.float32(0.0)
        for a in range(k):
            pa = p[a]
            d0 += y0[a] * pa
            d1 += y1[a] * pa
            d2 += y2[a] * pa
            d3 += y3[a] * pa
        e = start + q
        if residual:
            d0 = (w0 + extra[e]) * target[e] - extra[e] * d0
            d1 = (w0 + extra[e + 1]) * target[e + 1] - extra[e + 1] * d1
            d2 = (w0 + extra[e + 2]) * target[e + 2] - extra[e + 2] * d2
            d3 = (w0 + extra[e + 3]) * target[e + 3] - extra[e + 3] * d3
        else:
            d0 *= extra[e]
            d1 *= extra[e + 1]
            d2 *= extra[e + 2]
            d3 *= extra[e + 3]
        for a in range(k):
            out[a] += d0 * y0[a] + d1 * y1[a] + d2 * y2[a] + d3 * y3[a]
        q += 4
    for rest in range(q, m):
        y = source[rows_of[first + rest]]
        e = start + rest
        d = _dot(y, p, k)
        d = (w0 + extra[e]) * target[e] - extra[e] * d if residual else extra[e] * d
        for a in range(k):
            out[a] += d * y[a]


@njit(fastmath=FASTMATH, cache=True)
def _cg_rows(indptr: np.ndarray, indices: np.ndarray, target: np.ndarray, extra: np.ndarray, w0: float,
             Y: np.ndarray, G: np.ndarray, X: np.ndarray, cg_steps: int, blocks: np.ndarray, gather_limit: int,
             worker: int, n_workers: int) -> None:
    """``cg_steps`` conjugate-gradient steps from the current X, on row blocks worker, worker + n_workers, …

    Per block: its rows' y_j are gathered once into contiguous scratch (unless they exceed ``gather_limit``),
    the G products of all its rows are one matrix product per step, and each row keeps its own CG scalars
    (a row is done once its squared residual is below CG_TOLERANCE or its curvature is not positive)."""
    k = X.shape[1]
    w0_32 = np.float32(w0)
    tolerance = np.float32(CG_TOLERANCE)
    n_blocks = blocks.size - 1
    height, capacity = 0, 1
    for b in range(worker, n_blocks, n_workers):
        height = max(height, blocks[b + 1] - blocks[b])
        capacity = max(capacity, min(gather_limit, indptr[blocks[b + 1]] - indptr[blocks[b]]))
    R = np.empty((height, k), dtype=np.float32)
    P = np.empty((height, k), dtype=np.float32)
    AP = np.empty((height, k), dtype=np.float32)
    rs = np.empty(height, dtype=np.float32)
    gathered = np.empty((capacity, k), dtype=np.float32)
    local = np.arange(capacity)
    for b in range(worker, n_blocks, n_workers):
        first_row, end_row = blocks[b], blocks[b + 1]
        h = end_row - first_row
        base = indptr[first_row]
        use_gathered = indptr[end_row] - base <= capacity
        if use_gathered:
            for e in range(base, indptr[end_row]):
                _fill(gathered[e - base], Y[indices[e]], k)
        source = gathered if use_gathered else Y
        rows_of = local if use_gathered else indices
        shift = base if use_gathered else 0
        Xb = X[first_row:end_row]
        np.dot(Xb, G, R[:h])
        for i in range(h):  # r = b − A x = −G x + Σ ((w0 + e) t − e (y·x)) y;  p = r
            start, end = indptr[first_row + i], indptr[first_row + i + 1]
            if start == end:
                _zero(Xb[i], k)
                _zero(P[i], k)
                rs[i] = 0.0
                continue
            r = R[i]
            for a in range(k):
                r[a] = -r[a]
            _add_sparse_product(r, Xb[i], source, rows_of, start - shift, extra, target, start, end - start,
                                w0_32, True, k)
            _fill(P[i], r, k)
            rs_old = _dot(r, r, k)
            rs[i] = rs_old if rs_old >= tolerance else np.float32(0.0)
        for _ in range(cg_steps):
            np.dot(P[:h], G, AP[:h])
            for i in range(h):
                rs_old = rs[i]
                if rs_old == 0.0:
                    continue
                start, end = indptr[first_row + i], indptr[first_row + i + 1]
                x, r, p, Ap = Xb[i], R[i], P[i], AP[i]
                _add_sparse_product(Ap, p, source, rows_of, start - shift, extra, target, start, end - start,
                                    w0_32, False, k)
                curvature = _dot(p, Ap, k)
                if curvature <= 0.0:
                    rs[i] = 0.0
                    continue
                step = rs_old / curvature
                for a in range(k):
                    x[a] += step * p[a]
                    r[a] -= step * Ap[a]
                rs_new = _dot(r, r, k)
                if rs_new < tolerance:
                    rs[i] = 0.0
                    continue
                beta = rs_new / rs_old
                for a in range(k):
                    p[a] = r[a] + beta * p[a]
                rs[i] = rs_new


@njit(fastmath=FASTMATH, cache=True, parallel=True)
def _cg_parallel(indptr: np.ndarray, indices: np.ndarray, target: np.ndarray, extra: np.ndarray, w0: float,
                 Y: np.ndarray, G: np.ndarray, X: np.ndarray, cg_steps: int, blocks: np.ndarray,
                 gather_limit: int, n_workers: int) -> None:
    for worker in prange(n_workers):
        _cg_rows(indptr, indices, target, extra, w0, Y, G, X, cg_steps, blocks, gather_limit, worker, n_workers)


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
    """Pairs of the worker's contiguous chunk (strided pairs would put every worker's writes on shared
    cache lines of ``out``)."""
    k = X.shape[1]
    chunk = (rows.size + n_workers - 1) // n_workers
    for i in range(worker * chunk, min((worker + 1) * chunk, rows.size)):
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


def _check_entries(entries: CSR, extra: np.ndarray, n_rows: int, n_other: int) -> None:
    """The entries' CSR arrays are checked by ``CSR`` itself; here their shape against the factors."""
    _require(extra, np.float32, "extra", 1)
    if entries.n_rows != n_rows:
        raise ValueError(f"indptr must have {n_rows + 1} entries (one row per factor row), got "
                         f"{entries.indptr.size}")
    if extra.size != entries.nnz:
        raise ValueError("extra must have one value per entry")
    if entries.nnz and (entries.indices.min() < 0 or entries.indices.max() >= n_other):
        raise ValueError(f"indices must lie in [0, {n_other})")


def gramian(Y: np.ndarray, unobserved_weight: float, regularization: float) -> np.ndarray:
    """G = w0 YᵀY + λI as float32 (summed in float32 by BLAS, scaled in float64)."""
    k = Y.shape[1]
    G = unobserved_weight * (Y.T @ Y).astype(np.float64) + regularization * np.eye(k)
    return np.ascontiguousarray(G, dtype=np.float32)


def _short_row_inputs(indptr: np.ndarray, other: np.ndarray, G: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, int]:
    """(Z = Y L⁻ᵀ, L⁻¹, the longest row solved by ``_woodbury_row``) for G = LLᵀ; no short rows (and empty
    Z, L⁻¹) when no row is short or G is singular or ill-conditioned (say λ = 0)."""
    k = other.shape[1]
    short = int(SHORT_ROW_FACTOR * k)
    lengths = np.diff(indptr)
    G64 = G.astype(np.float64)
    empty = np.zeros((0, k), dtype=np.float32)
    if not ((lengths > 0) & (lengths <= short)).any() or np.linalg.cond(G64) > SHORT_ROW_MAX_CONDITION:
        return empty, empty, 0
    L_inverse = np.linalg.inv(np.linalg.cholesky(G64))
    Linv = np.ascontiguousarray(np.tril(L_inverse), dtype=np.float32)
    return np.ascontiguousarray(other @ Linv.T), Linv, short


def solve(entries: CSR, extra: np.ndarray, other: np.ndarray, factors: np.ndarray, unobserved_weight: float,
          regularization: float, solver: str, cg_steps: int, n_workers: int, gram: np.ndarray | None = None
          ) -> None:
    """One half-sweep: re-solve every row of ``factors`` (in place) against the fixed ``other`` factors.
    ``entries``: the observed entries of this side (columns of the other side) with their targets t_ij as
    values; ``extra``: their extra weights e_ij = w_ij − w0, aligned with ``entries.data``. ``gram``: G of
    ``other`` (``gramian``) when the caller has it already (a part of the rows solved on each host)."""
    _require(other, np.float32, "other factors", 2)
    _require(factors, np.float32, "factors", 2)
    if factors.shape[1] != other.shape[1]:
        raise ValueError(f"factors have {factors.shape[1]} columns but the other side has {other.shape[1]}")
    _check_entries(entries, extra, factors.shape[0], other.shape[0])
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    G = gramian(other, unobserved_weight, regularization) if gram is None else gram
    _require(G, np.float32, "gram", 2)
    if G.shape != (other.shape[1], other.shape[1]):
        raise ValueError(f"gram must have shape {(other.shape[1], other.shape[1])}, got {G.shape}")
    w0 = float(unobserved_weight)
    if solver == "cholesky":
        Z, Linv, short = _short_row_inputs(entries.indptr, other, G)
        chol = (entries.indptr, entries.indices, entries.data, extra, w0, other, G, Z, Linv, short, factors)
        if n_workers > 1:
            _cholesky_parallel(*chol, n_workers)
        else:
            _cholesky_rows(*chol, 0, 1)
    else:
        blocks = _row_blocks(entries.indptr, CG_BLOCK_ROWS, CG_BLOCK_ENTRIES)
        gather_limit = max(1, CG_GATHER_BYTES // (4 * other.shape[1]))
        cg = (entries.indptr, entries.indices, entries.data, extra, w0, other, G, factors, int(cg_steps), blocks,
              gather_limit)
        # One worker runs the parallel kernel too: rows solved by _cg_rows compiled on its own and inlined in
        # the parallel kernel can round differently (fastmath), and the model must not depend on the count.
        _cg_parallel(*cg, max(1, n_workers))


def row_losses(entries: CSR, extra: np.ndarray, X: np.ndarray, Y: np.ndarray, unobserved_weight: float,
               n_workers: int) -> np.ndarray:
    """Per row i, in float64: Σ_{j∈obs(i)} [w_ij (t_ij − x_i·y_j)² − w0 (x_i·y_j)²] (the sparse loss); the
    entries and extra weights as for ``solve``."""
    _require(X, np.float32, "X", 2)
    _require(Y, np.float32, "Y", 2)
    _check_entries(entries, extra, X.shape[0], Y.shape[0])
    out = np.zeros(X.shape[0], dtype=np.float64)
    args = (entries.indptr, entries.indices, entries.data, extra, float(unobserved_weight), X, Y, out)
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

