"""FM top-k equals brute-force scoring of every (context, candidate) row through ``predict_scores``."""

import numpy as np
import orjson
import pytest

from algorithm import fm_topk
from algorithm.csr import CSR
from algorithm.fm import FactorizationMachines
from algorithm.fm_topk import Candidates, FMTopK, TopKQuery
from container.errors import DataError
from container.formats import fm_queries
from container.formats.registry import JSON, JSONLINES

D, F = 300, 6


def _model(predictor_type: str, dyadic: bool, seed: int = 0) -> FactorizationMachines:
    """A fitted model; ``dyadic``: every weight a multiple of 1/8 in [-1/2, 1/2], so that float32 sums are
    exact in any order and equal scores are exactly equal, whichever path computes them. Features 40..59
    copy features 20..39 (ties between candidates)."""
    rng = np.random.default_rng(seed)
    if dyadic:
        w = rng.integers(-4, 5, D).astype(np.float32) / 8
        V = rng.integers(-4, 5, (D, F)).astype(np.float32) / 8
    else:
        w = rng.standard_normal(D).astype(np.float32) * 0.3
        V = rng.standard_normal((D, F)).astype(np.float32) * 0.3
    w[40:60], V[40:60] = w[20:40], V[20:40]
    arrays = {"w0": np.array([0.25], np.float32), "w": w, "V": V}
    meta = {"hyperparameters": {"feature_dim": D, "num_factors": F, "predictor_type": predictor_type}}
    return FactorizationMachines.from_artifact(meta, arrays)


def _brute_force(model: FactorizationMachines, keys: np.ndarray, values: np.ndarray,
                 candidates: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``predict_scores`` of one row per candidate: the context's features followed by the candidate's."""
    rows = [(np.concatenate([keys, ck]), np.concatenate([values, cv])) for ck, cv in candidates]
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([k.size for k, _ in rows], out=indptr[1:])
    X = CSR(np.concatenate([v for _, v in rows]).astype(np.float32),
            np.concatenate([k for k, _ in rows]).astype(np.int64), indptr, D)
    return model.predict_scores(X)


def _expected(scores: np.ndarray, k: int, exclude: np.ndarray, include: np.ndarray | None) -> np.ndarray:
    """Positions of the k best scores, ties to the lower position, after exclude/include."""
    allowed = np.ones(scores.size, bool)
    allowed[exclude] = False
    if include is not None:
        allowed &= np.isin(np.arange(scores.size), include)
    positions = np.flatnonzero(allowed)
    return positions[np.lexsort((positions, -scores[positions]))][:k]


def _one_hot(features: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.array([c]), np.ones(1, np.float32)) for c in features]


@pytest.mark.parametrize("predictor_type", ["binary_classifier", "regressor"])
def test_top_k_equals_brute_force_with_ties_exclude_and_include(predictor_type):
    model = _model(predictor_type, dyadic=True)
    ranker = FMTopK(model)
    rng = np.random.default_rng(1)
    feature_range = Candidates(features=np.arange(20, 120))
    listed = Candidates(features=np.sort(rng.choice(np.arange(20, D), 80, replace=False)))
    row_keys = [np.sort(rng.choice(np.arange(150, D), 3, replace=False)) for _ in range(30)]
    row_keys[7] = row_keys[3]  # identical rows tie
    row_values = [np.array([1.0, 0.5, 2.0], np.float32)] * 30
    rows = Candidates(rows=CSR(np.concatenate(row_values), np.concatenate(row_keys).astype(np.int64),
                               np.arange(31, dtype=np.int64) * 3, D))
    queries, candidate_rows = [], []
    for i in range(24):
        keys = np.sort(rng.choice(np.arange(120, 150), 3, replace=False))
        values = np.array([1.0, 2.0, 0.5], np.float32)
        candidates, as_rows = [(feature_range, _one_hot(feature_range.features)),
                               (listed, _one_hot(listed.features)),
                               (rows, list(zip(row_keys, row_values, strict=True)))][i % 3]
        n = len(candidates)
        exclude = np.sort(rng.choice(n, 5, replace=False)) if i % 2 else fm_topk.NO_POSITIONS
        include = np.setdiff1d(rng.choice(n, 20, replace=False), exclude) if i % 4 == 3 else None
        queries.append(TopKQuery(keys, values, candidates, k=10 if i % 5 else n, exclude=exclude, include=include))
        candidate_rows.append(as_rows)
    ties = 0
    for q, as_rows, answer in zip(queries, candidate_rows, ranker.rank(queries), strict=True):
        scores = _brute_force(model, q.keys, q.values, as_rows)
        expected = _expected(scores, q.k, q.exclude, q.include)
        np.testing.assert_array_equal(answer.positions, expected)
        # z is exact here; the classifier's sigmoid may differ from the kernel's fastmath one by an ulp
        np.testing.assert_allclose(answer.scores, scores[expected], rtol=2e-7 if predictor_type != "regressor" else 0)
        ties += int(np.sum(np.diff(answer.scores) == 0))
    assert ties > 10  # the tie-break was exercised


def test_the_batched_product_in_blocks_equals_one_query_at_a_time(monkeypatch):
    model = _model("regressor", dyadic=False)
    ranker = FMTopK(model)
    rng = np.random.default_rng(2)
    shared = Candidates(features=np.arange(D))
    queries = [TopKQuery(rng.choice(D, 4, replace=False), rng.random(4).astype(np.float32), shared, k=7,
                         exclude=np.array([3, 5]) if i % 2 else fm_topk.NO_POSITIONS) for i in range(40)]
    monkeypatch.setattr(fm_topk, "BLOCK_VALUES", 3 * D)  # 3 contexts a block
    together = ranker.rank(queries)
    for q, answer in zip(queries, together, strict=True):
        alone = ranker.rank([q])[0]
        np.testing.assert_array_equal(answer.positions, alone.positions)
        np.testing.assert_allclose(answer.scores, alone.scores, rtol=1e-6, atol=1e-6)
        scores = _brute_force(model, q.keys, q.values, _one_hot(np.arange(D)))
        np.testing.assert_allclose(answer.scores, scores[answer.positions], rtol=1e-5, atol=1e-5)
        assert answer.scores[-1] >= np.sort(np.delete(scores, q.exclude))[-q.k] - 1e-5


def test_fewer_than_k_come_back_when_exclusions_leave_fewer():
    ranker = FMTopK(_model("regressor", dyadic=True))
    answer = ranker.rank([TopKQuery(np.array([1]), np.ones(1, np.float32), Candidates(features=np.arange(5)), 4,
                                    exclude=np.array([0, 1, 2]))])[0]
    assert sorted(answer.positions.tolist()) == [3, 4]


def _answers(body: bytes, content_type: str = JSON, predictor_type: str = "binary_classifier") -> list:
    model = _model(predictor_type, dyadic=True)
    queries = fm_queries.read_queries(fm_queries.query_instances(body, content_type), D)
    ranked = FMTopK(model).rank([q.ranked for q in queries])
    out = fm_queries.encode_ranked(queries, ranked, predictor_type == "binary_classifier", content_type)

    return orjson.loads(out)["predictions"] if content_type == JSON else [orjson.loads(x) for x in out.splitlines()]


def test_answers_use_the_ids_the_query_sent():
    body = (b'{"queries": [{"context": {"keys": [130, 131], "values": [1, 2]}, "candidates": {"ids": [250, 20, 77]},'
            b' "k": 3, "exclude": [20, 999]},'
            b' {"candidates": {"rows": [{"keys": [160]}, {"keys": [161, 170], "values": [1, 0.5]}],'
            b' "row_ids": ["shoe", "hat"]}, "include": ["hat"]},'
            b' {"candidates": {"range": [100, 110]}}]}')
    by_ids, by_rows, by_range = _answers(body)
    assert sorted(by_ids["candidates"]) == [77, 250] and set(by_ids) == {"candidates", "scores", "predicted_labels"}
    assert by_rows["candidates"] == ["hat"]
    assert len(by_range["candidates"]) == 10 and all(100 <= c < 110 for c in by_range["candidates"])
    assert by_range["predicted_labels"] == [1.0 if s >= 0.5 else 0.0 for s in by_range["scores"]]
    lines = b'{"candidates": {"range": [100, 110]}, "k": 2}\n{"candidates": {"rows": [{"keys": [1]}]}}\n'
    first, second = _answers(lines, JSONLINES, "regressor")
    assert len(first["candidates"]) == 2 and second["candidates"] == [0] and "predicted_labels" not in first


@pytest.mark.parametrize("query, named", [
    ({"candidates": {"range": [0, 10]}, "k": 0}, "field 'k'"),
    ({"candidates": {"range": [0, 10]}, "k": 11}, "field 'k'"),
    ({"candidates": {"range": [0, 10]}, "k": True}, "field 'k'"),
    ({"candidates": {"range": [250, D + 1]}}, "field 'candidates.range'"),
    ({"candidates": {"range": [-1, 5]}}, "field 'candidates.range'"),
    ({"candidates": {"ids": [1, D]}}, "field 'candidates.ids[1]'"),
    ({"candidates": {"ids": [1, 1]}}, "field 'candidates.ids'"),
    ({"candidates": {"ids": [1, 2.5]}}, "field 'candidates.ids'"),
    ({"candidates": {"range": [0, 10], "ids": [1]}}, "field 'candidates'"),
    ({"candidates": {"range": [0, 10]}, "top": 3}, "field 'top'"),
    ({"candidates": {"range": [0, 10]}, "context": {"keys": [1], "shape": [D]}}, "field 'context.shape'"),
    ({"candidates": {"range": [0, 10]}, "context": {"keys": [D]}}, "field 'context.keys[0]'"),
    ({"candidates": {"range": [0, 10]}, "context": {"keys": [1], "values": [1, 2]}}, "field 'context.values'"),
    ({"candidates": {"range": [0, 10]}, "include": [3, 4], "exclude": [4]}, "field 'include' holds 4"),
    ({"candidates": {"range": [0, 10]}, "include": [30]}, "field 'include' holds 30"),
    ({"candidates": {"rows": [{"keys": [1]}], "row_ids": ["a"]}, "include": ["b"]}, "field 'include' holds 'b'"),
    ({"candidates": {"rows": [{"keys": [1]}, {"keys": [2]}], "row_ids": ["a", "a"]}}, "field 'candidates.row_ids'"),
    ({"candidates": {"rows": [{"keys": [D]}]}}, "field 'candidates.rows[0].keys[0]'"),
    ({"context": {"keys": [1]}}, "field 'candidates'"),
])
def test_bad_queries_fail_naming_the_query_and_the_field(query, named):

    body = orjson.dumps({"queries": [{"candidates": {"range": [0, 10]}}, query]})
    with pytest.raises(DataError) as caught:
        fm_queries.read_queries(fm_queries.query_instances(body, JSON), D)
    assert "query 1: " in str(caught.value) and named in str(caught.value)


def test_scoring_bodies_are_not_queries():
    assert fm_queries.query_instances(b'{"instances": [{"features": [1, 0]}]}', JSON) is None
    assert fm_queries.query_instances(b'{"data": {"features": {"keys": [1], "values": [1]}}}', JSONLINES) is None
    with pytest.raises(DataError, match="'queries' must be a non-empty list"):
        fm_queries.query_instances(b'{"queries": []}', JSON)
    with pytest.raises(DataError, match="field 'instances' is not allowed beside 'queries'"):
        fm_queries.query_instances(b'{"queries": [{}], "instances": []}', JSON)


@pytest.mark.parametrize("predictor_type", ["binary_classifier", "regressor"])
def test_features_given_twice_or_shared_with_candidates_are_summed_as_in_predict_scores(predictor_type):
    """A context holding a key twice, or a key a candidate also holds, is scored as the row with the values
    summed (x_f = a + b): the ranking and scores of brute-force scoring, whose rows CSR sums."""
    model = _model(predictor_type, dyadic=True)
    keys, values = np.array([150, 21, 150, 160]), np.array([1.0, 0.5, 0.5, 2.0], np.float32)
    row_keys = [np.array([150, 170]), np.array([171, 160, 171]), np.array([180]), np.array([21, 181])]
    row_values = [np.array([1.0, 1.0], np.float32), np.array([0.5, 1.0, 0.5], np.float32),
                  np.array([1.0], np.float32), np.array([2.0, 1.0], np.float32)]
    indptr = np.concatenate([[0], np.cumsum([k.size for k in row_keys])]).astype(np.int64)
    rows = Candidates(rows=CSR(np.concatenate(row_values), np.concatenate(row_keys).astype(np.int64), indptr, D))
    features = Candidates(features=np.array([20, 21, 150, 155, 160]))
    for candidates, as_rows in ((rows, list(zip(row_keys, row_values, strict=True))),
                                (features, _one_hot(features.features))):
        n = len(candidates)
        for include in (None, np.array([3, 0, 2])[:n]):
            [answer] = FMTopK(model).rank([TopKQuery(keys, values, candidates, k=3 if include is not None else n,
                                                     include=include)])
            scores = _brute_force(model, keys, values, as_rows)
            expected = _expected(scores, len(answer.positions), fm_topk.NO_POSITIONS, include)
            np.testing.assert_array_equal(answer.positions, expected)
            np.testing.assert_allclose(answer.scores, scores[expected], rtol=2e-7 if predictor_type != "regressor"
                                       else 0)
