"""FM on rows in blocks: fit_blocks against fit's block shuffle, block sources, streamed metrics."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable

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


@pytest.mark.parametrize(("classifier", "shuffle", "adagrad_state"),
                         [(True, "blocks", "element"), (False, "blocks", "element"), (True, "runs", "element"),
                          (True, "blocks", "row")])
def test_fit_blocks_trains_the_model_fit_trains_with_block_shuffle(classifier: bool, shuffle: str,
                                                                   adagrad_state: str) -> None:
    rows = _rows(classifier=classifier)
    reference = _model(rows, classifier, shuffle=shuffle, adagrad_state=adagrad_state)
    block_rows = reference._block_rows(rows)
    assert block_rows % 100 == 0 and block_rows < rows.n_rows  # several blocks of whole mini-batches
    history: list = []
    reference.fit(rows, rows.labels, on_epoch=lambda e, train, test, s: history.append(train))
    streamed = _model(rows, classifier, shuffle=shuffle, adagrad_state=adagrad_state)
    streamed_history: list = []
    blocks_seen: list = []
    streamed.fit_blocks(MemoryBlocks(rows, block_rows),
                        on_epoch=lambda e, train, test, s: streamed_history.append(train),
                        on_block=lambda e, done, trained, s: blocks_seen.append((e, done)))
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


def _history(into: list) -> Callable:
    return lambda epoch, train, test, seconds: into.append((epoch, train, test))


# (epoch, rows done in it) to stop at: after epoch 1; within epoch 0 (the loss baseline is that epoch's); within
# epoch 2 after its second block; after the last block of epoch 2 (the resumed fit skips the whole pass).
@pytest.mark.parametrize("stop_at", [(1, None), (0, 3000), (2, 2000), (2, 6000)])
@pytest.mark.parametrize("threads", [{"num_threads": 1}, {"num_threads": 2, "deterministic": True}],
                         ids=["one_thread", "deterministic"])
def test_fit_blocks_stopped_resumes_to_the_uninterrupted_model(tmp_path, caplog, stop_at, threads) -> None:
    rows = _rows()
    source, test = MemoryBlocks(rows, 1000), MemoryBlocks(rows, 3000)
    settings = dict(epochs=4, early_stopping_patience=2, **threads)
    reference_history: list = []
    reference = _model(rows, **settings).fit_blocks(source, test, on_epoch=_history(reference_history))
    checkpoints = Checkpoints(tmp_path)
    stop_epoch, stop_rows = stop_at

    def stop(epoch: int, train: dict, test: dict | None, seconds: float) -> None:
        if epoch == stop_epoch and stop_rows is None:
            checkpoints.stop.requested = True

    def stop_within(epoch: int, done: int, trained: int, seconds: float) -> None:
        if epoch == stop_epoch and done == stop_rows:
            checkpoints.stop.requested = True

    with pytest.raises(TrainingStopped) as stopped:
        _model(rows, **settings).fit_blocks(source, test, on_epoch=stop, on_block=stop_within,
                                            checkpoints=checkpoints)
    assert stopped.value.checkpoint == tmp_path / META_FILE
    blocks_done = 0 if stop_rows is None else stop_rows // 1000
    resumed_epoch = stop_epoch + 1 if stop_rows is None else stop_epoch
    expected = f"after block {blocks_done} ({stop_rows} rows)" if stop_rows else f"after epoch {stop_epoch}"
    assert expected in stopped.value.where
    history: list = []
    with caplog.at_level("INFO", logger="algorithm"):
        resumed = _model(rows, **settings).fit_blocks(source, test, on_epoch=_history(history),
                                                      checkpoints=Checkpoints(tmp_path))
    assert f"epoch {resumed_epoch}, block {blocks_done} ({blocks_done * 1000} rows done in it" in caplog.text
    assert history == reference_history[resumed_epoch:]  # the resumed epoch's metrics too, from its sums
    np.testing.assert_array_equal(resumed.V_, reference.V_)
    np.testing.assert_array_equal(resumed.w_, reference.w_)
    np.testing.assert_array_equal(resumed.w0_, reference.w0_)
    assert resumed.best_epoch_ == reference.best_epoch_ and resumed.best_score_ == reference.best_score_
    assert resumed.optimizer_state_.steps == reference.optimizer_state_.steps


def test_fit_blocks_checkpoints_within_epochs_when_due_and_resumes_any_of_them(tmp_path) -> None:
    rows = _rows()
    source = MemoryBlocks(rows, 1000)
    reference_history: list = []
    reference = _model(rows).fit_blocks(source, on_epoch=_history(reference_history))
    live = tmp_path / "live"
    checkpoints = Checkpoints(live, interval_seconds=0.0)  # due after every block
    copies: list = []

    def copy_checkpoint(epoch: int, done: int, trained: int, seconds: float) -> None:
        if (epoch, done) in ((0, 2000), (1, 4000)):  # (on_block runs before the block's checkpoint)
            copies.append(tmp_path / f"copy-{epoch}")
            shutil.copytree(live, copies[-1])

    _model(rows).fit_blocks(source, on_block=copy_checkpoint, checkpoints=checkpoints)
    assert len(copies) == 2
    for copy, (epoch, blocks) in zip(copies, ((0, 1), (1, 3)), strict=True):  # the checkpoint before the copy
        progress = json.loads((copy / META_FILE).read_text())["progress"]
        assert (progress["epoch"], progress["position"]["blocks"]) == (epoch, blocks)
        history: list = []
        resumed = _model(rows).fit_blocks(source, on_epoch=_history(history), checkpoints=Checkpoints(copy))
        assert history == reference_history[epoch:]
        np.testing.assert_array_equal(resumed.V_, reference.V_)
        np.testing.assert_array_equal(resumed.w_, reference.w_)


def _stopped_in_epoch_1(rows: CSR, directory, block_rows: int = 1000, after_rows: int = 4000) -> None:
    checkpoints = Checkpoints(directory)

    def stop_within(epoch: int, done: int, trained: int, seconds: float) -> None:
        checkpoints.stop.requested |= (epoch, done) == (1, after_rows)

    with pytest.raises(TrainingStopped):
        _model(rows).fit_blocks(MemoryBlocks(rows, block_rows), on_block=stop_within, checkpoints=checkpoints)


def test_a_stop_while_skipping_the_blocks_done_keeps_the_checkpoint(tmp_path) -> None:
    rows = _rows()
    source = MemoryBlocks(rows, 1000)
    reference = _model(rows).fit_blocks(source)
    _stopped_in_epoch_1(rows, tmp_path)  # 4 blocks done
    saved = (tmp_path / META_FILE).read_text()
    checkpoints = Checkpoints(tmp_path)

    class StopOnSecondBlock:
        def blocks(self, order_rng):
            for i, block in enumerate(source.blocks(order_rng)):
                checkpoints.stop.requested |= i == 1
                yield block

    with pytest.raises(TrainingStopped) as stopped:
        _model(rows).fit_blocks(StopOnSecondBlock(), checkpoints=checkpoints)
    assert "while skipping the blocks its checkpoint had done (at block 2;" in stopped.value.where
    assert stopped.value.checkpoint == tmp_path / META_FILE
    assert (tmp_path / META_FILE).read_text() == saved
    resumed = _model(rows).fit_blocks(source, checkpoints=Checkpoints(tmp_path))
    np.testing.assert_array_equal(resumed.V_, reference.V_)


def test_a_checkpoint_of_other_blocks_is_refused_naming_stream_buffer_mb(tmp_path) -> None:
    rows = _rows()
    _stopped_in_epoch_1(rows, tmp_path)
    with pytest.raises(CheckpointError, match="stream_buffer_mb: checkpoint 4, this job 8"):
        _model(rows, stream_buffer_mb=8).fit_blocks(MemoryBlocks(rows, 1000), checkpoints=Checkpoints(tmp_path))


@pytest.mark.parametrize("other", ["fewer_blocks", "other_rows"])
def test_a_position_that_does_not_fit_the_data_names_the_checkpoint(tmp_path, other) -> None:
    rows = _rows()
    _stopped_in_epoch_1(rows, tmp_path)  # 4 blocks of 1000 rows done
    data, expected = {
        "fewer_blocks": (MemoryBlocks(rows, 2000), "only 3 block(s), 6000 rows"),
        "other_rows": (MemoryBlocks(_rows(seed=1), 1000), "first 4 block(s) of this job's training data hold 4000"),
    }[other]
    with pytest.raises(CheckpointError) as error:
        _model(rows).fit_blocks(data, checkpoints=Checkpoints(tmp_path))
    message = str(error.value)
    assert str(tmp_path / META_FILE) in message and "is at block 4 of its epoch" in message
    assert expected in message and "empty the checkpoint directory" in message


@pytest.mark.parametrize("other", ["fewer_rows", "more_rows"])
def test_an_epoch_of_other_data_than_the_checkpoints_names_it(tmp_path, other) -> None:
    rows = _rows()
    checkpoints = Checkpoints(tmp_path)
    with pytest.raises(TrainingStopped):  # after epoch 0, of 6 blocks and 6000 rows
        _model(rows).fit_blocks(MemoryBlocks(rows, 1000), checkpoints=checkpoints,
                                on_epoch=lambda *args: setattr(checkpoints.stop, "requested", True))
    data, found = {
        "fewer_rows": (row_range(rows, 0, 5500), "an epoch of this job has 6 block(s), 5500 rows"),
        "more_rows": (CSR.from_matrix(sp.vstack([rows.to_scipy()] * 2), labels=np.tile(rows.labels, 2)),
                      "an epoch of this job has more than 6 block(s), 6000 rows"),
    }[other]
    with pytest.raises(CheckpointError) as error:
        _model(rows).fit_blocks(MemoryBlocks(data, 1000), checkpoints=Checkpoints(tmp_path))
    message = str(error.value)
    assert str(tmp_path / META_FILE) in message and found in message
    assert "belongs to other data: an epoch of its job had 6 block(s), 6000 rows" in message


def test_a_checkpoint_of_an_in_memory_fit_is_not_resumed_by_a_streamed_one(tmp_path) -> None:
    rows = _rows(n=1000)
    checkpoints = Checkpoints(tmp_path)
    with pytest.raises(TrainingStopped):
        _model(rows, epochs=3).fit(rows, rows.labels, checkpoints=checkpoints,
                                   on_epoch=lambda *args: setattr(checkpoints.stop, "requested", True))
    with pytest.raises(CheckpointError, match="belongs to another job"):
        _model(rows, epochs=3).fit_blocks(MemoryBlocks(rows, 100), checkpoints=Checkpoints(tmp_path))
