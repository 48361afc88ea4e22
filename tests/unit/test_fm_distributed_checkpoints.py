"""Checkpoints of FM on several hosts: a one-host fit's checkpoint read back in the users' ids, each host's
optimizer steps kept, a one-host checkpoint from within an epoch refused, the hosts' own within an epoch read back
for the same hosts only."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm.best_epoch import BestEpoch
from algorithm.checkpoint import CheckpointError, Checkpoints
from algorithm.csr import CSR
from algorithm.fm import FactorizationMachines
from algorithm.fm_replica import FMReplica, initial_state, sync_plan
from container import fm_distributed_checkpoints as host_checkpoints

PARAMS = dict(feature_dim=60, num_factors=3, predictor_type="binary_classifier", mini_batch_size=20,
              num_threads=1, seed=4)


def _rows() -> CSR:
    rng = np.random.default_rng(0)
    cols = (np.minimum(rng.zipf(1.5, (300, 4)) - 1, 14) + np.arange(4) * 15).ravel()  # skewed: renumbered
    return CSR.from_matrix(sp.csr_matrix((np.ones(1200, np.float32), cols, np.arange(0, 1201, 4)),
                                         shape=(300, 60)), labels=(rng.random(300) < 0.4).astype(np.float32))


def _best() -> BestEpoch:
    return BestEpoch(0.0, keep_weights=False)


def _identity(model: FactorizationMachines, rows: CSR) -> dict:
    halves = [(150, int(rows.indptr[150]), False), (150, rows.nnz - int(rows.indptr[150]), False)]
    return host_checkpoints.identity(model, halves, None)


def test_a_one_host_checkpoint_starts_the_hosts_from_its_epoch_in_the_users_ids(tmp_path: Path) -> None:
    rows = _rows()
    FactorizationMachines(**PARAMS, epochs=2).fit(rows, rows.labels, checkpoints=Checkpoints(tmp_path))
    one_epoch = FactorizationMachines(**PARAMS, epochs=1).fit(rows, rows.labels)
    model = FactorizationMachines(**PARAMS, epochs=3)
    assert _identity(model, rows) == model._checkpoint_identity(rows, np.empty(0), None)  # the shares summed
    order = Checkpoints(tmp_path).load("fm", _identity(model, rows))[1]["feature_order"]
    assert not np.array_equal(order, np.arange(60))  # the one-host fit's tables are in its training rows

    resumed = host_checkpoints.resume(Checkpoints(tmp_path), _identity(model, rows), _best(), [150, 150], 1,
                                      False)
    assert resumed is not None and resumed.epoch == 1 and len(resumed.losses) == 1
    bias, table, steps, first_epoch = resumed.state
    assert steps == one_epoch.optimizer_state_.steps and first_epoch == 0 and resumed.host_steps == [steps] * 2
    np.testing.assert_array_equal(table[:, 0], one_epoch.w_)  # the fit's feature layout undone
    np.testing.assert_array_equal(table[:, 1:4], one_epoch.V_)
    assert bias[0] == one_epoch.w0_[0]


def test_each_host_resumes_its_own_steps_on_as_many_hosts(tmp_path: Path) -> None:
    rows = _rows()
    model = FactorizationMachines(**PARAMS, epochs=3)
    replica = FMReplica(model, rows, rows.labels)
    start = initial_state(model)
    replica.start(*start, sync_plan(replica.feature_counts(), 40, 300))  # the table in the replicas' rows
    checkpoints = Checkpoints(tmp_path)
    host_checkpoints.save(checkpoints, _identity(model, rows), 2, replica, [15, 16], _best(), [0.6, 0.5],
                          False, 1.0)
    for shares, steps in (([150, 150], [15, 16]), ([100] * 3, [0, 0, 0])):  # other hosts: the first host's steps
        resumed = host_checkpoints.resume(checkpoints, _identity(model, rows), _best(), shares, 1, False)
        assert resumed is not None and resumed.host_steps == steps and resumed.losses == [0.6, 0.5]
        np.testing.assert_array_equal(resumed.state[1], start[1])  # back in the users' ids


def test_a_checkpoint_within_an_epoch_is_refused_naming_it(tmp_path: Path) -> None:
    rows = _rows()
    FactorizationMachines(**PARAMS, epochs=2).fit(rows, rows.labels, checkpoints=Checkpoints(tmp_path))
    checkpoints = Checkpoints(tmp_path)
    model = FactorizationMachines(**PARAMS, epochs=2)
    progress, arrays = checkpoints.load("fm", _identity(model, rows))
    checkpoints.save("fm", _identity(model, rows), {**progress, "position": 100}, arrays)
    with pytest.raises(CheckpointError, match=r"checkpoint.json is at row 100 within epoch 1 \(written by a job on "
                                              r"one host\): a job on several hosts resumes a one-host job's epoch "
                                              r"ends only"):
        host_checkpoints.resume(checkpoints, _identity(model, rows), _best(), [150, 150], 1, False)


def test_a_checkpoint_within_an_epoch_of_the_hosts_resumes_on_the_same_shares_only(tmp_path: Path) -> None:
    rows = _rows()
    model = FactorizationMachines(**PARAMS, epochs=3)
    replica = FMReplica(model, rows, rows.labels)
    replica.start(*initial_state(model), sync_plan(replica.feature_counts(), 40, 300))
    checkpoints = Checkpoints(tmp_path)
    scores = [np.linspace(0, 1, 150, dtype=np.float32), np.linspace(1, 2, 150, dtype=np.float32)]
    own = [replica.round_arrays(), {**replica.round_arrays(), "table": replica.table + 1.0}]  # each host's table
    within = host_checkpoints.Within(3, [150, 150], [120, 110], scores, [4.5, 4.0], own)
    host_checkpoints.save(checkpoints, _identity(model, rows), 1, replica, [6, 6], _best(), [0.6], False, 8.5,
                          within)
    resumed = host_checkpoints.resume(checkpoints, _identity(model, rows), _best(), [150, 150], 1, False)
    assert resumed is not None and resumed.epoch == 1 and resumed.within is not None
    assert (resumed.within.round, resumed.within.positions, resumed.within.losses) == (3, [120, 110], [4.5, 4.0])
    for stored, given in zip(resumed.within.scores, scores, strict=True):
        np.testing.assert_array_equal(stored, given)
    for stored_arrays, given_arrays in zip(resumed.within.arrays, own, strict=True):
        assert stored_arrays.keys() == given_arrays.keys()
        for name, array in given_arrays.items():
            np.testing.assert_array_equal(stored_arrays[name], array)
    np.testing.assert_array_equal(resumed.state[1][replica.features.order], own[0]["table"])  # users' ids
    with pytest.raises(CheckpointError, match=r"is within epoch 1 of a job on 2 host\(s\) with shares of 150, 150 "
                                              r"rows; this job's hosts have 100, 100, 100"):
        host_checkpoints.resume(checkpoints, _identity(model, rows), _best(), [100] * 3, 1, False)
    with pytest.raises(CheckpointError, match=r"is within epoch 1 of a job on 2 hosts: it resumes on as many hosts"):
        FactorizationMachines(**PARAMS, epochs=3).fit(rows, rows.labels, checkpoints=checkpoints)
