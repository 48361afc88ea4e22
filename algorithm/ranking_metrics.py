"""Top-k selection and ranking metrics on held-out entries: precision@k, MAP@k, NDCG@k and AUC.

Definitions (also in docs/wals.md). For an evaluated row u: the candidates C_u are all columns except the
row's excluded ones (normally its training entries); the relevant set T_u holds the row's held-out entries
with a value > 0 that are candidates; L_u = (l_1, ..., l_k) are the k best candidates by score, ties broken
by the lower column index; rel_i = 1 if l_i ∈ T_u else 0. Rows with an empty T_u are not evaluated.

    precision@k  = Σ_i rel_i / k
    AP@k         = Σ_i rel_i · precision@i / min(k, |T_u|)
    NDCG@k       = Σ_i rel_i / log2(i + 1)  /  Σ_{i ≤ min(k, |T_u|)} 1 / log2(i + 1)
    AUC_u        = share of (relevant, non-relevant candidate) pairs the scores order correctly, ties 1/2
                   (over all candidates, not only the top k; rows whose candidates are all relevant skipped)

Each reported metric is the plain mean over the evaluated rows (MAP@k is the mean of AP@k).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit, prange

# Scores are computed in blocks of rows holding at most this many float32 values (16 MB).
BLOCK_VALUES = 4_000_000
METRIC_NAMES = ("precision_at_k", "map_at_k", "ndcg_at_k", "auc")


@njit(cache=True, inline="always")
def _worse(score_a: float, index_a: int, score_b: float, index_b: int) -> bool:
    """Whether (score_a, index_a) ranks after (score_b, index_b): lower score, or same score, higher index."""
    return score_a < score_b or (score_a == score_b and index_a > index_b)


@njit(cache=True)
def _sift_down(heap_s: np.ndarray, heap_i: np.ndarray, size: int, pos: int) -> None:
    while True:
        child = 2 * pos + 1
        if child >= size:
            return
        if child + 1 < size and _worse(heap_s[child + 1], heap_i[child + 1], heap_s[child], heap_i[child]):
            child += 1
        if not _worse(heap_s[child], heap_i[child], heap_s[pos], heap_i[pos]):
            return
        heap_s[pos], heap_s[child] = heap_s[child], heap_s[pos]
        heap_i[pos], heap_i[child] = heap_i[child], heap_i[pos]
        pos = child


@njit(cache=True)
def _row_top_k(scores: np.ndarray, k: int, out_i: np.ndarray, out_s: np.ndarray) -> int:
    """The best ``k`` finite entries of ``scores`` into out_i/out_s, best first; returns how many were found.

    A min-heap whose root is the worst kept entry; an entry enters only if it beats the root."""
    size = 0
    for j in range(scores.size):
        s = scores[j]
        if not s > -np.inf:  # skips -inf (excluded) and NaN
            continue
        if size < k:
            pos = size
            out_s[pos] = s
            out_i[pos] = j
            size += 1
            while pos > 0:  # sift up
                parent = (pos - 1) // 2
                if not _worse(out_s[pos], out_i[pos], out_s[parent], out_i[parent]):
                    break
                out_s[pos], out_s[parent] = out_s[parent], out_s[pos]
                out_i[pos], out_i[parent] = out_i[parent], out_i[pos]
                pos = parent
        elif _worse(out_s[0], out_i[0], s, j):
            out_s[0] = s
            out_i[0] = j
            _sift_down(out_s, out_i, size, 0)
    for end in range(size - 1, 0, -1):  # heap sort: the worst goes to the back
        out_s[0], out_s[end] = out_s[end], out_s[0]
        out_i[0], out_i[end] = out_i[end], out_i[0]
        _sift_down(out_s, out_i, end, 0)
    for j in range(size, k):
        out_i[j] = -1
        out_s[j] = -np.inf
    return size


@njit(cache=True)
def _top_k_rows(scores: np.ndarray, k: int, out_i: np.ndarray, out_s: np.ndarray, worker: int,
                n_workers: int) -> None:
    for row in range(worker, scores.shape[0], n_workers):
        _row_top_k(scores[row], k, out_i[row], out_s[row])


@njit(cache=True, parallel=True)
def _top_k_parallel(scores: np.ndarray, k: int, out_i: np.ndarray, out_s: np.ndarray, n_workers: int) -> None:
    for worker in prange(n_workers):
        _top_k_rows(scores, k, out_i, out_s, worker, n_workers)


@njit(cache=True)
def _metric_rows(scores: np.ndarray, rel_indptr: np.ndarray, rel_indices: np.ndarray, k: int,
                 out: np.ndarray, worker: int, n_workers: int) -> None:
    """out[row] = (precision@k, AP@k, NDCG@k, AUC) of rows worker, worker + n_workers, ... of ``scores``
    (excluded entries are -inf); the relevant columns of row r are rel_indices[rel_indptr[r]:rel_indptr[r+1]],
    sorted."""
    top_i = np.empty(k, dtype=np.int64)
    top_s = np.empty(k, dtype=scores.dtype)
    for row in range(worker, scores.shape[0], n_workers):
        relevant = rel_indices[rel_indptr[row]:rel_indptr[row + 1]]
        n_rel = relevant.size
        if n_rel == 0:
            out[row, :] = np.nan
            continue
        row_scores = scores[row]
        found = _row_top_k(row_scores, k, top_i, top_s)
        hits = 0
        ap = 0.0
        dcg = 0.0
        for i in range(found):
            pos = np.searchsorted(relevant, top_i[i])
            if pos < n_rel and relevant[pos] == top_i[i]:
                hits += 1
                ap += hits / (i + 1.0)
                dcg += 1.0 / math.log2(i + 2.0)
        ideal = 0.0
        for i in range(min(k, n_rel)):
            ideal += 1.0 / math.log2(i + 2.0)
        out[row, 0] = hits / k
        out[row, 1] = ap / min(k, n_rel)
        out[row, 2] = dcg / ideal
        rel_scores = np.sort(row_scores[relevant])
        n_candidates = 0
        correct = 0.0
        for j in range(row_scores.size):
            s = row_scores[j]
            if not s > -np.inf:
                continue
            n_candidates += 1
            below = np.searchsorted(rel_scores, s, side="left")
            not_above = np.searchsorted(rel_scores, s, side="right")
            correct += (n_rel - not_above) + 0.5 * (not_above - below)
        n_negative = n_candidates - n_rel
        # the relevant-vs-relevant pairs counted above add up to exactly n_rel² / 2
        out[row, 3] = (correct - 0.5 * n_rel * n_rel) / (n_rel * n_negative) if n_negative > 0 else np.nan


@njit(cache=True, parallel=True)
def _metrics_parallel(scores: np.ndarray, rel_indptr: np.ndarray, rel_indices: np.ndarray, k: int,
                      out: np.ndarray, n_workers: int) -> None:
    for worker in prange(n_workers):
        _metric_rows(scores, rel_indptr, rel_indices, k, out, worker, n_workers)


def top_k(scores: np.ndarray, k: int, n_workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``scores`` (n × m), the ``k`` highest finite entries best first (ties: lower index first).

    Returns (indices int64 (n, k), values float32 (n, k)); -inf and NaN entries are never returned, and a row
    with fewer than ``k`` finite entries is padded with index -1 and value -inf."""
    scores = np.require(scores, dtype=np.float32, requirements=("C", "W"))
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (rows x candidates), got shape {scores.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = scores.shape[0]
    indices = np.empty((n, k), dtype=np.int64)
    values = np.empty((n, k), dtype=np.float32)
    workers = n_workers or numba.get_num_threads()
    if workers > 1 and n > 1:
        _top_k_parallel(scores, int(k), indices, values, workers)
    else:
        _top_k_rows(scores, int(k), indices, values, 0, 1)
    return indices, values


def _structure(matrix: sp.spmatrix | sp.sparray, positive_only: bool) -> sp.csr_matrix:
    csr = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    csr.sum_duplicates()
    keep = csr.data > 0 if positive_only else np.ones(csr.nnz, dtype=bool)
    csr.data = keep.astype(np.float32)
    csr.eliminate_zeros()
    return csr


def ranking_metrics(row_factors: np.ndarray, col_factors: np.ndarray, test: sp.spmatrix | sp.sparray, k: int,
                    exclude: sp.spmatrix | sp.sparray | None = None,
                    n_workers: int | None = None) -> dict[str, float]:
    """Mean precision@k, MAP@k, NDCG@k and AUC over the rows with held-out entries (module docstring), the
    score of (i, j) being ``row_factors[i] · col_factors[j]``.

    ``test`` (n_rows × n_cols): held-out entries, relevant where the value is > 0. ``exclude`` (same shape,
    optional): entries removed from the candidates (the training matrix), whatever their value. Metrics are
    NaN when no row has a relevant entry. ``n_workers``: numba workers (default: numba's thread count)."""
    n_rows, n_cols = row_factors.shape[0], col_factors.shape[0]
    for name, matrix in (("test", test), ("exclude", exclude)):
        if matrix is not None and matrix.shape != (n_rows, n_cols):
            raise ValueError(f"{name} has shape {matrix.shape}, expected ({n_rows}, {n_cols})")
    relevant = _structure(test, positive_only=True)
    excluded = None if exclude is None else _structure(exclude, positive_only=False)
    if excluded is not None:
        relevant = relevant - relevant.multiply(excluded)
        relevant.eliminate_zeros()
    relevant = sp.csr_matrix(relevant)
    relevant.sort_indices()
    rows = np.flatnonzero(np.diff(relevant.indptr))
    if rows.size == 0:
        return dict.fromkeys(METRIC_NAMES, math.nan)
    workers = n_workers or numba.get_num_threads()
    V_t = np.ascontiguousarray(col_factors, dtype=np.float32).T
    per_row = np.empty((rows.size, 4), dtype=np.float64)
    block = max(1, BLOCK_VALUES // max(1, n_cols))
    for start in range(0, rows.size, block):
        chunk = rows[start:start + block]
        scores = np.ascontiguousarray(row_factors[chunk], dtype=np.float32) @ V_t
        if excluded is not None:
            ex = excluded[chunk]
            scores[np.repeat(np.arange(chunk.size), np.diff(ex.indptr)), ex.indices] = -np.inf
        rel = relevant[chunk]
        args = (scores, rel.indptr.astype(np.int64), rel.indices.astype(np.int64), int(k),
                per_row[start:start + chunk.size])
        if workers > 1:
            _metrics_parallel(*args, workers)
        else:
            _metric_rows(*args, 0, 1)
    means = [float(per_row[:, i].mean()) for i in range(3)]
    auc = per_row[:, 3]
    auc = auc[~np.isnan(auc)]
    means.append(float(auc.mean()) if auc.size else math.nan)
    return dict(zip(METRIC_NAMES, means, strict=True))
