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
from serve.model_store import FMServable
from serve.settings import ServeSettings

FEATURE_DIM = 4


class Failing(FMServable):
    """A real FM servable whose invocations fail as a bug or a bad body would."""

    def invoke(self, body: bytes, content_type: str, accept: str) -> bytes:
        if body == b"bug":
            raise ZeroDivisionError("a bug")
        if body == b"bad":
            raise DataError("request body: line 3 is bad")
        return super().invoke(body, content_type, accept)


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
