"""numba kernels behind ``CSR``: rows checked for repeated columns (one pass over the indices when rows are
sorted, the common case), and repeated columns summed as scipy's ``sum_duplicates`` does."""

from __future__ import annotations

import numba
import numpy as np

VALID = 0
DUPLICATES = 1
BAD_INDPTR = 2
_INSERTION_SORT_MAX = 64


@numba.njit(cache=True, nogil=True)
def check_rows(indices: np.ndarray, indptr: np.ndarray) -> int:
    """``BAD_INDPTR`` when ``indptr`` decreases or leaves [0, nnz], else ``DUPLICATES`` when a row holds a
    column twice, else ``VALID``. Rows with increasing columns cost one comparison per value; only rows out of
    order are sorted (a copy) to look for repeats."""
    nnz = indices.size
    longest = 0
    for r in range(indptr.size - 1):
        lo, hi = indptr[r], indptr[r + 1]
        if lo < 0 or hi < lo or hi > nnz:
            return BAD_INDPTR
        longest = max(longest, hi - lo)
    scratch = np.empty(0, np.int64)
    for r in range(indptr.size - 1):
        lo, hi = indptr[r], indptr[r + 1]
        increasing = True
        for i in range(lo + 1, hi):
            if indices[i] <= indices[i - 1]:
                increasing = False
                break
        if increasing:
            continue
        if scratch.size == 0:
            scratch = np.empty(longest, np.int64)
        row = scratch[: hi - lo]
        row[:] = indices[lo:hi]
        if row.size <= _INSERTION_SORT_MAX:
            for i in range(1, row.size):  # insertion sort: short rows, as most are
                value = row[i]
                j = i - 1
                while j >= 0 and row[j] > value:
                    row[j + 1] = row[j]
                    j -= 1
                if j >= 0 and row[j] == value:
                    return DUPLICATES
                row[j + 1] = value
            continue
        row.sort()
        for i in range(1, row.size):
            if row[i] == row[i - 1]:
                return DUPLICATES
    return VALID


@numba.njit(cache=True, nogil=True)
def sum_duplicates(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """New (data, indices, indptr) with each row's columns sorted and a column's values summed (in float32, in
    the order given), as ``scipy.sparse.csr_matrix.sum_duplicates`` leaves a matrix (summed zeros stay
    stored)."""
    n_rows = indptr.size - 1
    out_data = np.empty_like(data)
    out_indices = np.empty_like(indices)
    out_indptr = np.zeros(n_rows + 1, np.int64)
    scratch = np.empty(_INSERTION_SORT_MAX, np.int64)
    filled = 0
    for r in range(n_rows):
        lo, hi = indptr[r], indptr[r + 1]
        if hi - lo <= _INSERTION_SORT_MAX:  # a stable insertion sort of the positions, by column
            order = scratch[: hi - lo]
            for i in range(hi - lo):
                position = lo + i
                j = i - 1
                while j >= 0 and indices[order[j]] > indices[position]:
                    order[j + 1] = order[j]
                    j -= 1
                order[j + 1] = position
        else:
            order = np.argsort(indices[lo:hi], kind="mergesort") + lo
        i = 0
        while i < order.size:
            column = indices[order[i]]
            total = data[order[i]]
            i += 1
            while i < order.size and indices[order[i]] == column:
                total += data[order[i]]
                i += 1
            out_indices[filled] = column
            out_data[filled] = total
            filled += 1
        out_indptr[r + 1] = filled
    return out_data[:filled].copy(), out_indices[:filled].copy(), out_indptr
