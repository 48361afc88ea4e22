"""FM on rows in blocks: fit_blocks against fit's block shuffle, block sources, streamed metrics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm.checkpoint import META_FILE, CheckpointError, Checkpoints, TrainingStopped
from algorithm.csr import CSR
from algorithm.fm import FactorizationMachines
from algorithm.metrics import train_metrics
from algorithm.row_blocks import MemoryBlocks, row_range
from algorithm.stream_metrics import StreamingMetrics


def _rows(n: int = 6000, d: int = 300, seed: int = 0, classifier: bool = True) -> CSR:
    """Rows of 1 to 30 nonzeros (so later blocks can hold longer rows than earlier ones), planted labels."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 31, n)
    indptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    indices = np.concatenate([np.sort(rng.choice(d, m, replace=False)) for m in lengths]).astype(np.int64)
    data = rng.random(indptr[-1]).astype(np.float32)
    X = sp.csr_matrix((data, indices, indptr), shape=(n, d))
    z = X @ rng.normal(0, 0.5, d)
    labels = (z > np.median(z)).astype(np.float32) if classifier else z.astype(np.float32)
    return CSR(data, indices, indptr, d, labels)


def _model(rows: CSR, classifier: bool = True, **params: object) -> FactorizationMachines:
    settings: dict = dict(feature_dim=rows.n_cols, num_factors=4, epochs=3, mini_batch_size=100, seed=3,
                          num_threads=1, stream_buffer_mb=4, shuffle="blocks",
                          predictor_type="binary_classifier" if classifier else "regressor")
    settings.update(params)
    return FactorizationMachines(**settings)


@pytest.mark.parametrize("classifier", [True, False])
def test_fit_blocks_trains_the_model_fit_trains_with_block_shuffle(classifier: bool) -> None:
    rows = _rows(classifier=classifier)
    reference = _model(rows, classifier)
    block_rows = reference._block_rows(rows)
    assert block_rows % 100 == 0 and block_rows < rows.n_rows  # several blocks of whole mini-batches
    history: list = []
    reference.fit(rows, rows.labels, on_epoch=lambda e, train, test, s: history.append(train))
    streamed = _model(rows, classifier)
    streamed_history: list = []
    blocks_seen: list = []
    streamed.fit_blocks(MemoryBlocks(rows, block_rows),
                        on_epoch=lambda e, train, test, s: streamed_history.append(train),
                        on_block=lambda e, done, s: blocks_seen.append((e, done)))
    np.testing.assert_array_equal(streamed.V_, reference.V_)
    np.testing.assert_array_equal(streamed.w_, reference.w_)
    np.testing.assert_array_equal(streamed.w0_, reference.w0_)
    assert streamed.optimizer_state_.steps == reference.optimizer_state_.steps
    for got, expected in zip(streamed_history, history, strict=True):
        assert got.keys() == expected.keys()
        for name in expected:
            assert got[name] == pytest.approx(expected[name], rel=1e-6, abs=1e-4 if name == "auc" else 1e-9)
    assert [done for e, done in blocks_seen if e == 0][-1] == rows.n_rows


def test_block_shuffle_visits_every_row_once_block_by_block() -> None:
    rows = _rows(n=1000)
    model = _model(rows, mini_batch_size=10)
    order = np.empty(rows.n_rows, dtype=np.int32)
    block_rows = 100
    model._shuffle(order, 0, block_rows)
    assert sorted(order) == list(range(rows.n_rows))
    blocks = [order[i:i + block_rows] // block_rows for i in range(0, rows.n_rows, block_rows)]
    assert all(len(set(block)) == 1 for block in blocks)  # each stretch is one stored block
    assert [block[0] for block in blocks] != sorted(block[0] for block in blocks)  # in a shuffled order
    again = np.empty_like(order)
    model._shuffle(again, 1, block_rows)
    assert not np.array_equal(order, again)


def test_streamed_test_metrics_match_the_exact_ones() -> None:
    rows = _rows(classifier=True)
    model = _model(rows).fit(rows, rows.labels)
    exact = train_metrics("binary_classifier", rows.labels, model.predict_scores(rows))
    streamed = model.streamed_metrics(MemoryBlocks(rows, 777))
    for name, value in exact.items():
        assert streamed[name] == pytest.approx(value, abs=1e-4 if name == "auc" else 1e-9)


def test_streaming_metrics_of_the_regressor_and_weights() -> None:
    rng = np.random.default_rng(0)
    y, s, w = rng.normal(size=500), rng.normal(size=500), rng.random(500)
    metrics = StreamingMetrics("regressor")
    for r0 in range(0, 500, 128):
        metrics.update(y[r0:r0 + 128], s[r0:r0 + 128], w[r0:r0 + 128])
    expected = train_metrics("regressor", y, s, w)
    assert metrics.result() == pytest.approx(expected)


def test_fit_blocks_checks_each_block() -> None:
    rows = _rows(n=500)
    unlabeled = CSR(rows.data, rows.indices, rows.indptr, rows.n_cols)
    with pytest.raises(ValueError, match="has no labels"):
        _model(rows).fit_blocks(MemoryBlocks(unlabeled, 100))
    with pytest.raises(ValueError, match="no rows"):
        _model(rows).fit_blocks(MemoryBlocks(row_range(rows, 0, 0), 100))
    bad = CSR(rows.data, rows.indices, rows.indptr, rows.n_cols, np.full(rows.n_rows, 2.0, np.float32))
    with pytest.raises(ValueError, match="needs labels 0 or 1"):
        _model(rows).fit_blocks(MemoryBlocks(bad, 100))


def test_fit_blocks_early_stopping_keeps_the_best_epoch() -> None:
    rows = _rows()
    test = row_range(rows, 0, 1000)
    model = _model(rows, epochs=8, early_stopping_patience=1, factors_lr=5.0, linear_lr=5.0)
    model.fit_blocks(MemoryBlocks(row_range(rows, 1000, rows.n_rows), 1000), MemoryBlocks(test, 300))
    assert model.best_score_ is not None
    kept = model.streamed_metrics(MemoryBlocks(test, 1000))["binary_classification_cross_entropy"]
    assert kept == pytest.approx(model.best_score_, rel=1e-6)


@pytest.mark.parametrize("stop_at", [(1, None), (2, 2000)])  # after epoch 1; in epoch 2 after 2,000 rows
def test_fit_blocks_stopped_resumes_to_the_uninterrupted_model(tmp_path, stop_at) -> None:
    rows = _rows()
    source = MemoryBlocks(rows, 1000)
    reference = _model(rows, epochs=4, early_stopping_patience=2).fit_blocks(source, MemoryBlocks(rows, 3000))
    checkpoints = Checkpoints(tmp_path)
    stop_epoch, stop_rows = stop_at

    def stop(epoch: int, train: dict, test: dict | None, seconds: float) -> None:
        if epoch == stop_epoch and stop_rows is None:
            checkpoints.stop.requested = True

    def stop_within(epoch: int, done: int, seconds: float) -> None:
        if epoch == stop_epoch and done == stop_rows:
            checkpoints.stop.requested = True

    with pytest.raises(TrainingStopped) as stopped:
        _model(rows, epochs=4, early_stopping_patience=2).fit_blocks(
            source, MemoryBlocks(rows, 3000), on_epoch=stop, on_block=stop_within, checkpoints=checkpoints)
    assert stopped.value.checkpoint == tmp_path / META_FILE
    epochs: list[int] = []
    resumed = _model(rows, epochs=4, early_stopping_patience=2).fit_blocks(
        source, MemoryBlocks(rows, 3000), on_epoch=lambda e, tr, te, s: epochs.append(e),
        checkpoints=Checkpoints(tmp_path))
    assert epochs == list(range(2, 4))  # the stopped epoch 2 is trained again
    np.testing.assert_array_equal(resumed.V_, reference.V_)
    np.testing.assert_array_equal(resumed.w_, reference.w_)
    assert resumed.best_epoch_ == reference.best_epoch_ and resumed.best_score_ == reference.best_score_
    assert resumed.optimizer_state_.steps == reference.optimizer_state_.steps


def test_a_checkpoint_of_an_in_memory_fit_is_not_resumed_by_a_streamed_one(tmp_path) -> None:
    rows = _rows(n=1000)
    checkpoints = Checkpoints(tmp_path)
    with pytest.raises(TrainingStopped):
        _model(rows, epochs=3).fit(rows, rows.labels, checkpoints=checkpoints,
                                   on_epoch=lambda *args: setattr(checkpoints.stop, "requested", True))
    with pytest.raises(CheckpointError, match="belongs to another job"):
        _model(rows, epochs=3).fit_blocks(MemoryBlocks(rows, 100), checkpoints=Checkpoints(tmp_path))
