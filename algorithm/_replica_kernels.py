"""numba kernels behind ``FMReplica``'s rounds: a block's changes taken from the table and a combination put back,
one pass over the block's rows each (numpy's strided copies and subtractions of the same rows cost a host ~2 ms a
round, with its training stopped meanwhile: bench_fm_sync --kernels). Same arithmetic, in the same order, as the
numpy operations they replace, so replicas stay bit-for-bit equal (tests/unit/test_replica_kernels.py)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def take_changes(table: np.ndarray, base: np.ndarray, ranges: np.ndarray, now: np.ndarray, base_rows: np.ndarray,
                 changes: np.ndarray) -> None:
    """Rows ``ranges`` ([start, stop) pairs, in order) of ``table``'s and ``base``'s leading ``now.shape[1]``
    columns into ``now`` and ``base_rows``, and ``now - base_rows`` into ``changes``."""
    columns = now.shape[1]
    out = 0
    for i in range(ranges.shape[0]):
        for r in range(ranges[i, 0], ranges[i, 1]):
            for c in range(columns):
                value, last = table[r, c], base[r, c]
                now[out, c] = value
                base_rows[out, c] = last
                changes[out, c] = value - last
            out += 1


@numba.njit(cache=True, nogil=True)
def apply_combination(table: np.ndarray, base: np.ndarray, ranges: np.ndarray, sent: np.ndarray,
                      combined: np.ndarray) -> None:
    """Rows ``ranges`` of ``table`` (leading ``combined.shape[1]`` columns) become ``combined`` plus what they
    changed since they were ``sent`` (``(table - sent) + combined``: exactly ``combined`` where nothing changed);
    ``base`` takes ``combined``."""
    columns = combined.shape[1]
    out = 0
    for i in range(ranges.shape[0]):
        for r in range(ranges[i, 0], ranges[i, 1]):
            for c in range(columns):
                value = combined[out, c]
                table[r, c] = (table[r, c] - sent[out, c]) + value
                base[r, c] = value
            out += 1
