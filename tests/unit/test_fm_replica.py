"""Data-parallel FM: the rule that combines the replicas' changes, and replicas that end a round equal."""

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm import _fm_kernels as kernels
from algorithm.csr import CSR
from algorithm.fm import FactorizationMachines
from algorithm.fm_replica import Combiner, FMReplica, Update, initial_state


def test_changes_add_up_and_adams_moments_are_averaged():
    base, base_bias = np.full((4, 6), 10.0, np.float32), np.full(3, 10.0, np.float32)
    a = Update(np.array([0, 2]), np.ones((2, 6), np.float32), np.ones(3, np.float32))
    b = Update(np.array([2, 3]), np.full((2, 6), 2.0, np.float32), np.full(3, 2.0, np.float32))
    out = Combiner(4, kernels.state_layout("adam", 1), 1)([a, b], base, base_bias)  # (1 + k) weights, m, v
    rows = dict(zip(out.features.tolist(), out.rows.tolist(), strict=True))
    assert sorted(rows) == [0, 2, 3]
    assert rows[0] == [11.0] * 6 and rows[3] == [12.0] * 6
    assert rows[2] == [13.0, 13.0, 11.5, 11.5, 11.5, 11.5]
    assert out.bias.tolist() == [13.0, 11.5, 11.5]


@pytest.mark.parametrize("adagrad_state", ["element", "row"])
def test_replicas_hold_the_same_model_after_a_round(adagrad_state):
    rng = np.random.default_rng(0)
    cols = (rng.integers(0, 20, (400, 5)) + np.arange(5) * 20).ravel()
    x = CSR.from_matrix(sp.csr_matrix(
        (np.ones(2000, np.float32), cols, np.arange(0, 2001, 5)), shape=(400, 100)),
        labels=(rng.random(400) < 0.3).astype(np.float32))
    params = dict(feature_dim=100, num_factors=3, predictor_type="binary_classifier", mini_batch_size=20,
                  num_threads=1, adagrad_state=adagrad_state)
    halves = [CSR.from_matrix(x.to_scipy()[r::2], labels=x.labels[r::2]) for r in range(2)]
    replicas = [FMReplica(FactorizationMachines(**params), h, h.labels, None, r) for r, h in enumerate(halves)]
    start = initial_state(FactorizationMachines(**params))
    combine = Combiner(100, replicas[0].layout, 3)
    assert start[1].shape[1] == replicas[0].layout.width(3) == (6 if adagrad_state == "row" else 8)
    for replica in replicas:
        replica.start(*start)
        replica.begin_epoch(0)
        assert replica.train(3) == 60
    changes = [replica.changes() for replica in replicas]
    update = combine(changes, replicas[0].base, replicas[0].base_bias)
    for replica in replicas:
        replica.apply(update)
    assert np.array_equal(replicas[0].table, replicas[1].table)
    assert np.array_equal(replicas[0].bias, replicas[1].bias)
    touched = np.union1d(changes[0].features, changes[1].features)
    assert np.array_equal(np.sort(update.features), touched)
    untouched = np.setdiff1d(np.arange(100), touched)
    assert np.array_equal(replicas[0].table[untouched], start[1][untouched])
    # each row: the start plus both replicas' changes (AdaGrad: weights and accumulators add up)
    expected = start[1].copy()
    for change in changes:
        expected[change.features] += change.rows
    assert np.allclose(replicas[0].table, expected, atol=1e-6)
    assert np.array_equal(combine.slot, np.full(100, -1))  # scratch cleared for the next round
