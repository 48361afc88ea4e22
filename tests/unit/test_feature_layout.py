"""Features renumbered by frequency: the layout itself, and fit trains the model it trains in the users' ids."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest

from algorithm import _fm_kernels as kernels
from algorithm import fm as fm_module
from algorithm.checkpoint import Checkpoints, TrainingStopped
from algorithm.csr import CSR
from algorithm.feature_layout import FeatureLayout
from algorithm.fm import FactorizationMachines
from algorithm.row_blocks import rows_order

UNSEEN = 40  # the last features of _rows are in no row


def _rows(n: int = 3000, d: int = 400, seed: int = 0) -> CSR:
    """Rows of 1 to 11 nonzeros over Zipf-like features (feature 0 rarest, so the layout reverses much of the
    order), the last UNSEEN features unused, planted labels."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 12, n)
    indptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    weights = np.arange(1, d - UNSEEN + 1, dtype=np.float64) ** 1.5
    weights /= weights.sum()
    indices = np.concatenate([np.sort(rng.choice(d - UNSEEN, m, replace=False, p=weights))
                              for m in lengths]).astype(np.int64)
    data = rng.random(indptr[-1]).astype(np.float32)
    score = np.add.reduceat(data * np.sin(indices), indptr[:-1])
    labels = (score > np.median(score)).astype(np.float32)
    return CSR(data, indices, indptr, d, labels)


def _model(rows: CSR, **params: object) -> FactorizationMachines:
    settings: dict = dict(feature_dim=rows.n_cols, num_factors=4, predictor_type="binary_classifier", epochs=3,
                          mini_batch_size=100, num_threads=1, seed=5)
    settings.update(params)
    return FactorizationMachines(**settings)


def test_the_layout_orders_features_by_descending_count_ties_in_id_order() -> None:
    indices = np.array([5, 2, 5, 1, 2, 5, 0, 3], dtype=np.int64)
    layout = FeatureLayout.by_frequency(indices, 7)
    assert layout.order.tolist() == [5, 2, 0, 1, 3, 4, 6]  # 5 x3, 2 x2, then 0, 1, 3 once, 4 and 6 never
    assert layout.rank.dtype == np.int16
    assert FeatureLayout.from_order(np.arange(2**15 + 1)).rank.dtype == np.int32
    np.testing.assert_array_equal(layout.order[layout.renumbered(indices)], indices)
    table = np.arange(7 * 4, dtype=np.float32).reshape(7, 4)
    moved = table.copy()
    layout.to_training(moved)
    np.testing.assert_array_equal(moved, table[layout.order])
    w, V, [(h_w, h_V)] = kernels.split_in_place(moved, 1, 1, block_rows=3, rows=layout.order)  # the way back
    np.testing.assert_array_equal(np.column_stack([w, V, h_w, h_V]), table)
    first_columns = table.copy()
    layout.to_training(first_columns, 2)
    np.testing.assert_array_equal(first_columns, np.column_stack([table[layout.order, :2], table[:, 2:]]))
    back = table[layout.order]  # training rows, as a checkpoint of a one-host fit keeps them
    layout.to_users(back)
    np.testing.assert_array_equal(back, table)


@pytest.mark.parametrize("order", [[0, 0, 2], [0, 1, 3], [-1, 0, 1]])
def test_an_order_that_is_not_a_permutation_is_refused(order: list[int]) -> None:
    with pytest.raises(ValueError, match="feature order"):
        FeatureLayout.from_order(np.array(order))


@pytest.mark.parametrize(("optimizer", "adagrad_state"),
                         [("adam", "row"), ("adagrad", "row"), ("adagrad", "element"), ("sgd", "row"), ("ftrl", "row")])
@pytest.mark.parametrize("shuffle", ["full", "runs"])
def test_renumbered_training_gives_the_model_of_the_users_ids(optimizer: str, adagrad_state: str,
                                                              shuffle: str) -> None:
    rows = _rows()
    models = []
    for renumber in (True, False):
        model = _model(rows, optimizer=optimizer, shuffle=shuffle, stream_buffer_mb=4, adagrad_state=adagrad_state)
        model.renumber_features = renumber
        model.fit(rows, rows.labels, eval_set=(rows, rows.labels))
        models.append(model)
    renumbered, plain = models
    # One thread, a fixed row order: the same sums in the same order, so the same floats; row-wise AdaGrad's
    # sum over a row's factors is vectorized by the compiler, which may add in another order at other table
    # addresses (up to float reassociation).
    same = (partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-9)
            if (optimizer, adagrad_state) == ("adagrad", "row") else np.testing.assert_array_equal)
    same(renumbered.V_, plain.V_)
    same(renumbered.w_, plain.w_)
    same(renumbered.w0_, plain.w0_)
    for name, array in plain.optimizer_state_.arrays.items():
        same(renumbered.optimizer_state_.arrays[name], array)
    fresh = _model(rows, optimizer=optimizer, adagrad_state=adagrad_state)
    _, initial, _, _ = fresh._initial_table(fresh._state_layout())
    k = renumbered.num_factors
    np.testing.assert_array_equal(renumbered.V_[-UNSEEN:], initial[-UNSEEN:, 1:1 + k])  # never seen: as drawn
    assert not np.array_equal(renumbered.V_[:-UNSEEN], initial[:-UNSEEN, 1:1 + k])


def test_early_stopping_and_warm_starts_keep_the_users_ids() -> None:
    rows = _rows()
    test = _rows(n=800, seed=1)
    models = []
    for renumber in (True, False):
        model = _model(rows, epochs=6, early_stopping_patience=1, early_stopping_tolerance=0.5)
        model.renumber_features = renumber
        model.fit(rows, rows.labels, eval_set=(test, test.labels))
        more = _model(rows, epochs=2).warm_start_from(model)
        more.renumber_features = renumber
        more.fit(rows, rows.labels)
        models.append((model, more))
    (stopped, continued), (plain_stopped, plain_continued) = models
    assert stopped.best_epoch_ == plain_stopped.best_epoch_ < stopped.n_epochs_ - 1
    np.testing.assert_array_equal(stopped.V_, plain_stopped.V_)
    np.testing.assert_array_equal(continued.V_, plain_continued.V_)


class _StopAfterEpoch(Checkpoints):
    """Checkpoints that request a stop at their first check within an epoch (after the first chunk of rows)."""

    def due(self) -> bool:
        self.stop.requested = True
        return False


@pytest.mark.parametrize("renumbered_checkpoint", [True, False])
def test_a_stopped_fit_resumes_to_the_uninterrupted_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          renumbered_checkpoint: bool) -> None:
    """A checkpoint keeps its tables in training rows with their feature order; one without an order (written
    in the users' ids) is moved into the layout of the data when resumed."""
    monkeypatch.setattr(fm_module, "CHUNK_ROWS", 500)
    rows = _rows()
    reference = _model(rows).fit(rows, rows.labels)
    stopping = _model(rows)
    stopping.renumber_features = renumbered_checkpoint
    with pytest.raises(TrainingStopped):
        stopping.fit(rows, rows.labels, checkpoints=_StopAfterEpoch(tmp_path))
    resumed = _model(rows).fit(rows, rows.labels, checkpoints=Checkpoints(tmp_path))
    np.testing.assert_array_equal(resumed.V_, reference.V_)
    np.testing.assert_array_equal(resumed.w_, reference.w_)
    for name, array in reference.optimizer_state_.arrays.items():
        np.testing.assert_array_equal(resumed.optimizer_state_.arrays[name], array)


def test_errors_name_the_users_feature_index() -> None:
    rows = _rows()
    bad = CSR(rows.data, np.where(rows.indices == rows.indices[-1], rows.n_cols + 7, rows.indices), rows.indptr,
              rows.n_cols + 8, rows.labels)
    with pytest.raises(ValueError, match=f"feature index {rows.n_cols + 7}, outside"):
        _model(rows).fit(bad, bad.labels)
    model = _model(rows).fit(rows, rows.labels)
    with pytest.raises(ValueError, match=f"feature index {rows.n_cols + 7}, outside"):
        model.predict(bad)


@pytest.mark.parametrize("n_rows", [1, 31, 1000, 200_003])
@pytest.mark.parametrize("run_rows", [1, 32])
def test_row_order_written_in_chunks_is_the_whole_array_formula(n_rows: int, run_rows: int) -> None:
    """``rows_order`` writes in chunks (no whole-size temporaries) the order the whole-array formula draws, into a
    given int32 array and with an offset too."""
    rng = np.random.default_rng(3)
    if run_rows == 1:
        want = rng.permutation(n_rows)
    else:
        whole = (rng.permutation(-(-n_rows // run_rows))[:, None] * run_rows + np.arange(run_rows)).ravel()
        want = whole[whole < n_rows]
    np.testing.assert_array_equal(rows_order(n_rows, np.random.default_rng(3), run_rows), want)
    out = np.empty(n_rows, np.int32)
    assert rows_order(n_rows, np.random.default_rng(3), run_rows, out=out, offset=7) is out
    np.testing.assert_array_equal(out, want + 7)


def test_runs_visit_every_row_once_in_runs_of_stored_rows() -> None:
    rng = np.random.default_rng(0)
    order = rows_order(1000, rng, 32)
    assert sorted(order) == list(range(1000))
    starts = [int(run[0]) for run in np.split(order, np.flatnonzero(np.diff(order) != 1) + 1)]
    assert all(start % 32 == 0 for start in starts) and len(starts) == -(-1000 // 32)
    assert starts != sorted(starts)
    np.testing.assert_array_equal(rows_order(1000, np.random.default_rng(1), 1),
                                  np.random.default_rng(1).permutation(1000))
