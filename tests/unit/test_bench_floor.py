"""The memory-floor kernel of bench/bench_fm_floor.py does the reads and writes it claims (and no fewer)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from bench.bench_fm_floor import touch_rows


def _rows(seed: int = 0) -> sp.csr_matrix:
    X = sp.random(300, 40, density=0.2, format="csr", random_state=seed, dtype=np.float32)
    return sp.csr_matrix((X.data, X.indices.astype(np.int64), X.indptr.astype(np.int64)), shape=X.shape)


@pytest.mark.parametrize("chunks", [1, 2])
def test_reads_every_row_and_table_entry(chunks: int) -> None:
    X = _rows()
    y = np.arange(X.shape[0], dtype=np.float32)
    order = np.random.default_rng(1).permutation(X.shape[0]).astype(np.int32)
    stride, width = 6, 3
    table = np.random.default_rng(2).random(X.shape[1] * stride).astype(np.float32)
    marks = np.full((chunks, X.shape[1]), -1, np.int32)
    for w, expected in ((0, y + np.asarray(X.sum(axis=1)).ravel()),
                        (width, y + X @ table.reshape(-1, stride)[:, :width].sum(axis=1))):
        scores = np.zeros(X.shape[0], np.float32)
        touch_rows(X.data, X.indices, X.indptr, y, order, scores, table, stride, w, False, 50, marks)
        np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_writes_each_feature_row_once_per_batch() -> None:
    X = _rows(3)
    y = np.zeros(X.shape[0], np.float32)
    order = np.arange(X.shape[0], dtype=np.int32)
    stride, batch = 4, 50
    table = np.zeros(X.shape[1] * stride, np.float32)
    marks = np.full((1, X.shape[1]), -1, np.int32)
    touch_rows(X.data, X.indices, X.indptr, y, order, np.zeros(X.shape[0], np.float32), table, stride, 1, True,
               batch, marks)
    expected = np.zeros(X.shape[1])
    for b0 in range(0, X.shape[0], batch):
        block = X[b0:b0 + batch].tocsc()  # per feature: its rows in this batch, in row order
        for j in range(X.shape[1]):
            lo, hi = block.indptr[j], block.indptr[j + 1]
            if hi > lo:  # used in this batch: one add of its value in the first row that uses it
                expected[j] += block.data[lo + np.argmin(block.indices[lo:hi])]
    np.testing.assert_allclose(table.reshape(-1, stride), np.repeat(expected[:, None], stride, axis=1), rtol=1e-5)
