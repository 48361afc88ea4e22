"""Features renumbered by training frequency: ``FactorizationMachines.fit`` trains with the rows of its packed
table (``algorithm._fm_kernels``) in the order of how many training nonzeros use each feature, most used first
(ties in the users' id order), so the rows most nonzeros touch share cache lines and pages. The training rows'
feature ids are rewritten into that space once, in the narrowest integer type that holds them (int16 up to 32,768
features, int32 up to 2**31: a quarter or half the bytes of the users' int64 ids, for the copy and for the kernels'
reads). The table's rows are moved in place into the layout at the start (``to_training``) and written back
to the users' ids as the table is split at the end (``_fm_kernels.split_in_place(..., rows=order)``):
artifacts, warm starts, checkpoints' meaning and serving all stay in the users' ids. Features no training row
uses come last and keep their initial values (the lazy updates never touch them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from algorithm._fm_kernels import LINE_FLOATS, _prefetch_2d

BLOCK = 1 << 20  # nonzeros per block of the counting pass
PERMUTE_AHEAD = 8  # rows of the cycle prefetched ahead of the one moved


@njit(cache=True)
def _permute_rows(table, target):
    """Move row i of the 2-D ``table`` to row ``target[i]`` (a permutation), in place: cycle by cycle, with one
    row of scratch. The rows PERMUTE_AHEAD steps further along the cycle are prefetched, so the walk waits on the
    small ``target`` array rather than on the table's rows."""
    n, width = table.shape
    placed = np.zeros(n, np.bool_)
    carry = np.empty(width, table.dtype)  # (a view of some columns of a wider table is moved as its rows)
    spare = np.empty(width, table.dtype)
    for start in range(n):
        if placed[start]:
            continue
        carry[:] = table[start]
        i = start
        ahead = start
        for _ in range(PERMUTE_AHEAD):
            ahead = target[ahead]
        while True:
            ahead = target[ahead]
            for c in range(0, width, LINE_FLOATS):
                _prefetch_2d(table, ahead, c)
            _prefetch_2d(table, ahead, width - 1)
            j = target[i]
            spare[:] = table[j]
            table[j] = carry
            placed[j] = True
            carry, spare = spare, carry
            i = j
            if j == start:
                break


@njit(cache=True)
def _gather(values, indices, out):
    """``out[p] = values[indices[p]]`` (2-3x numpy's ``take`` here: no bounds checks, no index conversion)."""
    for p in range(indices.size):
        out[p] = values[indices[p]]


def index_dtype(feature_dim: int) -> type:
    """The narrowest integer type of renumbered ids of ``feature_dim`` features."""
    return np.int16 if feature_dim <= 2**15 else np.int32 if feature_dim <= 2**31 else np.int64


@dataclass(frozen=True)
class FeatureLayout:
    """A renumbering of ``feature_dim`` features: training row ``r`` holds the users' feature ``order[r]``, and
    the users' feature ``i`` is training row ``rank[i]``."""

    order: np.ndarray  # (feature_dim,) int64: users' id of each training row
    rank: np.ndarray  # (feature_dim,) int16, int32 or int64 (``index_dtype``): training row of each users' id

    @classmethod
    def by_frequency(cls, indices: np.ndarray, feature_dim: int) -> FeatureLayout:
        """The layout of features by descending count in ``indices`` (the training nonzeros' ids, all in
        [0, feature_dim)), ties in id order."""
        counts = np.zeros(feature_dim, np.int64)
        for start in range(0, indices.size, BLOCK):
            counts += np.bincount(indices[start:start + BLOCK], minlength=feature_dim)
        return cls.from_order(np.argsort(-counts, kind="stable"))

    @classmethod
    def from_order(cls, order: np.ndarray) -> FeatureLayout:
        """The layout whose training row ``r`` holds the users' feature ``order[r]``; ValueError when ``order``
        is not a permutation."""
        order = np.ascontiguousarray(order, dtype=np.int64)
        n = order.size
        rank: np.ndarray = np.full(n, -1, dtype=index_dtype(n))
        if n and (order.min() < 0 or order.max() >= n):
            raise ValueError(f"a feature order holds ids outside [0, {n})")
        rank[order] = np.arange(n, dtype=rank.dtype)
        if n and rank.min() < 0:
            raise ValueError("a feature order names some feature twice")
        return cls(order, rank)

    def renumbered(self, indices: np.ndarray) -> np.ndarray:
        """``indices`` (users' ids) as training rows, a new array of ``rank``'s dtype."""
        out = np.empty(indices.size, dtype=self.rank.dtype)
        _gather(self.rank, indices, out)
        return out

    def to_training(self, table: np.ndarray, columns: int | None = None) -> None:
        """Reorder the rows of the 2-D ``table`` (one per feature, in the users' ids) into training rows, in
        place: all its columns, or the first ``columns`` (those that differ between rows: a fresh optimizer
        state is zeros). The way back is ``_fm_kernels.split_in_place(..., rows=order)``."""
        _permute_rows(table[:, :table.shape[1] if columns is None else columns], self.rank)  # (one numba type)

    def to_users(self, table: np.ndarray) -> None:
        """Reorder the rows of the 2-D ``table`` (training rows, ``to_training``'s result) back into the users'
        ids, in place."""
        _permute_rows(table, self.order)
