"""The streamed data's on-disk cache and the progress lines within epochs."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest

from algorithm.csr import CSR, concatenate
from algorithm.row_blocks import MemoryBlocks, row_range
from container.block_cache import META, BlockCache, write_cache
from container.progress import BlockProgress


def _rows(n: int = 1000, d: int = 50, seed: int = 0, weighted: bool = False) -> CSR:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 8, n)
    indptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    return CSR(rng.random(indptr[-1]).astype(np.float32), rng.integers(0, d, indptr[-1]).astype(np.int64), indptr,
               d, rng.integers(0, 2, n).astype(np.float32), rng.random(n).astype(np.float32) if weighted else None)


def _same(a: CSR, b: CSR) -> None:
    for name in ("data", "indices", "indptr", "labels", "weights"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.mark.parametrize("weighted", [False, True])
def test_the_cache_gives_back_every_block_as_written(tmp_path: Path, weighted: bool) -> None:
    rows = _rows(weighted=weighted)
    written = list(MemoryBlocks(rows, 170).blocks(None))
    passed = list(write_cache(tmp_path / "c", rows.n_cols, iter(written)))
    assert len(passed) == len(written)
    cache = BlockCache(tmp_path / "c")
    assert (cache.n_rows, cache.nnz, cache.n_blocks) == (rows.n_rows, rows.nnz, len(written))
    for b, block in enumerate(written):
        _same(cache.block(b), block)
    shuffled = list(cache.blocks(np.random.default_rng(0)))
    assert [block.n_rows for block in shuffled] != [block.n_rows for block in written]
    _same(concatenate(list(cache.blocks(None))), rows)


def test_mixed_weighted_and_unweighted_blocks_read_back_with_weight_one(tmp_path: Path) -> None:
    rows = _rows()
    first, second = row_range(rows, 0, 500), row_range(_rows(weighted=True), 500, 1000)
    list(write_cache(tmp_path / "c", rows.n_cols, [first, second]))
    cache = BlockCache(tmp_path / "c")
    np.testing.assert_array_equal(cache.block(0).weights, np.ones(500, np.float32))
    np.testing.assert_array_equal(cache.block(1).weights, second.weights)


def test_an_abandoned_pass_leaves_no_readable_cache(tmp_path: Path) -> None:
    rows = _rows()

    def failing():
        yield row_range(rows, 0, 100)
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        list(write_cache(tmp_path / "c", rows.n_cols, failing()))
    assert not (tmp_path / "c" / META).exists()


def test_progress_lines_within_epochs(caplog) -> None:
    caplog.set_level(logging.INFO)
    progress = BlockProgress("algo-1", epochs=4, interval=0.0)
    progress(0, 500, 500, 1.0)
    progress(0, 1000, 1000, 2.0)
    progress(1, 250, 250, 0.5)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "#progress_metric: host=algo-1, completed 0.0 % of epochs"  # rows per epoch unknown yet
    assert lines[-2] == "#progress_metric: host=algo-1, completed 31.2 % of epochs"  # (1 + 250 / 1000) / 4
    assert all(line.startswith("#throughput_metric: host=algo-1, train throughput=") for line in lines[1::2])
    assert progress.rows_per_epoch == 1000


def test_progress_of_a_resumed_epoch_counts_passed_over_rows_as_progress_not_throughput(caplog) -> None:
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    progress = BlockProgress("algo-1", epochs=4, interval=0.0)
    time.sleep(0.05)
    progress(2, 900, 100, 1.0)  # resumed in epoch 2 at row 800: 100 rows trained
    elapsed = time.monotonic() - started
    rate = float(caplog.records[-1].getMessage().rsplit("=", 1)[1].split()[0])
    assert 100 / elapsed <= rate <= 100 / 0.05
    progress(2, 1000, 200, 1.5)
    progress(3, 500, 500, 0.5)
    assert progress.rows_per_epoch == 1000 and progress.trained_in_epoch == 500
    assert caplog.records[-2].getMessage() == "#progress_metric: host=algo-1, completed 87.5 % of epochs"
