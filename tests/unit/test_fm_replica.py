"""Data-parallel FM: the plan of hot and used rows, the rule that combines the replicas' changes, and replicas
that end a round equal."""

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm import _fm_kernels as kernels
from algorithm.best_epoch import BestEpoch
from algorithm.csr import CSR
from algorithm.fm import FactorizationMachines
from algorithm.fm_replica import (
    HOT_TOUCHES,
    STATE,
    Block,
    ColumnRules,
    FMReplica,
    Part,
    column_rules,
    combine,
    initial_state,
    sync_plan,
)


def test_plan_orders_features_by_count_and_marks_the_hot_and_the_used_ones():
    counts = np.array([0, 50, 7, 0, 50, 400])
    plan = sync_plan(counts, rows_per_round=100, total_rows=1000)  # a round's rows use feature i counts[i] / 10
    assert plan.order.tolist() == [5, 1, 4, 2, 0, 3]  # most used first, ties in id order
    assert plan.hot == int(np.count_nonzero(counts / 10 >= HOT_TOUCHES)) == 1
    assert plan.used == 4
    assert sync_plan(counts, rows_per_round=0, total_rows=1000).hot == 0  # one combination per epoch


def test_changes_add_up_and_adams_moments_are_averaged():
    base, base_bias = np.full((4, 6), 10.0, np.float32), np.full(3, 10.0, np.float32)
    a = np.zeros((3, 6), np.float32)
    a[0], a[2] = 1.0, 1.0
    b = np.zeros((3, 6), np.float32)
    b[2] = 2.0
    rules = column_rules(kernels.state_layout("adam", 1), 1)  # (1 + k) weights, m, v
    assert rules.averaged.tolist() == [False, False, True, True, True, True] and rules.weights == 2
    out = combine([Block(a, np.ones(3, np.float32)), Block(b, np.full(3, 2.0, np.float32))], base, base_bias,
                  rules)
    assert out.rows.shape == (3, 6)  # the changed block only: row 3 is not part of it
    assert out.rows[0].tolist() == [11.0] * 6
    assert out.rows[1].tolist() == [10.0] * 6
    assert out.rows[2].tolist() == [13.0, 13.0, 11.5, 11.5, 11.5, 11.5]
    assert out.bias.tolist() == [13.0, 11.5, 11.5]
    weights = combine([Block(a[:, :2], np.zeros(0, np.float32)), Block(b[:, :2], np.zeros(0, np.float32))],
                      base, base_bias, rules)  # the hot rows' weights: they add up, the bias stays
    assert weights.rows[2].tolist() == [13.0, 13.0] and weights.bias.tolist() == [10.0] * 3


def test_weights_changed_by_more_than_two_replicas_take_two_replicas_worth():
    """Three replicas: a row's weights changed by all three take twice their mean, by two or one their sum; the
    accumulated state adds up and Adam's moments take the mean; the bias's weight as the rows'."""
    base, base_bias = np.zeros((3, 4), np.float32), np.zeros(2, np.float32)
    changes = []
    for r in range(3):
        rows = np.zeros((3, 4), np.float32)
        rows[0] = 3.0  # every replica
        rows[1] = 1.0 if r < 2 else 0.0  # two of them
        rows[2] = 5.0 if r == 0 else 0.0  # one
        changes.append(Block(rows, np.full(2, 3.0, np.float32)))
    adagrad = combine(changes, base, base_bias, column_rules(kernels.state_layout("adagrad", 1), 1))
    assert adagrad.rows.tolist() == [[6.0, 6.0, 9.0, 9.0], [2.0, 2.0, 2.0, 2.0], [5.0] * 4]
    assert adagrad.bias.tolist() == [6.0, 9.0]
    adam = combine([Block(c.rows[:, :4], c.bias) for c in changes], np.zeros((3, 4), np.float32), base_bias,
                   ColumnRules(np.array([False, False, True, True]), 2))
    assert adam.rows[0].tolist() == [6.0, 6.0, 3.0, 3.0] and adam.bias.tolist() == [6.0, 3.0]
    two = combine(changes[:2], base, base_bias, column_rules(kernels.state_layout("adagrad", 1), 1))
    assert two.rows[0].tolist() == [6.0] * 4 and two.bias.tolist() == [6.0, 6.0]  # two replicas: the sum


@pytest.mark.parametrize("adagrad_state", ["element", "row"])
def test_replicas_hold_the_same_model_after_the_rounds_of_an_epoch(adagrad_state):
    rng = np.random.default_rng(0)
    cols = (rng.zipf(1.5, (400, 5)) % 20 + np.arange(5) * 20).ravel()  # some features far more used than others
    x = CSR.from_matrix(sp.csr_matrix(
        (np.ones(2000, np.float32), cols, np.arange(0, 2001, 5)), shape=(400, 120)),
        labels=(rng.random(400) < 0.3).astype(np.float32))
    params = dict(feature_dim=120, num_factors=3, predictor_type="binary_classifier", mini_batch_size=20,
                  num_threads=1, adagrad_state=adagrad_state)
    halves = [CSR.from_matrix(x.to_scipy()[r::2], labels=x.labels[r::2]) for r in range(2)]
    replicas = [FMReplica(FactorizationMachines(**params), h, h.labels, None, r) for r, h in enumerate(halves)]
    start_state = initial_state(FactorizationMachines(**params))
    plan = sync_plan(sum(replica.feature_counts() for replica in replicas), 2 * 3 * 20, 400)
    assert 0 < plan.hot < plan.used < 120  # features 100-119 are never used
    rules = column_rules(replicas[0].layout, 3)
    assert start_state[1].shape[1] == replicas[0].layout.width(3) == (6 if adagrad_state == "row" else 8)
    for replica in replicas:
        replica.start(*start_state, plan)
        replica.begin_epoch(0)
    before = replicas[0].table.copy()
    assert replicas[0].train(3) == replicas[1].train(3) == 60
    first = [replica.changes(Part(1, 3)) for replica in replicas]  # the hot rows and the second slice of the rest
    cold = plan.used - plan.hot
    start, stop = plan.hot + cold // 3, plan.hot + 2 * cold // 3
    assert replicas[0].ranges(Part(1, 3)) == ((0, plan.hot), (start, stop))
    assert first[0].rows.shape == (plan.hot + stop - start, 4)  # their weights
    update = combine(first, replicas[0].sent_base, replicas[0].base_bias, rules)
    for replica in replicas:
        replica.apply(update)
    for rows in (slice(0, plan.hot), slice(start, stop)):
        assert np.array_equal(replicas[0].table[rows, :4], replicas[1].table[rows, :4])
    sent = np.concatenate([before[:plan.hot, :4], before[start:stop, :4]])
    assert np.allclose(np.concatenate([replicas[0].table[:plan.hot, :4], replicas[0].table[start:stop, :4]]),
                       sent + first[0].rows + first[1].rows, atol=1e-6)
    assert not np.array_equal(replicas[0].table[plan.hot:start], replicas[1].table[plan.hot:start])  # apart
    mid = replicas[0].table.copy()
    for replica in replicas:
        replica.train(0)
    full = [replica.changes(STATE) for replica in replicas]
    start_width = start_state[1].shape[1]
    assert full[0].rows.shape == (plan.used, start_width)
    update = combine(full, replicas[0].sent_base, replicas[0].base_bias, rules)
    for replica in replicas:
        replica.apply(update)
    assert np.array_equal(replicas[0].table, replicas[1].table)
    assert np.array_equal(replicas[0].bias, replicas[1].bias)
    # the epoch's changes of each replica add up (AdaGrad: weights and accumulators), in the first round's rows'
    # weights since that round, elsewhere since the start
    expected = before.copy()
    for rows in (slice(0, plan.hot), slice(start, stop)):
        expected[rows, :4] = mid[rows, :4]
    expected[:plan.used, :start_width] += full[0].rows + full[1].rows
    assert np.allclose(replicas[0].table, expected, atol=1e-6)
    assert np.array_equal(replicas[0].table[plan.used:], before[plan.used:])  # unused rows keep their start
    fitted = replicas[0].keep_fit(0, BestEpoch(0.0, keep_weights=False), None, evaluated=False,
                                  early_stopping=False)
    order = plan.order
    assert np.array_equal(fitted.w_[order[plan.used:]], start_state[1][order[plan.used:], 0])  # users' ids again



def test_a_replica_training_on_keeps_its_changes_on_top_of_the_combination():
    rng = np.random.default_rng(1)
    x = CSR.from_matrix(sp.random(300, 50, density=0.1, random_state=2, format="csr", dtype=np.float32),
                        labels=(rng.random(300) < 0.5).astype(np.float32))
    params = dict(feature_dim=50, num_factors=2, predictor_type="binary_classifier", mini_batch_size=10,
                  num_threads=1)
    replica = FMReplica(FactorizationMachines(**params), x, x.labels)
    replica.start(*initial_state(FactorizationMachines(**params)), sync_plan(replica.feature_counts(), 300, 300))
    replica.begin_epoch(0)
    replica.train(5)
    changes = replica.changes(Part())
    assert changes.rows.shape == (replica.used, 3)
    sent = replica.table[:replica.used, :3].copy()
    other = np.full_like(changes.rows, 0.25)  # another replica's changes
    combined = combine([changes, Block(other, np.zeros(0, np.float32))], replica.sent_base, replica.base_bias,
                       column_rules(replica.layout, 2))
    replica.train(5)  # the replica trains on before the combination comes back
    since = replica.table[:replica.used, :3] - sent
    replica.apply(combined)
    assert np.allclose(replica.table[:replica.used, :3], sent + 0.25 + since, atol=1e-6)
    assert np.array_equal(replica.base[:, :3], combined.rows)
    with pytest.raises(ValueError, match="does not match the block sent"):
        replica.apply(combined)  # taken once


def test_an_epochs_rounds_combine_every_used_row_once():
    """The parts of an epoch's rounds: the hot rows every round, the other used rows in slices that cover them
    once; one round: every used row (``Part()``)."""
    x = CSR.from_matrix(sp.random(200, 40, density=0.2, random_state=3, format="csr", dtype=np.float32),
                        labels=np.ones(200, np.float32))
    params = dict(feature_dim=50, num_factors=2, predictor_type="regressor", num_threads=1)  # 40-49 unused
    replica = FMReplica(FactorizationMachines(**params), x, x.labels)
    plan = sync_plan(replica.feature_counts(), 50, 200, hot_touches=10)
    replica.start(*initial_state(FactorizationMachines(**params)), plan)
    assert 0 < plan.hot < plan.used
    for rounds in (1, 2, 7, plan.used):
        parts = [replica.ranges(Part(i, rounds)) for i in range(rounds)]
        assert all(ranges[0][0] == 0 and ranges[0][1] >= plan.hot for ranges in parts)
        covered = np.concatenate([np.arange(a, b) for ranges in parts for a, b in ranges])
        assert np.array_equal(np.unique(covered[covered >= plan.hot]), np.arange(plan.hot, plan.used))
        assert np.count_nonzero(covered >= plan.hot) == plan.used - plan.hot  # each once
    assert replica.ranges(Part()) == replica.ranges(STATE) == ((0, plan.used),)
