"""The WSGI app in-process (werkzeug's test client): POST /invocations answered by ``Invocations`` with every
status it maps, and every other request left to Flask."""

from __future__ import annotations

import logging

import numpy as np
import orjson
import pytest

from algorithm.fm import FactorizationMachines
from container.errors import DataError
from serve.app import create_app
from serve.limits import UNLIMITED, Limits, ResponseTooLargeError
from serve.model_store import FMServable
from serve.settings import ServeSettings

FEATURE_DIM = 4


class Failing(FMServable):
    """A real FM servable whose invocations fail as a bug or a bad body would."""

    def invoke(self, body: bytes, content_type: str, accept: str, limits: Limits = UNLIMITED) -> bytes:
        if body == b"bug":
            raise ZeroDivisionError("a bug")
        if body == b"bad":
            raise DataError("request body: line 3 is bad")
        return super().invoke(body, content_type, accept, limits)


@pytest.fixture(scope="module")
def client():
    arrays = {"w0": np.array([0.5], np.float32), "w": np.arange(FEATURE_DIM, dtype=np.float32),
              "V": np.ones((FEATURE_DIM, 2), np.float32)}
    model = FactorizationMachines.from_artifact(
        {"hyperparameters": {"feature_dim": FEATURE_DIM, "num_factors": 2, "predictor_type": "regressor"}}, arrays)
    settings = ServeSettings.from_env({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"})
    return create_app(Failing(model), settings).test_client()


def test_invocation_and_its_headers(client):
    response = client.post("/invocations", data=b"1,0,0,2", headers={"Content-Type": "text/csv; charset=utf-8",
                                                                     "Accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv"
    assert int(response.headers["Content-Length"]) == len(response.data)
    assert float(response.data) == pytest.approx(0.5 + 3 * 2 + (1 * 1 + 1 * 1) * (1 * 2))  # w0 + w.x + <v0,v3> x0 x3


@pytest.mark.parametrize("body,headers,status,needle", [
    (b"bad", {"Content-Type": "text/csv"}, 400, "line 3 is bad"),
    (b"", {"Content-Type": "text/csv"}, 400, "empty request body"),
    (b"1,2", {"Content-Type": "application/xml"}, 415, "application/xml"),
    (b"1,2", {"Content-Type": "text/csv", "Accept": "text/html"}, 406, "text/html"),
    (b"0," * (1 << 20), {"Content-Type": "text/csv"}, 413, "1 MB limit"),
    (b"bug", {"Content-Type": "text/csv"}, 500, "internal error (ZeroDivisionError)"),
])
def test_invocation_errors_are_json_with_the_reason(client, caplog, body, headers, status, needle):
    with caplog.at_level(logging.ERROR, logger="serve.app"):
        response = client.post("/invocations", data=body, headers=headers)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert needle in orjson.loads(response.data)["error"]
    assert ("invocation failed" in caplog.text) == (status == 500)


def test_other_requests_go_to_flask(client):
    assert client.get("/ping").status_code == 200
    assert orjson.loads(client.get("/execution-parameters").data)["MaxPayloadInMB"] == 1
    response = client.get("/invocations")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert client.get("/nope").status_code == 404


def test_rows_and_response_size_are_refused_before_scoring_with_413():
    """Past ``FMWALS_MAX_ROWS_PER_REQUEST`` rows, or when the answer would take more than
    ``FMWALS_MAX_RESPONSE_IN_MB``, nothing is scored: the servable's predict is never called."""
    arrays = {"w0": np.array([0.5], np.float32), "w": np.ones(FEATURE_DIM, np.float32),
              "V": np.ones((FEATURE_DIM, 2), np.float32)}
    model = FactorizationMachines.from_artifact(
        {"hyperparameters": {"feature_dim": FEATURE_DIM, "num_factors": 2, "predictor_type": "binary_classifier"}},
        arrays)
    scored: list[int] = []

    class Counting(FMServable):
        def predict(self, X):
            scored.append(X.n_rows)
            return super().predict(X)

    settings = ServeSettings.from_env({"FMWALS_MAX_RESPONSE_IN_MB": "1", "FMWALS_MAX_ROWS_PER_REQUEST": "60000"})
    client = create_app(Counting(model), settings).test_client()

    def post(rows: int, accept: str):
        return client.post("/invocations", data=b"0\n" * rows, headers={"Content-Type": "text/libsvm",
                                                                         "Accept": accept})

    refused = post(60001, "text/csv")
    assert refused.status_code == 413 and "60001 rows" in refused.json["error"]
    assert "FMWALS_MAX_ROWS_PER_REQUEST" in refused.json["error"]
    # RecordIO answers take 56 bytes a row: 20,000 rows need 1.1 MB; CSV ("0.5,1.0\n") fits them
    too_big = post(20000, "application/x-recordio-protobuf")
    assert too_big.status_code == 413 and "FMWALS_MAX_RESPONSE_IN_MB" in too_big.json["error"]
    assert "20000 rows at 56 bytes or more each" in too_big.json["error"]
    assert scored == []
    assert post(20000, "text/csv").status_code == 200 and scored == [20000]
    # the estimate is a lower bound (36 bytes a JSON Lines row); the encoded answer (42 bytes a row:
    # {"score":0.6226927,"predicted_label":1.0}) over the limit is refused after encoding
    wide = client.post("/invocations", data=b"0:1e-3\n" * 27000, headers={"Content-Type": "text/libsvm",
                                                                           "Accept": "application/jsonlines"})
    assert wide.status_code == 413 and "the response takes 1134000 bytes" in wide.json["error"]


def test_top_k_queries_are_counted_and_their_answers_estimated_before_ranking():
    arrays = {"w0": np.array([0.5], np.float32), "w": np.arange(FEATURE_DIM, dtype=np.float32),
              "V": np.ones((FEATURE_DIM, 2), np.float32)}
    model = FactorizationMachines.from_artifact(
        {"hyperparameters": {"feature_dim": FEATURE_DIM, "num_factors": 2, "predictor_type": "regressor"}}, arrays)
    servable = FMServable(model)
    query = {"context": {"keys": [0]}, "candidates": {"range": [0, FEATURE_DIM]}, "k": FEATURE_DIM}
    body = orjson.dumps({"queries": [query, query]})
    with pytest.raises(ResponseTooLargeError, match=r"2 queries, more than the 1 allowed per request"):
        servable.invoke(body, "application/json", "application/json", Limits(max_rows=1, max_response_bytes=10**6))
    with pytest.raises(ResponseTooLargeError, match=r"at least 48 bytes \(8 ranked candidates\)"):
        servable.invoke(body, "application/json", "application/json", Limits(max_rows=2, max_response_bytes=47))
    answer = servable.invoke(body, "application/json", "application/json", Limits(max_rows=2, max_response_bytes=10**6))
    assert len(orjson.loads(answer)["predictions"]) == 2
