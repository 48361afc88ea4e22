"""Top-k selection and the ranking metrics against naive pure-Python versions of their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from algorithm import ranking_metrics as rm


def _naive_top_k(scores: np.ndarray, k: int) -> list[int]:
    finite = [j for j in range(scores.size) if scores[j] > -np.inf]
    return sorted(finite, key=lambda j: (-scores[j], j))[:k]


def _naive_metrics(U: np.ndarray, V: np.ndarray, test: sp.csr_matrix, k: int,
                   exclude: sp.csr_matrix | None) -> dict[str, float]:
    """The definitions of algorithm.ranking_metrics, row by row, with brute-force AUC over all pairs."""
    scores = U.astype(np.float32) @ V.astype(np.float32).T
    test = test.tocsr()
    per_metric: dict[str, list[float]] = {name: [] for name in rm.METRIC_NAMES}
    for u in range(U.shape[0]):
        excluded = set() if exclude is None else set(exclude[u].indices)
        relevant = {j for j, v in zip(test[u].indices, test[u].data, strict=True) if v > 0} - excluded
        if not relevant:
            continue
        row = scores[u].copy()
        row[list(excluded)] = -np.inf
        top = _naive_top_k(row, k)
        rel = [1 if j in relevant else 0 for j in top]
        per_metric["precision_at_k"].append(sum(rel) / k)
        ap = sum(rel[i] * sum(rel[: i + 1]) / (i + 1) for i in range(len(top)))
        per_metric["map_at_k"].append(ap / min(k, len(relevant)))
        dcg = sum(rel[i] / math.log2(i + 2) for i in range(len(top)))
        ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
        per_metric["ndcg_at_k"].append(dcg / ideal)
        negatives = [j for j in range(V.shape[0]) if j not in excluded and j not in relevant]
        if negatives:
            pairs = [1.0 if row[t] > row[n] else 0.5 if row[t] == row[n] else 0.0
                     for t in relevant for n in negatives]
            per_metric["auc"].append(sum(pairs) / len(pairs))
    return {name: float(np.mean(values)) if values else math.nan for name, values in per_metric.items()}


def _case(seed: int, n: int = 30, m: int = 40, dim: int = 3, ties: bool = False
          ) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, sp.csr_matrix]:
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(n, dim)).astype(np.float32)
    V = rng.normal(size=(m, dim)).astype(np.float32)
    if ties:  # few distinct scores: many exact ties
        U = np.round(U).astype(np.float32)
        V = np.round(V).astype(np.float32)
    train = sp.random(n, m, density=0.2, format="csr", random_state=seed, dtype=np.float32)
    test = sp.random(n, m, density=0.1, format="csr", random_state=seed + 1, dtype=np.float32)
    test.data[::7] = 0.0  # a stored 0 is not relevant
    return U, V, test, train


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True)])
@pytest.mark.parametrize("k", [1, 5, 50])
def test_metrics_match_naive_definitions(seed: int, ties: bool, k: int) -> None:
    U, V, test, train = _case(seed, ties=ties)
    got = rm.ranking_metrics(U, V, test, k, exclude=train)
    expected = _naive_metrics(U, V, test, k, train)
    for name in rm.METRIC_NAMES:
        assert got[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), name


def test_metrics_without_exclusion() -> None:
    U, V, test, _ = _case(3)
    got = rm.ranking_metrics(U, V, test, 10)
    expected = _naive_metrics(U, V, test, 10, None)
    for name in rm.METRIC_NAMES:
        assert got[name] == pytest.approx(expected[name], rel=1e-9), name


def test_blocks_and_workers_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    U, V, test, train = _case(4)
    whole = rm.ranking_metrics(U, V, test, 5, exclude=train)
    monkeypatch.setattr(rm, "BLOCK_VALUES", 3 * V.shape[0])  # three rows per block
    monkeypatch.setattr(rm.numba, "get_num_threads", lambda: 1)
    assert rm.ranking_metrics(U, V, test, 5, exclude=train) == whole


def test_perfect_and_reversed_rankings() -> None:
    V = np.arange(6, dtype=np.float32)[:, None]  # the score of column j is j
    test = sp.csr_matrix(np.array([[0, 0, 0, 0, 1, 1]], dtype=np.float32))
    best = rm.ranking_metrics(np.ones((1, 1), np.float32), V, test, 2)
    assert best == {"precision_at_k": 1.0, "map_at_k": 1.0, "ndcg_at_k": 1.0, "auc": 1.0}
    worst = rm.ranking_metrics(-np.ones((1, 1), np.float32), V, test, 2)
    assert worst == {"precision_at_k": 0.0, "map_at_k": 0.0, "ndcg_at_k": 0.0, "auc": 0.0}


def test_rows_without_relevant_entries_are_skipped() -> None:
    U, V, _, _ = _case(5, n=4, m=5)
    empty = sp.csr_matrix((4, 5), dtype=np.float32)
    assert all(math.isnan(v) for v in rm.ranking_metrics(U, V, empty, 3).values())
    test = sp.csr_matrix(([1.0], ([2], [1])), shape=(4, 5), dtype=np.float32)
    everything = sp.csr_matrix(np.ones((4, 5), dtype=np.float32))
    assert all(math.isnan(v) for v in rm.ranking_metrics(U, V, test, 3, exclude=everything).values())
    only_relevant = sp.csr_matrix(np.array([[0, 0, 0, 0, 0]] * 2 + [[1, 0, 1, 1, 1]] + [[0] * 5],
                                           dtype=np.float32))
    result = rm.ranking_metrics(U, V, test, 3, exclude=only_relevant)
    assert result["precision_at_k"] == pytest.approx(1 / 3)
    assert math.isnan(result["auc"])  # no non-relevant candidate


def test_shape_mismatch_is_rejected() -> None:
    U, V, test, _ = _case(6)
    with pytest.raises(ValueError, match="exclude has shape"):
        rm.ranking_metrics(U, V, test, 3, exclude=test[:, :5])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([-np.inf, np.nan, -1.0, 0.0, 0.5, 2.0]), min_size=1, max_size=12),
       st.integers(1, 15))
def test_top_k_matches_naive(values: list[float], k: int) -> None:
    scores = np.array([values], dtype=np.float32)
    ids, tops = rm.top_k(scores, k, n_workers=1)
    expected = _naive_top_k(np.where(np.isnan(scores[0]), -np.inf, scores[0]), k)
    assert ids[0, : len(expected)].tolist() == expected
    assert (ids[0, len(expected):] == -1).all()
    assert (tops[0, len(expected):] == -np.inf).all()
    np.testing.assert_array_equal(tops[0, : len(expected)], scores[0, expected])


def test_top_k_parallel_equals_serial() -> None:
    scores = np.round(np.random.default_rng(7).normal(size=(9, 50)), 1).astype(np.float32)
    serial = rm.top_k(scores, 6, n_workers=1)
    parallel = rm.top_k(scores, 6, n_workers=3)
    np.testing.assert_array_equal(serial[0], parallel[0])
    np.testing.assert_array_equal(serial[1], parallel[1])
