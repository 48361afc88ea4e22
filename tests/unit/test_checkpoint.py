"""Training checkpoints: the format (atomic, checksummed, checked against the job), the stop request, and FM
fits that stop and resume to the same model as an uninterrupted fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm import fm as fm_module
from algorithm.checkpoint import META_FILE, CheckpointError, Checkpoints, StopFlag, TrainingStopped
from algorithm.fm import FactorizationMachines
from algorithm.wals import WALS

IDENTITY = {"num_factors": 4, "data_rows": 10}


def _saved(directory: Path) -> Checkpoints:
    checkpoints = Checkpoints(directory)
    checkpoints.save("fm", IDENTITY, {"epoch": 2, "position": 0},
                     {"table": np.arange(12, dtype=np.float32).reshape(3, 4), "bias": np.ones(2, np.float32)})
    return checkpoints


def _arrays_file(directory: Path) -> Path:
    return directory / json.loads((directory / META_FILE).read_text())["file"]


def test_a_checkpoint_reads_back_what_was_saved(tmp_path: Path) -> None:
    progress, arrays = _saved(tmp_path).load("fm", IDENTITY)
    assert progress == {"epoch": 2, "position": 0}
    np.testing.assert_array_equal(arrays["table"], np.arange(12, dtype=np.float32).reshape(3, 4))
    assert arrays["bias"].dtype == np.float32


def test_a_new_save_replaces_the_previous_one_and_leaves_no_other_file(tmp_path: Path) -> None:
    checkpoints = _saved(tmp_path)
    (tmp_path / ".checkpoint.x.tmp").write_bytes(b"left by a killed save")
    checkpoints.save("fm", IDENTITY, {"epoch": 3}, {"table": np.zeros(2, np.float32)})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([META_FILE, _arrays_file(tmp_path).name])
    assert checkpoints.load("fm", IDENTITY)[0] == {"epoch": 3}


def test_a_checkpoint_that_cannot_be_written_says_where(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    blocked = tmp_path / "file" / "checkpoints"
    with pytest.raises(CheckpointError, match=f"Cannot write a checkpoint in {blocked} .*Not a directory"):
        Checkpoints(blocked).save("fm", IDENTITY, {"epoch": 3}, {"table": np.zeros(2, np.float32)})


def test_no_directory_or_no_checkpoint_means_a_fresh_start(tmp_path: Path) -> None:
    assert Checkpoints(None).load("fm", IDENTITY) is None
    assert Checkpoints(None).save("fm", IDENTITY, {}, {}) is None
    assert Checkpoints(tmp_path).load("fm", IDENTITY) is None


def test_torn_arrays_are_reported_and_never_loaded(tmp_path: Path) -> None:
    checkpoints = _saved(tmp_path)
    npz = _arrays_file(tmp_path)
    npz.write_bytes(npz.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=f"{npz}.*torn or corrupt.*empty the checkpoint directory"):
        checkpoints.load("fm", IDENTITY)


def test_a_changed_value_fails_the_checksum(tmp_path: Path) -> None:
    checkpoints = _saved(tmp_path)
    npz = _arrays_file(tmp_path)
    payload = bytearray(npz.read_bytes())
    payload[payload.index(np.float32(11).tobytes())] ^= 1  # a bit of the table's last value
    npz.write_bytes(bytes(payload))
    with pytest.raises(CheckpointError, match="torn or corrupt"):  # the zip's own CRC sees it first
        checkpoints.load("fm", IDENTITY)
    table = np.arange(12, dtype=np.float32).reshape(3, 4)
    table[2, 3] = 12
    np.savez(npz, table=table, bias=np.ones(2, np.float32))  # a well-formed file of other values
    with pytest.raises(CheckpointError, match=f"{npz} do not match the checksum in checkpoint.json"):
        checkpoints.load("fm", IDENTITY)


def test_a_missing_arrays_file_and_an_unreadable_json_are_reported(tmp_path: Path) -> None:
    checkpoints = _saved(tmp_path)
    _arrays_file(tmp_path).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        checkpoints.load("fm", IDENTITY)
    (tmp_path / META_FILE).write_text('{"format_version": 1, "algo')
    with pytest.raises(CheckpointError, match=f"{tmp_path / META_FILE} cannot be read"):
        checkpoints.load("fm", IDENTITY)


def test_another_algorithm_or_job_is_a_clear_failure(tmp_path: Path) -> None:
    checkpoints = _saved(tmp_path)
    with pytest.raises(CheckpointError, match="written by algorithm=fm, and this job trains algorithm=wals"):
        checkpoints.load("wals", IDENTITY)
    with pytest.raises(CheckpointError, match=r"num_factors: checkpoint 4, this job 8; seed: checkpoint None"):
        checkpoints.load("fm", {**IDENTITY, "num_factors": 8, "seed": 1})


def test_a_stop_request_raises_at_once_unless_deferred() -> None:
    flag = StopFlag()
    with flag.deferred():
        flag.request()
        assert flag.requested
    with pytest.raises(TrainingStopped):
        flag.request()
    with pytest.raises(TrainingStopped), flag.deferred():
        pass
    flag.complete()
    flag.request()  # after the job's work: recorded only


# ------------------------------------------------------------------------------- FM stops and resumes


class StopAfter(Checkpoints):
    """Checkpoints that request a stop after ``calls`` checks of ``due`` (one per chunk of rows)."""

    def __init__(self, directory: Path, calls: int) -> None:
        super().__init__(directory)
        self.calls = calls

    def due(self) -> bool:
        self.calls -= 1
        if self.calls == 0:
            self.stop.requested = True
        return False


def _data(n: int = 3000, d: int = 60) -> tuple[sp.csr_matrix, np.ndarray, sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(0)
    X = sp.random(n, d, density=0.1, format="csr", random_state=0, dtype=np.float32)
    y = (X @ rng.normal(0, 1, d) > 0.1).astype(np.float32)
    return X[:2500], y[:2500], X[2500:], y[2500:]


def _fm(**params) -> FactorizationMachines:
    values = dict(feature_dim=60, num_factors=4, predictor_type="binary_classifier", mini_batch_size=20,
                  epochs=6, num_threads=1, optimizer="adam", early_stopping_patience=3)
    return FactorizationMachines(**{**values, **params})


def _same_model(a: FactorizationMachines, b: FactorizationMachines) -> None:
    for name in ("w0_", "w_", "V_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.optimizer_state_ is not None and b.optimizer_state_ is not None
    for name, array in a.optimizer_state_.arrays.items():
        np.testing.assert_array_equal(array, b.optimizer_state_.arrays[name])
    assert (a.best_epoch_, a.n_epochs_, a.optimizer_state_.steps) == (b.best_epoch_, b.n_epochs_,
                                                                       b.optimizer_state_.steps)


@pytest.mark.parametrize("threads", [1, 2])
def test_fm_stopped_after_an_epoch_or_within_one_resumes_to_the_uninterrupted_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    monkeypatch.setattr(fm_module, "CHUNK_ROWS", 100)  # 5 mini-batches a call, 25 calls an epoch
    monkeypatch.setattr(fm_module, "CHUNK_SECONDS", 1e9)
    X, y, X_test, y_test = _data()
    params = dict(num_threads=threads, deterministic=True)
    whole = _fm(**params).fit(X, y, eval_set=(X_test, y_test))
    epochs_seen: list[int] = []
    for calls, where in ((3 * 24 + 3, "in epoch 3 at row 400 of"), (7, "in epoch 3 at row 1200 of")):
        with pytest.raises(TrainingStopped, match=where) as stopped:
            _fm(**params).fit(X, y, eval_set=(X_test, y_test), checkpoints=StopAfter(tmp_path, calls),
                              on_epoch=lambda epoch, *_: epochs_seen.append(epoch))
        assert stopped.value.checkpoint == tmp_path / META_FILE
    resumed = _fm(**params).fit(X, y, eval_set=(X_test, y_test), checkpoints=Checkpoints(tmp_path),
                                on_epoch=lambda epoch, *_: epochs_seen.append(epoch))
    _same_model(whole, resumed)
    assert epochs_seen == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("optimizer", [{"optimizer": "adam"}, {"optimizer": "adagrad", "adagrad_state": "row"}],
                         ids=["adam", "adagrad_row"])
def test_fm_killed_after_an_epoch_resumes_from_its_checkpoint(tmp_path: Path, optimizer: dict) -> None:
    X, y, X_test, y_test = _data()
    whole = _fm(**optimizer).fit(X, y, eval_set=(X_test, y_test))
    _fm(epochs=3, **optimizer).fit(X, y, eval_set=(X_test, y_test), checkpoints=Checkpoints(tmp_path))  # killed after 2
    progress = json.loads((tmp_path / META_FILE).read_text())["progress"]
    assert (progress["epoch"], progress["position"]) == (2, 0)
    _same_model(whole, _fm(**optimizer).fit(X, y, eval_set=(X_test, y_test), checkpoints=Checkpoints(tmp_path)))


def test_fm_refuses_a_checkpoint_of_other_settings(tmp_path: Path) -> None:
    X, y, _, _ = _data()
    _fm(epochs=2).fit(X, y, checkpoints=Checkpoints(tmp_path))
    with pytest.raises(CheckpointError, match="num_factors: checkpoint 4, this job 5"):
        _fm(num_factors=5).fit(X, y, checkpoints=Checkpoints(tmp_path))
    with pytest.raises(CheckpointError, match="data_rows: checkpoint 2500, this job 2000"):
        _fm().fit(X[:2000], y[:2000], checkpoints=Checkpoints(tmp_path))


# ------------------------------------------------------------------------------- WALS stops and resumes


class StopAtCall(Checkpoints):
    """Checkpoints that request a stop at the ``calls``-th check of ``due`` (one per sweep's row half)."""

    def __init__(self, directory: Path, calls: int) -> None:
        super().__init__(directory)
        self.calls = calls

    def due(self) -> bool:
        self.calls -= 1
        self.stop.requested = self.calls == 0
        return self.stop.requested


def _ratings() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    matrix = sp.random(80, 50, density=0.2, format="csr", random_state=1, dtype=np.float32)
    matrix.data = np.ceil(matrix.data * 5)
    test = matrix.copy()
    test.data[::3] = 0
    test.eliminate_zeros()
    return (matrix - test).tocsr(), sp.csr_matrix((matrix - (matrix - test)).toarray())


def test_wals_stopped_between_half_sweeps_or_after_one_resumes_to_the_uninterrupted_factors(tmp_path: Path) -> None:
    train, test = _ratings()
    params = dict(embedding_dimension=4, max_sweeps=6, regularization_coeff=0.5, early_stopping_patience=2,
                  num_threads=2)
    whole = WALS(**params).fit(train, eval_set=test)
    WALS(**{**params, "max_sweeps": 3}).fit(train, eval_set=test, checkpoints=Checkpoints(tmp_path))  # as if
    # killed after sweep 1: its checkpoint resumes at sweep 2
    with pytest.raises(TrainingStopped, match="in sweep 3 after its row half") as stopped:
        WALS(**params).fit(train, eval_set=test, checkpoints=StopAtCall(tmp_path, 2))
    assert stopped.value.checkpoint == tmp_path / META_FILE
    resumed = WALS(**params).fit(train, eval_set=test, checkpoints=Checkpoints(tmp_path))
    np.testing.assert_array_equal(whole.row_factors_, resumed.row_factors_)
    np.testing.assert_array_equal(whole.col_factors_, resumed.col_factors_)
    assert (whole.best_sweep_, whole.n_sweeps_) == (resumed.best_sweep_, resumed.n_sweeps_)
    with pytest.raises(CheckpointError, match="embedding_dimension: checkpoint 4, this job 5"):
        WALS(**{**params, "embedding_dimension": 5}).fit(train, checkpoints=Checkpoints(tmp_path))
    with pytest.raises(CheckpointError, match="written by algorithm=wals, and this job trains algorithm=fm"):
        _fm(feature_dim=50).fit(train, np.zeros(80, np.float32), checkpoints=Checkpoints(tmp_path))
