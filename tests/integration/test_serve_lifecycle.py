"""Server lifecycle: SIGTERM lets in-flight requests finish; /ping answers while a long request runs."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import requests
import scipy.sparse as sp

from container.formats.recordio import read_records
from tests.integration.test_serve_http import FEATURE_DIM, RECORDIO, ServeProcess, recordio_sparse, train_model


def _long_body(rows: int = 400_000) -> bytes:
    X = sp.random(rows, FEATURE_DIM, density=0.5, format="csr", random_state=5, dtype=np.float32)
    return recordio_sparse(X)


def _post_in_thread(server: ServeProcess, body: bytes) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def post() -> None:
        started = time.monotonic()
        response = requests.post(server.url + "/invocations", data=body, timeout=120,
                                 headers={"Content-Type": RECORDIO, "Accept": RECORDIO})
        result.update(response=response, seconds=time.monotonic() - started)

    thread = threading.Thread(target=post)
    thread.start()
    return thread, result


def test_sigterm_finishes_in_flight_request(tmp_path):
    train_model(tmp_path, "regressor")
    server = ServeProcess(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="1", SAGEMAKER_MAX_PAYLOAD_IN_MB="100")
    body = _long_body()
    thread, result = _post_in_thread(server, body)
    time.sleep(1.0)  # the body is uploaded and being scored
    assert thread.is_alive(), "the long request finished before SIGTERM; make it longer"
    returncode = server.stop()
    thread.join()
    assert result["response"].status_code == 200
    assert len(read_records(io.BytesIO(result["response"].content))) == 400_000
    assert returncode == 0, server.log()


def test_ping_answers_while_a_long_request_runs(tmp_path):
    train_model(tmp_path, "regressor")
    server = ServeProcess(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="1", SAGEMAKER_MAX_PAYLOAD_IN_MB="100")
    try:
        thread, result = _post_in_thread(server, _long_body())
        time.sleep(1.0)
        pings = []
        while thread.is_alive():
            started = time.monotonic()
            assert requests.get(server.url + "/ping", timeout=2).status_code == 200
            pings.append(time.monotonic() - started)
            time.sleep(0.05)
        thread.join()
        assert result["response"].status_code == 200
        assert pings, "the long request finished before the first ping; make it longer"
        assert max(pings) < 0.5, pings
    finally:
        server.stop()
