"""Server lifecycle: SIGTERM lets an in-flight request finish; /ping answers while a long request runs."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator

import numpy as np
import requests
import scipy.sparse as sp

from container.formats.recordio_framing import read_records
from tests.integration.test_serve_http import FEATURE_DIM, RECORDIO, ServeProcess, recordio_sparse, train_model


def _post_in_thread(server: ServeProcess, data: bytes | Iterator[bytes], content_type: str) -> tuple[
        threading.Thread, dict]:
    result: dict = {}

    def post() -> None:
        result["response"] = requests.post(server.url + "/invocations", data=data, timeout=120,
                                           headers={"Content-Type": content_type, "Accept": RECORDIO})

    thread = threading.Thread(target=post)
    thread.start()
    return thread, result


def _slow_upload(body: bytes, started: threading.Event, parts: int = 8, pause: float = 0.3) -> Iterator[bytes]:
    """``body`` in ``parts`` chunks ``pause`` seconds apart; ``started`` is set once the server has a part."""
    size = len(body) // parts + 1
    for i, start in enumerate(range(0, len(body), size)):
        if i == 1:
            started.set()
        yield body[start:start + size]
        time.sleep(pause)


def _rows() -> sp.csr_matrix:
    return sp.random(2000, FEATURE_DIM, density=0.5, format="csr", random_state=5, dtype=np.float32)


def test_sigterm_finishes_in_flight_request(tmp_path):
    """SIGTERM arrives while a request is in flight (its body still uploading); the answer is complete."""
    train_model(tmp_path, "regressor")
    server = ServeProcess(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="1")
    started = threading.Event()
    thread, result = _post_in_thread(server, _slow_upload(recordio_sparse(_rows()), started), RECORDIO)
    assert started.wait(30)
    returncode = server.stop()
    thread.join()
    assert result["response"].status_code == 200
    assert len(read_records(io.BytesIO(result["response"].content))) == _rows().shape[0]
    assert returncode == 0, server.log()


def test_ping_answers_while_a_long_request_runs(tmp_path):
    """The only worker busy with a 2.4 s request (a slow upload) still answers /ping at once, from its
    second gthread thread; a sync worker would answer only after the request."""
    train_model(tmp_path, "regressor")
    server = ServeProcess(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="1")
    try:
        started = threading.Event()
        thread, result = _post_in_thread(server, _slow_upload(recordio_sparse(_rows()), started), RECORDIO)
        assert started.wait(30)
        pings = []
        while thread.is_alive():
            begin = time.monotonic()
            assert requests.get(server.url + "/ping", timeout=2).status_code == 200
            pings.append(time.monotonic() - begin)
            time.sleep(0.05)
        thread.join()
        assert result["response"].status_code == 200
        assert len(pings) >= 10 and max(pings) < 1.0, pings
    finally:
        server.stop()
