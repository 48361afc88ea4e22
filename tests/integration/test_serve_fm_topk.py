"""FM top-k queries over HTTP on the real server: the answers equal brute-force scoring of every (context,
candidate) row through the same server's plain scoring path; bad queries get 400 naming query and field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.integration.test_serve_http import FEATURE_DIM, served

JSON, JSONLINES = "application/json", "application/jsonlines"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    yield from served(tmp_path_factory.mktemp("topk"), "binary_classifier")


def _brute_force(server, context: dict, candidate_rows: list[dict]) -> np.ndarray:
    """Plain ``/invocations`` scores of one row per candidate: the context's features, then the candidate's."""
    keys, values = context["keys"], context.get("values", [1.0] * len(context["keys"]))
    instances = [{"data": {"features": {"keys": keys + row["keys"], "shape": [FEATURE_DIM],
                                        "values": values + row.get("values", [1.0] * len(row["keys"]))}}}
                 for row in candidate_rows]
    response = server.post(json.dumps({"instances": instances}).encode(), JSON, JSON)
    assert response.status_code == 200, response.text
    return np.float32([p["score"] for p in response.json()["predictions"]])


def _check(answer: dict, scores: np.ndarray, ids: list, k: int, excluded: set) -> None:
    """The answer holds the k best allowed candidates with their brute-force scores, best first."""
    position = {c: p for p, c in enumerate(ids)}
    got = [position[c] for c in answer["candidates"]]
    assert len(got) == k and not excluded & set(answer["candidates"])
    np.testing.assert_allclose(answer["scores"], scores[got], rtol=1e-6, atol=1e-7)
    assert answer["scores"] == sorted(answer["scores"], reverse=True)
    allowed = np.array([s for c, s in zip(ids, scores, strict=True) if c not in excluded])
    assert answer["scores"][-1] >= np.sort(allowed)[-k] - 1e-6  # nothing better was left out
    assert answer["predicted_labels"] == [1.0 if s >= 0.5 else 0.0 for s in answer["scores"]]


@pytest.mark.parametrize("accept", [JSON, JSONLINES])
def test_top_k_over_http_equals_brute_force_scoring(classifier, accept):
    _, server = classifier
    contexts = [{"keys": [0, 3], "values": [1.0, 0.5]}, {"keys": [1]}, {"keys": [2, 4, 5], "values": [1, 2, 1]}]
    rows = [{"keys": [20, 25]}, {"keys": [21], "values": [2.0]}, {"keys": [22, 26, 27]}, {"keys": [23]}]
    queries = []
    for context in contexts:
        queries += [{"context": context, "candidates": {"range": [10, FEATURE_DIM]}, "k": 5, "exclude": [11, 12]},
                    {"context": context, "candidates": {"ids": [29, 14, 17, 8]}, "k": 2},
                    {"context": context, "candidates": {"rows": rows, "row_ids": ["a", "b", "c", "d"]}, "k": 3,
                     "exclude": ["b"]}]
    body = json.dumps({"queries": queries}).encode()
    response = server.post(body, JSON, accept)
    assert response.status_code == 200, response.text
    answers = (response.json()["predictions"] if accept == JSON
               else [json.loads(line) for line in response.text.splitlines()])
    assert len(answers) == len(queries)
    for query, answer in zip(queries, answers, strict=True):
        spec = query["candidates"]
        if "range" in spec:
            ids = list(range(*spec["range"]))
            candidate_rows = [{"keys": [c]} for c in ids]
        elif "ids" in spec:
            ids, candidate_rows = spec["ids"], [{"keys": [c]} for c in spec["ids"]]
        else:
            ids, candidate_rows = spec["row_ids"], spec["rows"]
        _check(answer, _brute_force(server, query["context"], candidate_rows), ids, query["k"],
               set(query.get("exclude", [])))
    if accept == JSON:  # the same queries as a JSON Lines body
        lines = b"\n".join(json.dumps(q).encode() for q in queries)
        assert server.post(lines, JSONLINES, JSON).json() == response.json()


@pytest.mark.parametrize("query, named", [
    ({"candidates": {"range": [0, 10]}, "k": 0}, "query 1: field 'k'"),
    ({"candidates": {"range": [0, 10]}, "k": 11}, "query 1: field 'k'"),
    ({"candidates": {"range": [5, FEATURE_DIM + 1]}}, "query 1: field 'candidates.range'"),
    ({"candidates": {"range": [0, 10]}, "user": 3}, "query 1: field 'user' is not allowed"),
    ({"candidates": {"ids": [1, 2]}, "include": [1], "exclude": [1]}, "query 1: field 'include' holds 1"),
])
def test_bad_queries_are_400_naming_query_and_field(classifier, query, named):
    _, server = classifier
    body = json.dumps({"queries": [{"candidates": {"range": [0, 10]}}, query]}).encode()
    response = server.post(body, JSON, JSON)
    assert response.status_code == 400 and named in response.json()["error"]


def test_top_k_answers_json_only(classifier):
    _, server = classifier
    response = server.post(b'{"queries": [{"candidates": {"range": [0, 10]}}]}', JSON, "text/csv")
    assert response.status_code == 415 and "application/jsonlines" in response.json()["error"]
