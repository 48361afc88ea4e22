"""Rows in blocks: what a streamed FM fit (``FactorizationMachines.fit_blocks``) reads, one block at a time, and
the row order within a block that streamed and in-memory fits share.

A ``RowBlocks`` gives the rows of one pass as a sequence of ``CSR`` blocks with labels. A source that holds
its blocks (in memory, or in an on-disk cache) visits them in the order its ``order_rng`` draws; a stream
(a Pipe-mode FIFO) yields them as they arrive and ignores it. Within a block, ``rows_order`` gives the order
of an epoch: a permutation of every row, or (``shuffle=runs``) runs of ``RUN_ROWS`` consecutive stored rows in
a shuffled order, which the kernels read nearly sequentially.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from algorithm.csr import CSR

# Rows per run of shuffle=runs: mini-batches of 1,000 rows mix about 30 runs, and a run's rows are read as one
# stretch of memory (docs/benchmarks.md, "FM row order").
RUN_ROWS = 32


class RowBlocks(Protocol):
    """The rows of a pass, in blocks."""

    def blocks(self, order_rng: np.random.Generator | None) -> Iterator[CSR]:
        """The next pass over the rows; ``order_rng`` (when given, and the source can) draws the block order."""
        ...


def row_range(rows: CSR, r0: int, r1: int) -> CSR:
    """Rows ``r0:r1`` of ``rows``: views of data, indices, labels and weights, and a rebased indptr."""
    start, end = int(rows.indptr[r0]), int(rows.indptr[r1])
    return CSR(rows.data[start:end], rows.indices[start:end], rows.indptr[r0:r1 + 1] - start, rows.n_cols,
               None if rows.labels is None else rows.labels[r0:r1],
               None if rows.weights is None else rows.weights[r0:r1])


ORDER_CHUNK_ROWS = 65_536  # rows of ``rows_order`` written at a time


def block_order(n_blocks: int, order_rng: np.random.Generator | None) -> np.ndarray:
    """The order to visit ``n_blocks`` blocks in: drawn from ``order_rng``, or as stored without one."""
    return np.arange(n_blocks) if order_rng is None else order_rng.permutation(n_blocks)


def rows_order(n_rows: int, rng: np.random.Generator, run_rows: int, out: np.ndarray | None = None,
               offset: int = 0) -> np.ndarray:
    """An epoch's order of the ``n_rows`` rows of a block, drawn from ``rng``: a permutation of every row
    (``run_rows`` = 1), or the runs of ``run_rows`` consecutive rows (the last one shorter) in a shuffled order,
    the rows of each run in stored order; each plus ``offset``, written to ``out`` (a new int64 array when None)
    a chunk of rows at a time, so no temporary is as large as the order (on a small set they were its largest
    allocation)."""
    order = np.empty(n_rows, dtype=np.int64) if out is None else out
    if run_rows == 1:
        for start in range(0, n_rows, ORDER_CHUNK_ROWS):
            stop = min(start + ORDER_CHUNK_ROWS, n_rows)
            order[start:stop] = np.arange(offset + start, offset + stop)
        rng.shuffle(order)  # (the permutation ``rng.permutation(n_rows)`` draws)
        return order
    runs = rng.permutation(-(-n_rows // run_rows))
    at = 0
    per_chunk = max(1, ORDER_CHUNK_ROWS // run_rows)
    for first in range(0, runs.size, per_chunk):
        rows = (runs[first:first + per_chunk, None] * run_rows + np.arange(run_rows)).ravel()
        rows = rows[rows < n_rows]
        order[at:at + rows.size] = rows + offset
        at += rows.size
    return order


@dataclass(frozen=True)
class MemoryBlocks:
    """``rows`` in contiguous blocks of ``block_rows`` rows (the last one shorter)."""

    rows: CSR
    block_rows: int

    def __post_init__(self) -> None:
        if self.block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {self.block_rows}")

    def blocks(self, order_rng: np.random.Generator | None) -> Iterator[CSR]:
        starts = range(0, self.rows.n_rows, self.block_rows)
        for b in block_order(len(starts), order_rng):
            r0 = starts[b]
            yield row_range(self.rows, r0, min(r0 + self.block_rows, self.rows.n_rows))
